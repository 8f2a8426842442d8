"""The one facade the pages call: a model, a dataset, and caches, shared by all sessions.

A Streamlit server runs many sessions in threads over one :class:`Backend` (cached with
``st.cache_resource`` per checkpoint + dataset). Nothing is stored on the model between
calls; every result is an immutable value. Per-clip work is cached in a least-recently-used
cache bounded in bytes, so re-explaining a recent clip for another class costs no forward
pass: the features and the maps of every class come from the one forward that opened it.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidviz import config
from vidviz.data.datasets import VideoDataset, boxes_for_clip, match_classes, open_dataset
from vidviz.data.video import VIDEO_EXTENSIONS, Clip, load_clip, to_tensor
from vidviz.errors import ExplainError, VideoError
from vidviz.explain.cam import (
    INPUT,
    Explanation,
    autograd_cams,
    check_request,
    forward_cams,
    layer_activations,
    normalise,
    one_pass_applies,
    ranked,
    upsample,
    uses_activations,
)
from vidviz.explain.methods import INPUT_METHODS, check_settings
from vidviz.explain.temporal import TemporalReport, perturbation_tests
from vidviz.models.checkpoint import load_checkpoint
from vidviz.runtime import pick_device

log = logging.getLogger("vidviz.backend")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


_UPLOAD_ROOT: Path | None = None
_UPLOAD_ROOT_LOCK = threading.Lock()


def upload_root() -> Path:
    """The one folder of this process (the app's server) for uploaded videos, removed when the process ends."""
    global _UPLOAD_ROOT
    with _UPLOAD_ROOT_LOCK:
        if _UPLOAD_ROOT is None or not _UPLOAD_ROOT.is_dir():
            _UPLOAD_ROOT = Path(tempfile.mkdtemp(prefix=f"vidviz-uploads-{os.getpid()}-"))
            atexit.register(shutil.rmtree, _UPLOAD_ROOT, True)
        return _UPLOAD_ROOT


class LRUBytes:
    """A thread-safe least-recently-used cache bounded by the bytes of its values."""

    def __init__(self, max_bytes: int, on_evict=None):
        self.max_bytes = int(max_bytes)
        self.on_evict = on_evict  # called with (key, value) after an entry is pushed out
        self._d: OrderedDict = OrderedDict()
        self._size: dict = {}
        self._total = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
            self.misses += 1
            return None

    def put(self, key, value, nbytes: int) -> None:
        evicted = []
        with self._lock:
            if key in self._d:
                self._total -= self._size.pop(key)
                del self._d[key]
            self._d[key] = value
            self._size[key] = int(nbytes)
            self._total += int(nbytes)
            while self._total > self.max_bytes and len(self._d) > 1:
                old, old_value = self._d.popitem(last=False)
                self._total -= self._size.pop(old)
                evicted.append((old, old_value))
        for old, old_value in evicted if self.on_evict else ():
            self.on_evict(old, old_value)

    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._d)


@dataclass(frozen=True)
class OpenedClip:
    """A decoded clip with its one forward pass: everything a class switch needs."""

    key: str
    clip: Clip = field(repr=False)  # frames (T, S0, S0, 3) uint8 as displayed
    x: torch.Tensor = field(repr=False)  # (1, 3, T, S, S) model input
    features: torch.Tensor = field(repr=False)  # (C, T', h, w) default layer
    logits: np.ndarray = field(repr=False)  # (K,)
    probs: np.ndarray = field(repr=False)  # (K,)
    all_maps: np.ndarray | None = field(repr=False)  # (K, T', h, w) float32: Grad-CAM of every class at the
    # default layer, where the fast path applies (GAP + linear head); None for other models
    seconds: float  # decode + forward

    @property
    def nbytes(self) -> int:
        return (self.clip.frames.nbytes + self.x.numel() * 4 + self.features.numel() * self.features.element_size()
                + (0 if self.all_maps is None else self.all_maps.nbytes))

    @property
    def top(self) -> list[tuple[int, float]]:
        """(class, probability) of every class, most probable first."""
        return ranked(self.probs)


