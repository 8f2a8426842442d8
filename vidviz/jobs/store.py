"""Precomputed predictions and maps for a whole split: Parquet + memory-mapped arrays.

A store lives in ``<stores>/<dataset name>-<dataset fingerprint>/<checkpoint hash>/<split>/``::

    meta.json            checkpoint hash, dataset fingerprint, split, classes, k, shapes, complete
    predictions.parquet  one row per clip: id, label, pred, probabilities, margin, entropy,
                         true rank, case, top-k classes and probabilities (flat columns
                         top1..topk, top1_prob..topk_prob: no per-row Python objects), map_row
    maps.npy             float16 (N, k+1, T', h, w): Grad-CAM of the top-k classes and the true class
    map_classes.npy      int32 (N, k+1): the class of each map (-1: no true label)
    curves.npy           float16 (N, T): per-frame importance of the top-1 class
    logits.npy           float32 (N, K)

Work is written in parts (``parts/part-<i>.*``), each to a temporary file renamed into place,
so a killed run resumes without redoing finished parts and never leaves a corrupt file.
Under ``torchrun`` rank r computes parts i with i % WORLD_SIZE == r; rank 0 merges.
A store is keyed by the checkpoint's hash and the dataset's fingerprint: one that belongs to
another checkpoint or dataset is refused (:class:`StoreError`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vidviz import config
from vidviz.data.datasets import VideoDataset
from vidviz.data.io import atomic_write_bytes, atomic_write_json
from vidviz.errors import StoreError
from vidviz.explain.temporal import importance_curve
from vidviz.runtime import barrier, dist_info, pick_device

if TYPE_CHECKING:
    from vidviz.models.resnet3d import VideoClassifier

# torch is imported by precompute() alone: opening a store (the gallery, the browser's prediction
# columns) never loads it.

CASES = ("positive", "medium", "negative")
PART_SIZE = 64
VERSION = 2  # 2: flat top-k columns and categorical class names (1 held per-row lists)


def assign_cases(logits: np.ndarray, labels: np.ndarray, k: int = 5, min_confidence: float | None = None):
    """Cases as in the seed, from logits (N, K) and labels (N,) (-1 = unknown).

    positive: the true class ranks 1 (and, with ``min_confidence``, has at least that probability);
    medium: it ranks 2..k (or ranks 1 below the confidence threshold); negative: below k.
    Returns (cases (N,) object array, true_rank (N,) int; 0 where unknown).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    known = labels >= 0
    true_logit = np.where(known, logits[np.arange(n), np.clip(labels, 0, None)], np.inf)
    rank = np.where(known, 1 + (logits > true_logit[:, None]).sum(1), 0)
    cases = np.full(n, "unlabelled", dtype=object)
    cases[known & (rank == 1)] = "positive"
    cases[known & (rank >= 2) & (rank <= k)] = "medium"
    cases[known & (rank > k)] = "negative"
    if min_confidence is not None:
        p = softmax(logits)
        low = known & (rank == 1) & (p[np.arange(n), np.clip(labels, 0, None)] < min_confidence)
        cases[low] = "medium"
    return cases, rank.astype(np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def prediction_table(ids, labels, logits: np.ndarray, classes: list[str], k: int = 5,
                     min_confidence: float | None = None) -> pd.DataFrame:
    """The per-clip table of a store from raw logits (N, K)."""
    p = softmax(np.asarray(logits, dtype=np.float64))  # (N, K)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]  # (N, k)
    top_p = np.take_along_axis(p, order, 1)
    labels = np.asarray(labels, dtype=np.int64)
    cases, rank = assign_cases(logits, labels, k, min_confidence)
    n = len(labels)
    ent = -(p * np.log(np.clip(p, 1e-12, 1))).sum(1)
    true_p = np.where(labels >= 0, p[np.arange(n), np.clip(labels, 0, None)], np.nan)
    code_t = np.int16 if len(classes) < 2**15 else np.int32
    cols = {
        "id": pd.array([str(i) for i in ids], dtype="string"),
        # class names as categoricals (one small code per row, not one string); code -1 = no label
        "label": labels, "true_name": pd.Categorical.from_codes(labels, categories=list(classes)),
        "pred": order[:, 0], "pred_name": pd.Categorical.from_codes(order[:, 0], categories=list(classes)),
        "prob": top_p[:, 0].astype(np.float32),
        "second": order[:, 1] if k > 1 else order[:, 0], "second_prob": top_p[:, min(1, k - 1)].astype(np.float32),
        "margin": (top_p[:, 0] - top_p[:, min(1, k - 1)]).astype(np.float32),
        "entropy": ent.astype(np.float32), "true_rank": rank, "true_prob": true_p.astype(np.float32),
        "case": pd.Categorical(cases, categories=[*CASES, "unlabelled"]),
    }
    for j in range(order.shape[1]):
        cols[f"top{j + 1}"] = order[:, j].astype(code_t)
        cols[f"top{j + 1}_prob"] = top_p[:, j].astype(np.float32)
    cols["map_row"] = np.arange(n, dtype=np.int64)
    return pd.DataFrame(cols)


def topk_of(row, k: int) -> list[tuple[int, float]]:
    """[(class, probability)] of the top ``k`` of one table row (a namedtuple from itertuples or a Series)."""
    return [(int(getattr(row, f"top{j}")), float(getattr(row, f"top{j}_prob"))) for j in range(1, k + 1)
            if hasattr(row, f"top{j}")]


def store_dir(ds: VideoDataset, checkpoint_hash: str, split: str, root: str | Path | None = None) -> Path:
    base = Path(root) if root is not None else config.STORE_DIR
    return base / f"{ds.name}-{ds.fingerprint()}" / checkpoint_hash / split


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class Store:
    """A complete store, memory-mapped."""

    path: Path
    meta: dict
    table: pd.DataFrame
    maps: np.ndarray  # float16 (N, k+1, T', h, w), memory-mapped
    map_classes: np.ndarray  # int32 (N, k+1)
    curves: np.ndarray  # float16 (N, T)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def counts(self) -> dict[str, int]:
        vc = self.table["case"].value_counts()
        return {c: int(vc.get(c, 0)) for c in CASES}

    def map_of(self, row: int, cls: int) -> np.ndarray | None:
        """Stored map (T', h, w) of class ``cls`` for table row ``row`` (None when not stored)."""
        mr = int(self.table["map_row"].iat[row])
        hits = np.flatnonzero(self.map_classes[mr] == cls)
        return None if len(hits) == 0 else np.asarray(self.maps[mr, hits[0]], dtype=np.float32)

    def prediction_columns(self) -> pd.DataFrame:
        """id, predicted class and its probability, case: to merge into the browser table."""
        t = self.table
        return pd.DataFrame({"id": t["id"], "prediction": t["pred_name"], "p": t["prob"].round(2), "case": t["case"]})

    def confusion(self) -> np.ndarray:
        k = len(self.classes)
        t = self.table[self.table["label"] >= 0]
        conf = np.zeros((k, k), dtype=np.int64)
        np.add.at(conf, (t["label"].to_numpy(), t["pred"].to_numpy()), 1)
        return conf


def open_store(path: str | Path, checkpoint_hash: str | None = None, fingerprint: str | None = None) -> Store:
    """Open a complete store; refuse one that is incomplete or belongs to another checkpoint/dataset."""
    path = Path(path)
    mp = path / "meta.json"
    if not mp.is_file():
        raise StoreError("no store here (run `vidviz precompute`)", path)
    try:
        meta = json.loads(mp.read_text())
    except json.JSONDecodeError:
        raise StoreError("meta.json is corrupt", path) from None
    if not meta.get("complete"):
        raise StoreError("store is incomplete; rerun `vidviz precompute` to finish it", path)
    if meta.get("version", 1) != VERSION:
        raise StoreError(f"store format {meta.get('version', 1)} is not this vidviz's ({VERSION}); "
                         "rerun `vidviz precompute` to rebuild it (finished parts are reused)", path)
    if checkpoint_hash is not None and meta.get("checkpoint_hash") != checkpoint_hash:
        raise StoreError(f"store was made with checkpoint {meta.get('checkpoint_hash')}, not {checkpoint_hash}", path)
    if fingerprint is not None and meta.get("dataset_fingerprint") != fingerprint:
        raise StoreError("store was made from a different version of the dataset", path)
    try:
        table = pd.read_parquet(path / "predictions.parquet")
        maps = np.load(path / "maps.npy", mmap_mode="r")
        mc = np.load(path / "map_classes.npy", mmap_mode="r")
        curves = np.load(path / "curves.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise StoreError(f"store files are unreadable ({e})", path) from None
    if len(table) != maps.shape[0]:
        raise StoreError("predictions and maps disagree in length", path)
    return Store(path, meta, table, maps, mc, curves)


def find_store(ds: VideoDataset, checkpoint_hash: str, split: str, root: str | Path | None = None) -> Store | None:
    """The store of a checkpoint (by its file's hash) and ``ds`` for ``split``, or None when there is none.

    Needs no model, so the dataset browser can show stored predictions before the model has loaded.
    """
    d = store_dir(ds, checkpoint_hash, split, root)
    if not (d / "meta.json").is_file():
        return None
    try:
        if json.loads((d / "meta.json").read_text()).get("version", 1) != VERSION:
            return None  # an older format: the page offers to rebuild it (finished parts are reused)
    except json.JSONDecodeError:
        pass  # open_store names the problem
    return open_store(d, checkpoint_hash, ds.fingerprint())


def open_store_for(backend, split: str, root: str | Path | None = None) -> Store | None:
    """The store of ``backend``'s checkpoint + dataset for ``split``, or None when there is none."""
    return None if backend.dataset is None else find_store(backend.dataset, backend.checkpoint_hash, split, root)


def precompute(model: VideoClassifier, ds: VideoDataset, split: str, out: str | Path | None = None, k: int = 5,
               batch_size: int = 8, workers: int = 2, device: str = "auto", progress=None,
               min_confidence: float | None = None, max_parts: int | None = None, part_size: int = PART_SIZE,
               log=None) -> Path:
    """Compute (or finish) the store of ``split``; returns its folder.

    ``progress(done_clips, total_clips)`` is called as parts finish; ``log(message)`` hears about
    parts that were damaged and are computed again. ``max_parts`` stops early (for tests that
    simulate a crash). A folder that holds a store made with other settings (checkpoint, dataset,
    split, part size, k, confidence) is refused, naming what differs.
    """
    import torch

    from vidviz.data.datasets import match_classes
    from vidviz.data.loader import iterate_batches
    from vidviz.explain.cam import batch_cams

    recs = ds.split(split)
    if not recs:
        raise StoreError(f"split {split!r} has no clips", ds.root)
    match = match_classes(list(ds.classes), list(model.classes))  # dataset class -> model class by name (-1: none)
    out = Path(out) if out is not None else store_dir(ds, model.checkpoint_hash, split)
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    dev = pick_device(device)
    n_parts = -(-len(recs) // part_size)
    expected = [[r.id for r in recs[i * part_size:(i + 1) * part_size]] for i in range(n_parts)]
    if rank == 0:  # a rerun must not mix runs: same settings, and every finished part checked
        check_manifest(out, {"version": VERSION, "checkpoint_hash": model.checkpoint_hash,
                              "dataset_fingerprint": ds.fingerprint(), "split": split, "clips": len(recs),
                              "part_size": part_size, "k": k, "min_confidence": min_confidence})
        for i in range(n_parts):
            problem = _part_problem(parts_dir, i, expected[i])
            if problem and problem != "not written yet":
                _drop_part(parts_dir, i)
                if log:
                    log(f"{parts_dir / f'part-{i:05d}'}: {problem}; it is computed again")
        remove_leftovers(out, parts_dir)
    barrier()
    model = model.to(dev).eval()
    mine = [i for i in range(n_parts) if i % world == rank]
    done = sum(min(part_size, len(recs) - i * part_size) for i in range(n_parts) if _part_done(parts_dir, i))
    total = len(recs)
    if progress:
        progress(done, total)
    todo = [i for i in mine if not _part_done(parts_dir, i)][:max_parts]
    # one decoding pipeline over every part still to do, so workers start once and never drain between parts
    parts = {i: recs[i * part_size:(i + 1) * part_size] for i in todo}
    flat = [r for i in todo for r in parts[i]]
    owner = [i for i in todo for _ in parts[i]]  # the part of each position in flat
    left = {i: len(parts[i]) for i in todo}  # clips of each part not yet through the model
    acc = {i: ([], [], [], [], [], [], []) for i in todo}  # ids, labels, logits, maps, map classes, curves, failures
    for batch in iterate_batches(flat, model.spec, batch_size, workers):
        for pos, msg in batch.errors:
            *_, failures = acc[owner[pos]]
            failures.append((flat[pos].id, msg))
            left[owner[pos]] -= 1
        if batch.x is not None:
            labs = [int(match[flat[pos].label]) if flat[pos].label is not None else -1 for pos in batch.indices]
            true = torch.tensor([[max(lab, 0)] for lab in labs], device=dev)  # (B, 1)

            def pick(logits, true=true):  # the top-k classes and the true class of each clip
                return torch.cat([logits.topk(min(k, logits.shape[1]), dim=1).indices, true], 1)  # (B, k+1)

            logits, maps = batch_cams(model, batch.x.to(dev), pick)  # (B, K), (B, k+1, T', h, w)
            cls = pick(logits).cpu().numpy().astype(np.int32)  # (B, k+1)
            logits, maps = logits.float().cpu().numpy(), maps.cpu().numpy()
            for j, pos in enumerate(batch.indices):
                ids, labels, logits_l, maps_l, mcls_l, curves_l, _ = acc[owner[pos]]
                mc = cls[j].copy()
                if labs[j] < 0:
                    mc[-1] = -1
                ids.append(flat[pos].id)
                labels.append(labs[j])
                logits_l.append(logits[j])
                maps_l.append(maps[j].astype(np.float16))
                mcls_l.append(mc)
                curves_l.append(importance_curve(maps[j, 0], model.spec.num_frames).astype(np.float16))
                left[owner[pos]] -= 1
        for i in [i for i in acc if left[i] == 0]:  # parts complete: write them as soon as they are
            _write_part(parts_dir, i, *acc.pop(i))
            done += len(parts[i])
            if progress:
                progress(done, total)
    barrier()
    if rank == 0 and all(_part_done(parts_dir, i) for i in range(n_parts)):
        bad = [(i, p) for i in range(n_parts) if (p := _part_problem(parts_dir, i, expected[i]))]
        for i, _ in bad:  # damaged while this run went on: computed again by the next run
            _drop_part(parts_dir, i)
        if bad:
            raise StoreError(f"part-{bad[0][0]:05d}: {bad[0][1]}; rerun the same command to compute it again",
                             parts_dir)
        _merge(out, n_parts, model, ds, split, k, min_confidence)
    return out


def _part_done(parts_dir: Path, i: int) -> bool:
    return (parts_dir / f"part-{i:05d}.json").is_file()


def remove_leftovers(*folders: Path) -> None:
    """Delete what a killed run leaves behind: its half-written temporary files (never a finished file)."""
    for folder in folders:
        for p in [*folder.glob(".*.tmp"), *folder.glob(".maps.*.npy")]:
            p.unlink(missing_ok=True)


def check_manifest(out: Path, want: dict, name: str = "manifest.json", work: str = "parts/part-*.json") -> None:
    """Refuse a folder whose job was run with other settings; record them in a new one.

    ``name`` is the manifest's file (a precompute store and a quality run may share a folder), ``work`` a glob
    of the files a run writes: work without a manifest is of unknown settings, and refused too.
    """
    mp = out / name
    if not mp.is_file():
        if any(out.glob(work)):
            raise StoreError(f"this folder holds work of a run with unknown settings (no {name}); "
                             "delete it to start over, or choose another --out", out)
        atomic_write_json(mp, want)
        return
    try:
        have = json.loads(mp.read_text())
        if not isinstance(have, dict):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        raise StoreError(f"{name} is corrupt; delete the folder to start over", out) from None
    diff = [f"{key} {have.get(key)!r} (asked: {v!r})" for key, v in want.items() if have.get(key) != v]
    if diff:
        raise StoreError("this folder holds a store made with other settings: " + ", ".join(diff)
                         + "; delete it to start over, or choose another --out", out)


def _part_problem(parts_dir: Path, i: int, expected_ids: list[str]) -> str | None:
    """Why part ``i`` cannot be used (None: it is complete and intact)."""
    stem = parts_dir / f"part-{i:05d}"
    if not stem.with_suffix(".json").is_file():
        return "not written yet"
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        ids, failed, digest = list(meta["ids"]), [f[0] for f in meta["failures"]], meta["sha256"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        return "its JSON is damaged"
    if sorted(ids + failed) != sorted(expected_ids) or ids != [c for c in expected_ids if c in set(ids)]:
        return "it holds other clips than its own (or in another order)"
    npz = stem.with_suffix(".npz")
    if not npz.is_file():
        return "its .npz file is missing"
    if hashlib.sha256(npz.read_bytes()).hexdigest() != digest:
        return "its .npz file fails its checksum (truncated or changed)"
    return None


def _drop_part(parts_dir: Path, i: int) -> None:
    for suffix in (".json", ".npz"):  # the JSON first: it marks the part as done
        (parts_dir / f"part-{i:05d}").with_suffix(suffix).unlink(missing_ok=True)


def _write_part(parts_dir: Path, i: int, ids, labels, logits, maps, mcls, curves, failures) -> None:
    stem = parts_dir / f"part-{i:05d}"
    arrays = {"logits": np.stack(logits) if logits else np.zeros((0, 0), np.float32),
              "maps": np.stack(maps) if maps else np.zeros((0,), np.float16),
              "map_classes": np.stack(mcls) if mcls else np.zeros((0,), np.int32),
              "curves": np.stack(curves) if curves else np.zeros((0,), np.float16)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
    # the json is written last: its presence marks the part complete; its checksum guards the .npz
    atomic_write_json(stem.with_suffix(".json"), {"ids": ids, "labels": [int(x) for x in labels], "failures": failures,
                                                  "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})


def _merge(out: Path, n_parts: int, model: VideoClassifier, ds: VideoDataset, split: str, k: int,
           min_confidence: float | None) -> None:
    ids, labels, logits, maps, mcls, curves, failures = [], [], [], [], [], [], []
    for i in range(n_parts):
        stem = out / "parts" / f"part-{i:05d}"
        meta = json.loads(stem.with_suffix(".json").read_text())
        if not meta["ids"]:
            failures += meta["failures"]
            continue
        with np.load(stem.with_suffix(".npz")) as z:
            logits.append(z["logits"])
            maps.append(z["maps"])
            mcls.append(z["map_classes"])
            curves.append(z["curves"])
        ids += meta["ids"]
        labels += meta["labels"]
        failures += meta["failures"]
    if not ids:
        raise StoreError("no clip of this split could be decoded", ds.root)
    L = np.concatenate(logits)
    table = prediction_table(ids, labels, L, model.classes, k, min_confidence)
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    atomic_write_bytes(out / "predictions.parquet", buf.getvalue())
    tmp = out / f".maps.{os.getpid()}.npy"
    try:  # written part by part with plain writes (a full disk is an OSError; through a memory map it is a SIGBUS)
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(np.float16).str, "fortran_order": False,
                                                      "shape": (len(ids), *maps[0].shape[1:])})
            for m in maps:
                fh.write(np.ascontiguousarray(m, dtype=np.float16).tobytes())
        os.replace(tmp, out / "maps.npy")  # (open() made it following the umask)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(out / "maps.npy")) from None
    _save_npy(out / "map_classes.npy", np.concatenate(mcls))
    _save_npy(out / "curves.npy", np.concatenate(curves))
    _save_npy(out / "logits.npy", L.astype(np.float32))
    atomic_write_json(out / "meta.json", {
        "version": VERSION, "complete": True, "checkpoint_hash": model.checkpoint_hash,
        "dataset_fingerprint": ds.fingerprint(), "dataset": str(ds.root), "split": split, "classes": model.classes,
        "k": k, "min_confidence": min_confidence, "clips": len(ids), "failures": failures,
        "map_shape": list(maps[0].shape[1:]), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
