"""Temporal analysis: which frames matter, and does the order of frames matter.

* :func:`importance_curve`: each frame's share of a map's total (sums to 1).
* :func:`perturbation_tests`: the change in the target class probability when the clip is
  reversed, frozen (the first frame repeated), shuffled, or when each frame in turn is
  blanked (set to the dataset mean), all in batched forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from vidviz.models.resnet3d import VideoClassifier


def importance_curve(cam: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """Share of the map (T', h, w) in each frame: (T',) summing to 1, resampled to ``num_frames`` if given."""
    per = np.maximum(np.asarray(cam, dtype=np.float64), 0).reshape(cam.shape[0], -1).sum(1)  # (T',)
    if num_frames and num_frames != len(per):
        per = np.interp(np.linspace(0, len(per) - 1, num_frames), np.arange(len(per)), per)
    total = per.sum()
    return (per / total if total > 0 else np.full(len(per), 1.0 / len(per))).astype(np.float32)


@dataclass(frozen=True)
class TemporalReport:
    """Change of the target class probability under temporal perturbations."""

    target: int
    base_prob: float  # p(target) on the clip as it is
    reverse: float  # p(reversed) - p(original)
    freeze: float  # first frame repeated
    shuffle: float  # frames in a fixed random order
    blank: np.ndarray = field(repr=False)  # (T,): frame t set to the mean
    top1: dict = field(default_factory=dict)  # variant -> predicted class

    @property
    def order_matters(self) -> bool:
        """True when reversing or shuffling the frames costs the target at least 0.1 probability."""
        return min(self.reverse, self.shuffle) <= -0.1


def perturbation_tests(model: VideoClassifier, x: torch.Tensor, target: int, seed: int = 0, batch: int = 8) -> TemporalReport:
    """x: (1, 3, T, H, W) normalised clip. One batched pass over T + 4 variants."""
    import torch

    with torch.no_grad():
        return _perturbation_tests(model, x, target, seed, batch)


def _perturbation_tests(model: VideoClassifier, x: torch.Tensor, target: int, seed: int, batch: int) -> TemporalReport:
    import torch

    t = x.shape[2]
    perm = torch.randperm(t, generator=torch.Generator().manual_seed(seed))
    variants = [x[0], x[0].flip(1), x[0][:, :1].expand_as(x[0]), x[0][:, perm]]  # each (3, T, H, W)
    for i in range(t):
        v = x[0].clone()
        v[:, i] = 0.0  # the mean, after normalisation
        variants.append(v)
    probs, top = [], []
    for i in range(0, len(variants), batch):
        logits = model(torch.stack(variants[i:i + batch]))  # (b, K)
        p = torch.softmax(logits.float(), 1)
        probs.append(p[:, target].cpu())
        top.append(p.argmax(1).cpu())
    p = torch.cat(probs).numpy()  # (T + 4,)
    top1 = torch.cat(top).numpy()
    base = float(p[0])
    return TemporalReport(target=int(target), base_prob=base, reverse=float(p[1] - base), freeze=float(p[2] - base),
                          shuffle=float(p[3] - base), blank=(p[4:] - base).astype(np.float32),
                          top1={"original": int(top1[0]), "reverse": int(top1[1]), "freeze": int(top1[2]),
                                "shuffle": int(top1[3])})
