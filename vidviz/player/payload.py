"""What the player receives, once per (clip, layer, method): frames as JPEG, maps as float16, all plain JSON.

Payload fields (all JSON-serialisable)::

    id          str    checkpoint hash : clip key : method : layer (the player keeps its state per id)
    clip        str | None   the dataset clip id (None for an upload: the player then leaves ``clip`` out of the URL)
    frames      [str]  T base64 JPEGs of the displayed frames (square crop, at most MAX_SIDE px)
    side        int    their side in pixels
    fps         float  the rate the frames were sampled at (playback rate)
    classes     [str]  every class name, by index
    probs       [float] softmax probability of every class
    order       [int]  class indices, most probable first
    available   [int]  the classes whose maps are in ``maps`` (all at the last block; else the top predictions)
    maps        str    base64 float16 (len(available), T', h, w), little-endian, raw (un-normalised) Grad-CAM
    map_shape   [int]  (T', h, w)
    jet         [int]  256 x RGB: the colour map of the exports (OpenCV's jet), so both paint the same colours
    boxes       [[[role, x1, y1, x2, y2]]] | None  per displayed frame, in displayed pixels
    window      [a, b] | None  first and last displayed frame of the action
    method, layer, target  str   what the maps are (target: "class logit, pre-softmax")
"""

from __future__ import annotations

import base64
from functools import cache

import cv2
import numpy as np

from vidviz.data.video import resize_frames
from vidviz.explain.cam import one_pass_applies
from vidviz.render import jet

#: Largest side of the frames sent to the browser (a 4K upload is shown at this size).
MAX_SIDE = 320
#: Classes explained off the one-pass path (other layers, other methods): the top predictions.
TOP_AVAILABLE = 5


@cache
def jet_table() -> list[int]:
    """256 RGB triples, flattened: the colour of value i/255 in :func:`vidviz.render.jet`."""
    return jet(np.arange(256, dtype=np.float32)[None, :] / 255.0)[0].astype(int).ravel().tolist()  # (256*3,)


def _jpeg_b64(frame: np.ndarray, quality: int = 88) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def build_payload(backend, key: str, method: str = "gradcam", layer: str | None = None,
                  extra_classes: tuple[int, ...] = (), settings: dict | None = None) -> dict:
    """The player's payload for ``key`` (a dataset clip id or an upload key) from ``backend``; ``settings`` of
    an input-attribution method."""
    model = backend.model
    layer = layer or model.last_layer
    opened = backend.open(key)
    frames = opened.clip.frames  # (T, S0, S0, 3)
    s0 = frames.shape[1]
    side = min(s0, MAX_SIDE)
    shown = resize_frames(frames, side)  # (T, side, side, 3)
    top = opened.top
    if one_pass_applies(model, method, layer):
        expl = backend.explain(key, None, method, layer)  # all classes, from the cached forward
    else:
        want = list(dict.fromkeys([c for c, _ in top[:TOP_AVAILABLE]] + [int(c) for c in extra_classes]))
        expl = backend.explain(key, want, method, layer, settings or None)
    maps = np.ascontiguousarray(expl.maps, dtype="<f2")  # (n, T', h, w)
    boxes, window = backend.ground_truth(key)
    scale = side / s0  # sent pixels per displayed pixel
    shown_boxes = None
    if boxes:
        shown_boxes = [[[b.role, *(round(v * scale, 1) for v in opened.clip.to_display(b.xyxy))]
                        for b in fb if b.role in ("object", "hand")] for fb in boxes]
    record = backend.record(key)
    return {
        "id": f"{backend.checkpoint_hash}:{key}:{method}:{layer}",
        "clip": record.id if record is not None else None,
        "frames": [_jpeg_b64(f) for f in shown],
        "side": int(side),
        "fps": float(backend.spec.fps),
        "classes": list(backend.classes),
        "probs": [round(float(p), 5) for p in opened.probs],
        "order": [c for c, _ in top],
        "available": [int(c) for c in expl.classes],
        "maps": base64.b64encode(maps.tobytes()).decode("ascii"),
        "map_shape": list(maps.shape[1:]),
        "jet": jet_table(),
        "boxes": shown_boxes,
        "window": list(window) if window is not None else None,
        "method": method,
        "layer": expl.layer,  # "input" for an input attribution (it has no layer)
        "target": "class logit (pre-softmax)",
    }
