"""Saliency quality: score maps against ground truth, and sanity-check them against the model.

All maps here are (T, H, W) at the displayed frames' size (the square crop, source pixels),
boxes are (x1, y1, x2, y2) in the same pixels (or None where a frame has none).

* pointing game: a frame is a hit when the map's maximum lies inside the box;
* energy-based pointing game: the share of the map's (positive) energy inside the box;
* temporal localisation: the share of the importance curve inside the action window, and
  whether the curve's peak frame lies inside it;
* deletion / insertion AUC in space-time (Petsiuk et al., 2018, "RISE"): remove (or restore) the
  most salient voxels first against a baseline, and average the target probability over the steps
  (lower deletion and higher insertion are better); a frame-wise deletion removes whole frames.
  The baseline is the dataset's mean colour (0 after normalisation), RISE's deletion baseline: a
  removed voxel keeps nothing of the clip. A blur (RISE's insertion canvas) is available, but keeps
  what a video model reads most, coarse shapes and their motion: on the generated dataset the
  default model still gives the true class 0.58 on fully blurred clips (0.78 on the clips), and
  blur insertion cannot tell its Grad-CAM from a random map (``benchmarks/saliency_audit.py``
  measures both baselines);
* model-parameter randomisation (Adebayo et al., 2018): re-initialise the network from the
  head downwards, block by block, and report the Spearman rank correlation between the
  original and the randomised maps. An explanation that ignores the model keeps a high
  correlation and fails.

Baselines, so a number means something: a random map, a centre prior, and a frame-difference
(motion) map.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch

from vidviz.data.datasets import box_mask
from vidviz.models.resnet3d import VideoClassifier

Box = tuple[float, float, float, float]


def pointing_game(maps: np.ndarray, boxes: Sequence[Box | Sequence[Box] | None]) -> tuple[np.ndarray, float]:
    """Per-frame hits (1.0 / 0.0, NaN where no box) and the hit rate over frames with a box.

    A frame's entry is a box, or several boxes (a hit in any counts), or None."""
    hits = np.full(len(maps), np.nan)
    for t, (m, b) in enumerate(zip(maps, boxes, strict=True)):
        if b is None:
            continue
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        hits[t] = float(box_mask(m.shape, b)[y, x])
    return hits, float(np.nanmean(hits)) if np.isfinite(hits).any() else float("nan")


def energy_in_box(maps: np.ndarray, boxes: Sequence[Box | Sequence[Box] | None]) -> tuple[np.ndarray, float]:
    """Per-frame share of the map's energy inside the box (or the union of several), and its mean over frames
    with a box."""
    share = np.full(len(maps), np.nan)
    for t, (m, b) in enumerate(zip(maps, boxes, strict=True)):
        if b is None:
            continue
        pos = np.maximum(m, 0)
        tot = pos.sum()
        share[t] = float(pos[box_mask(m.shape, b)].sum() / tot) if tot > 0 else float(box_mask(m.shape, b).mean())
    return share, float(np.nanmean(share)) if np.isfinite(share).any() else float("nan")


def temporal_localisation(curve: np.ndarray, window: tuple[int, int]) -> tuple[float, float]:
    """(share of the curve inside the window, 1.0 if the peak frame is inside else 0.0)."""
    a0, a1 = window
    c = np.asarray(curve, dtype=np.float64)
    tot = c.sum()
    share = float(c[a0:a1 + 1].sum() / tot) if tot > 0 else (a1 - a0 + 1) / len(c)
    return share, float(a0 <= int(np.argmax(c)) <= a1)