class Backend:
    """Model + dataset + caches. ``key`` is a dataset clip id, or ``upload:<hash>`` for an uploaded file."""

    def __init__(self, checkpoint: str | Path, data_root: str | Path | None, device: str = "auto",
                 cache_mb: int | None = None, subset: str | Path | None = None, dataset: VideoDataset | None = None):
        self.device = pick_device(device)
        cache_mb = config.CACHE_MB if cache_mb is None else cache_mb  # VIDVIZ_CACHE_MB
        if dataset is None and data_root is not None:
            dataset = open_dataset(data_root, subset)
        self.dataset: VideoDataset | None = dataset  # an opened dataset may be shared (the app opens it once)
        self.model = load_checkpoint(checkpoint).to(self.device).eval()
        self.classes = list(self.model.classes)
        ds_classes = list(self.dataset.classes) if self.dataset is not None and self.dataset.classes else []
        #: dataset class -> the model's class of that name (-1: none); identity when the names agree
        self.class_match = match_classes(ds_classes, self.classes)
        self.classes_note = ""  # what the app says when the names differ
        if ds_classes and ds_classes != self.classes:
            n = int((self.class_match >= 0).sum())
            self.classes_note = (f"The model's {len(self.classes)} class names match {n} of the dataset's "
                                 f"{len(ds_classes)}: a clip's true label is shown by name, and accuracy counts "
                                 "only clips whose class the model has.")
            log.warning(self.classes_note)
        self.spec = self.model.spec
        self.checkpoint_hash = self.model.checkpoint_hash
        self._uploads: dict[str, Path] = {}
        self._upload_dir: Path | None = None  # made on the first upload, inside the process's upload folder
        self._upload_lock = threading.Lock()
        uploads, lock = self._uploads, self._upload_lock  # (not self: the backend stays collectable)
        budget = max(1, int(cache_mb)) * 1024 * 1024
        freed = [0]

        def evicted(key: str, opened) -> None:
            """A clip pushed out of the cache. An upload's copy is deleted (the page uploads it again if shown).
            Every quarter budget evicted, a full garbage collection: an app's script runs leave reference cycles
            (a page's namespace and its functions) that still hold the clips they showed; without it, the
            process grows by the clips' size until Python's collector happens to run."""
            if key.startswith("upload:"):
                with lock:
                    path = uploads.pop(key, None)
                if path is not None:
                    path.unlink(missing_ok=True)
            freed[0] += opened.nbytes
            if freed[0] >= budget // 4:
                freed[0] = 0
                gc.collect()

        # the budget is shared: three quarters for opened clips, a quarter for maps off the fast path
        self.cache_bytes = budget
        self._explained = LRUBytes(budget // 4)
        self._clips = LRUBytes(budget - budget // 4, on_evict=evicted)
        self._warming = threading.Lock()
        self._warm = False

    def warm_up(self) -> None:
        """Parse the dataset's box annotations in a background thread (once): off the request path of the
        first viewer, and after the first page has painted (the parse holds the GIL for seconds)."""
        with self._warming:
            if self._warm or self.dataset is None or not self.dataset.has_boxes:
                return
            self._warm = True
        threading.Thread(target=lambda: self.dataset.boxes, name="vidviz-boxes", daemon=True).start()

    # ------------------------------------------------------------ sources
    def register_upload(self, filename: str, data: bytes) -> str:
        """Keep an uploaded video (checked by decoding) and return its key."""
        suffix = Path(filename).suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            raise VideoError(f"not a video type vidviz reads (use {', '.join(VIDEO_EXTENSIONS)})", filename)
        if len(data) > MAX_UPLOAD_BYTES:
            raise VideoError(f"file is larger than {MAX_UPLOAD_BYTES // 2**20} MB", filename)
        if not data:
            raise VideoError("file is empty (0 bytes)", filename)
        digest = hashlib.sha256(data).hexdigest()[:16]
        key = f"upload:{digest}"
        with self._upload_lock:
            if key not in self._uploads:
                if self._upload_dir is None:
                    self._upload_dir = Path(tempfile.mkdtemp(prefix="backend-", dir=upload_root()))
                    # the folder goes when the backend does, or at the latest when the process ends
                    weakref.finalize(self, shutil.rmtree, self._upload_dir, True)
                path = self._upload_dir / f"{digest}{suffix}"
                path.write_bytes(data)
                self._uploads[key] = path
        try:
            self.open(key)
        except VideoError as e:
            with self._upload_lock:  # a rejected upload is not kept
                path = self._uploads.pop(key, None)
            if path is not None:
                path.unlink(missing_ok=True)
            raise VideoError(str(e).split(": ", 1)[-1], filename) from None
        return key

    def register_file(self, path: str | Path) -> str:
        """A video file read where it lies (the CLI): no copy; its key names the file."""
        path = Path(path).resolve()
        key = f"file:{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
        with self._upload_lock:
            self._uploads[key] = path
        return key

    def _path(self, key: str) -> Path:
        if key.startswith(("upload:", "file:")):
            try:
                return self._uploads[key]
            except KeyError:
                raise VideoError("this upload is no longer available; upload the file again") from None
        if self.dataset is None:
            raise VideoError("no dataset is open")
        return self.dataset.get(key).path

    # ------------------------------------------------------------ the forward pass, cached
    def open(self, key: str) -> OpenedClip:
        """Decode ``key`` and run its one forward pass (cached)."""
        hit = self._clips.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        clip = load_clip(self._path(key), self.spec)
        x = to_tensor(clip.frames, self.spec)[None].to(self.device)  # (1, 3, T, S, S)
        if one_pass_applies(self.model, "gradcam", None):
            a, logits, maps = forward_cams(self.model, x)  # (1, C, T', h, w), (1, K), (1, K, T', h, w)
            all_maps = maps[0].float().cpu().numpy()  # (K, T', h, w)
        else:  # the maps come from autograd, per class asked for (explain)
            with torch.no_grad():
                a, logits = self.model.features_logits(x)  # (1, C, T', h, w), (1, K)
            all_maps = None
        logits = logits[0].float()  # (K,)
        probs = torch.softmax(logits, 0)
        opened = OpenedClip(key=key, clip=clip, x=x.cpu(), features=a[0].to(torch.float16).cpu(),
                            logits=logits.cpu().numpy(), probs=probs.cpu().numpy(),
                            all_maps=all_maps, seconds=time.perf_counter() - t0)
        for arr in (opened.logits, opened.probs, opened.all_maps):
            if arr is not None:
                arr.setflags(write=False)
        if not (np.isfinite(opened.probs).all() and (all_maps is None or np.isfinite(all_maps).all())):
            raise ExplainError(f"the model's output on clip {key!r} is not finite (NaN or infinite): the checkpoint's "
                               "weights or input normalisation are broken", self.model.checkpoint_path)
        self._clips.put(key, opened, opened.nbytes)
        return opened

    def frames(self, key: str) -> np.ndarray:
        """The displayed frames uint8 (T, S0, S0, 3) of ``key``: decoded only (no forward) unless already open."""
        hit = self._clips.get(key)
        return hit.clip.frames if hit is not None else load_clip(self._path(key), self.spec).frames

    def predict(self, key: str) -> list[tuple[int, float]]:
        """(class, probability), most probable first."""
        return self.open(key).top

    def explain(self, key: str, classes: list[int] | None = None, method: str = "gradcam",
                layer: str | None = None, settings: dict | None = None, progress=None) -> Explanation:
        """Maps of ``classes`` (default all, or top-5 off the fast path) for ``key``; an input method's are cached
        per settings."""
        layer = layer or self.model.last_layer
        check_request(self.model, method, layer, classes or ())
        check_settings(method, settings)
        opened = self.open(key)
        if method in INPUT_METHODS:
            from vidviz.explain.attribution import attribute

            settings = check_settings(method, settings, tuple(opened.x.shape))  # the defaults filled in
            layer = INPUT
        if one_pass_applies(self.model, method, layer):  # exact, from the cached forward
            idx = list(range(len(self.classes))) if classes is None else [int(c) for c in classes]
            return Explanation(logits=opened.logits, probs=opened.probs, classes=tuple(idx),
                               maps=opened.all_maps[idx].copy() if classes is not None else opened.all_maps,
                               layer=layer, method=method, seconds=0.0)
        want = [c for c, _ in opened.top[:5]] if classes is None else [int(c) for c in classes]
        ck = (key, method, layer, tuple(sorted((settings or {}).items())))
        cached = self._explained.get(ck) or {}
        missing = [c for c in want if c not in cached]
        t0 = time.perf_counter()
        if missing:  # one batched backward for the missing classes and the top-5 not yet cached
            batch = list(dict.fromkeys(missing + [c for c, _ in opened.top[:5] if c not in cached]))
            if method in INPUT_METHODS:
                _, maps = attribute(self.model, opened.x.to(self.device), batch, method, settings,
                                    progress=progress)  # progress(clips evaluated, total)
            else:
                x = opened.x.to(self.device)  # (1, 3, T, S, S): Score-CAM masks it; a hooked adapter reruns it
                acts = self._activations(key, layer).to(self.device) \
                    if uses_activations(self.model, layer, method, len(batch)) else None  # (1, C, T', h, w)
                _, maps = autograd_cams(self.model, x, layer, batch, method, activations=acts,
                                        progress=progress)  # progress(done, total): the perturbation methods
            cached = {**cached, **{c: m for c, m in zip(batch, maps.float().cpu().numpy(), strict=True)}}
            self._explained.put(ck, cached, sum(m.nbytes for m in cached.values()) + 1024)
        maps = np.stack([cached[c] for c in want])
        return Explanation(logits=opened.logits, probs=opened.probs, classes=tuple(want), maps=maps, layer=layer,
                           method=method, seconds=time.perf_counter() - t0)

    def _activations(self, key: str, layer: str) -> torch.Tensor:
        """Activations of ``layer`` for ``key`` (cached): a class switch at any layer reruns no forward."""
        ck = ("acts", key, layer)
        hit = self._explained.get(ck)
        if hit is None:
            hit = layer_activations(self.model, self.open(key).x.to(self.device), layer).cpu()  # (1, C, T', h, w)
            self._explained.put(ck, hit, hit.numel() * hit.element_size())
        return hit

    def temporal(self, key: str, target: int) -> TemporalReport:
        ck = ("temporal", key, int(target))
        hit = self._explained.get(ck)
        if hit is not None:
            return hit
        rep = perturbation_tests(self.model, self.open(key).x.to(self.device), int(target))
        self._explained.put(ck, rep, rep.blank.nbytes + 1024)
        return rep

    # ------------------------------------------------------------ display helpers
    def display_maps(self, maps: np.ndarray, key: str, norm: str = "clip", scale: float | None = None) -> np.ndarray:
        """A raw map (T', h, w) -> (T, S0, S0) in [0, 1] at the displayed frames' size (trilinear)."""
        frames = self.open(key).clip.frames
        t, s0 = frames.shape[0], frames.shape[1]
        up = upsample(maps, (t, s0, s0))  # (T, S0, S0)
        return normalise(up, norm, scale)

    def display_signed(self, maps: np.ndarray, key: str) -> np.ndarray:
        """A signed map (T', h, w), e.g. a contrast -> (T, S0, S0) in [-1, 1] (trilinear)."""
        frames = self.open(key).clip.frames
        up = upsample(maps, (frames.shape[0], frames.shape[1], frames.shape[1]))  # (T, S0, S0)
        return up / max(float(np.abs(up).max()), 1e-12)

    def true_class(self, key: str) -> int | None:
        """The model's class index of ``key``'s true label, matched by name (None: unlabelled, an upload, or a
        class the model does not have)."""
        rec = self.record(key)
        if rec is None or rec.label is None or not 0 <= rec.label < len(self.class_match):
            return None
        c = int(self.class_match[rec.label])
        return c if c >= 0 else None

    def record(self, key: str):
        if key.startswith(("upload:", "file:")) or self.dataset is None or key not in self.dataset:
            return None
        return self.dataset.get(key)

    def ground_truth(self, key: str):
        """(boxes per displayed frame or None, action window in displayed frames or None)."""
        if self.dataset is None or key.startswith(("upload:", "file:")):
            return None, None
        clip = self.open(key).clip
        boxes = boxes_for_clip(self.dataset, key, clip.indices)
        window = None
        if key in self.dataset.windows:
            a0, a1 = self.dataset.windows[key]
            inside = np.flatnonzero((clip.indices >= a0) & (clip.indices <= a1))
            if len(inside):
                window = (int(inside[0]), int(inside[-1]))
        return boxes, window