@torch.no_grad()
def deletion_insertion(model: VideoClassifier, x: torch.Tensor, saliency: np.ndarray, target: int, steps: int = 8,
                       baseline: str = "mean", batch: int = 9) -> dict[str, float]:
    """Space-time deletion/insertion AUC and frame-wise deletion AUC.

    x: (1, 3, T, S, S) normalised clip; saliency: (T, S, S) at the input's size; baseline: "mean" (the
    dataset's mean colour, 0 after normalisation) or "blur" (a box blur of an eighth of the side).
    Returns {"deletion", "insertion", "deletion_frames"}: the mean target probability over
    steps 0..steps (the normalised area under the curve).
    """
    t, s = x.shape[2], x.shape[3]
    if baseline == "blur":
        k = max(3, (s // 8) | 1)
        base = torch.nn.functional.avg_pool3d(x, (1, k, k), stride=1, padding=(0, k // 2, k // 2),
                                              count_include_pad=False)  # (1, 3, T, S, S)
    elif baseline == "mean":
        base = torch.zeros_like(x)  # the mean, after normalisation
    else:
        raise ValueError(f"baseline must be 'mean' or 'blur', not {baseline!r}")
    sal = torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float32)).reshape(-1)  # (T*S*S,)
    order = torch.argsort(sal, descending=True, stable=True)
    n = sal.numel()
    variants_del, variants_ins = [], []
    for i in range(steps + 1):
        mask = torch.zeros(n)
        mask[order[: int(round(n * i / steps))]] = 1.0
        mask = mask.view(1, 1, t, s, s)
        variants_del.append((x * (1 - mask) + base * mask)[0])
        variants_ins.append((base * (1 - mask) + x * mask)[0])
    frame_order = np.argsort(-saliency.reshape(t, -1).sum(1), kind="stable")
    variants_fr = []
    for i in range(steps + 1):
        v = x[0].clone()
        drop = frame_order[: int(round(t * i / steps))]
        v[:, drop] = base[0][:, drop]
        variants_fr.append(v)
    allv = variants_del + variants_ins + variants_fr
    probs = []
    for i in range(0, len(allv), batch):
        probs.append(torch.softmax(model(torch.stack(allv[i:i + batch])).float(), 1)[:, target])
    p = torch.cat(probs).numpy()
    m = steps + 1
    auc = lambda y: float(np.trapezoid(y, dx=1.0 / steps))  # noqa: E731
    return {"deletion": auc(p[:m]), "insertion": auc(p[m:2 * m]), "deletion_frames": auc(p[2 * m:])}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two arrays (ties broken by position)."""
    ra = np.argsort(np.argsort(np.asarray(a).ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(np.asarray(b).ravel(), kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else 0.0


Explainer = Callable[[VideoClassifier, torch.Tensor, int], np.ndarray]


def randomisation_check(model: VideoClassifier, x: torch.Tensor, target: int, explainer: Explainer,
                        seed: int = 0) -> list[tuple[str, float]]:
    """Cascading randomisation from the head down: [(randomised up to, Spearman vs original)].

    ``explainer(model, x, target) -> map`` (any shape, same for every call).
    """
    original = explainer(model, x, target)
    m = copy.deepcopy(model).eval()
    torch.manual_seed(seed)
    out = []
    for name, mod in m.cascade():  # the classifier, then the layers from the last back (the model's adapter says)
        for sub in mod.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                sub.weight.data.uniform_(0.5, 1.5)
                sub.bias.data.uniform_(-0.5, 0.5)
        out.append((name, spearman(original, explainer(m, x, target))))
    return out


def fails_randomisation(result: list[tuple[str, float]], threshold: float = 0.5) -> bool:
    """An explanation fails when it stays similar (rank correlation > threshold) with every block randomised."""
    return result[-1][1] > threshold


# ---------------------------------------------------------------- baselines

def random_map(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def centre_prior(shape: tuple[int, int, int], sigma: float = 0.25) -> np.ndarray:
    t, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-(((yy - (h - 1) / 2) / (sigma * h)) ** 2 + ((xx - (w - 1) / 2) / (sigma * w)) ** 2) / 2)
    return np.broadcast_to(g.astype(np.float32), (t, h, w)).copy()


def motion_map(frames: np.ndarray) -> np.ndarray:
    """Frame-difference map (T, H, W) from uint8 frames (T, H, W, 3), lightly blurred."""
    import cv2

    f = frames.astype(np.float32).mean(-1)  # (T, H, W)
    d = np.abs(np.diff(f, axis=0, prepend=f[:1]))
    d[0] = d[1] if len(d) > 1 else d[0]
    return np.stack([cv2.GaussianBlur(x, (0, 0), 2.0) for x in d]).astype(np.float32)


def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and 95% confidence half-width (normal approximation) over finite values."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half), len(v)
