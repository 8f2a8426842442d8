"""Evidence guidance: train a model to put its class evidence where the action is.

A dataset with boxes (the generated one, or real Something-Something v2 with the Something-Else
annotations) says, on every frame, where the object acted on and the hand are; the generated one
also says when the action happens. ``vidviz train --guide W`` adds ``W * L_guide`` to the
cross-entropy:

    cam_y   = sum_k w_{y,k} A_k                                        (T', h, w)
    L_energy = sum(relu(cam_y) * (1 - m_a)) / (sum(relu(cam_y)) + eps)
    L_point  = mean over frames t with a box of  -log sum_cells m_t * softmax(cam_y[t])
    L_peak   = mean over frames t with a box of  relu(1 - max over the box cells of cam_y[t])
    L_guide  = L_energy + L_point / 2 + L_peak

``A`` (C, T', h, w) is the last block's output, ``w_y`` (C,) the head's weights of the true class,
``m`` (T', h, w) the share of each cell covered by the boxes on each frame, and ``m_a`` the same on the
frames of the action window only (0 on the others). With a global-average-pooling + linear head,
``mean(cam_y)`` is the class logit less its bias, so ``cam_y`` is CAM (Zhou et al., 2016) and
``relu(cam_y)`` is Grad-CAM at that block up to a constant (Selvaraju et al., 2017, sec. 3.1): the
loss acts on the very maps vidviz shows. ``L_energy`` moves the positive evidence into the boxes
and into the action's frames; ``L_point``, which a shift of ``cam_y`` does not change, puts each
frame's peak inside its boxes; ``L_peak`` keeps that peak positive (a map that is negative
everywhere shows nothing), small beside the action's evidence. The idea is that of "Right for the
Right Reasons" (Ross et al., 2017), which penalises input gradients outside an annotation, and of
GAIN (Li et al., 2018), which supervises attention maps.

A clip whose boxes miss every sampled frame (or that has no boxes) adds nothing; a clip whose
action misses every sampled frame adds only ``L_point`` and ``L_peak``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vidviz.data.datasets import Box, box_mask
from vidviz.data.video import Geometry

#: The boxes that hold a correct model's evidence: the thing acted on (and what covers it) and the hand.
GUIDE_ROLES = ("object", "hand", "cover")


def evidence_mask(boxes: Sequence[Sequence[Box]] | None, geometry: Geometry, size: int) -> np.ndarray:
    """uint8 (T, size, size): 1 inside the object's, the cover's and the hand's boxes on each sampled frame.

    ``boxes``: per source frame (the dataset's), in source pixels; ``geometry``: where the sampled frames came
    from; ``size``: the side of the frames the mask goes with (the square crop, resized).
    """
    out = np.zeros((len(geometry.indices), size, size), np.uint8)
    if not boxes:
        return out
    k = size / geometry.side  # displayed pixels -> mask pixels
    for j, src in enumerate(geometry.indices):
        shown = [tuple(v * k for v in geometry.to_display(b.xyxy))
                 for b in boxes[min(int(src), len(boxes) - 1)] if b.role in GUIDE_ROLES]
        if shown:
            out[j] = box_mask((size, size), shown)
    return out


def action_frames(window: tuple[int, int] | None, geometry: Geometry) -> np.ndarray:
    """bool (T,): which sampled frames lie in the action window (all of them when there is no window)."""
    idx = np.asarray(geometry.indices)
    if window is None:
        return np.ones(len(idx), bool)
    return (idx >= window[0]) & (idx <= window[1])


def class_evidence(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CAM of one class per clip: features (B, C, T', h, w), weights (B, C) -> (B, T', h, w)."""
    return torch.einsum("bcthw,bc->bthw", features, weights)  # (B, T', h, w)


def inside_share(cam: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per clip, the share of the positive evidence inside the mask (0 when there is none): (B, T', h, w) -> (B,)."""
    pos = torch.relu(cam)  # (B, T', h, w)
    return (pos * masks).flatten(1).sum(1) / (pos.flatten(1).sum(1) + eps)  # (B,)


def frame_pointing(cam: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per frame, whether the cell of the map's peak is in the mask; which frames have a mask): (B, T', h, w) -> (B, T')."""
    peak = cam.flatten(2).argmax(2, keepdim=True)  # (B, T', 1)
    hit = masks.flatten(2).gather(2, peak)[..., 0] > 0  # (B, T')
    return hit, masks.flatten(2).amax(2) > 0


def guide_loss(features: torch.Tensor, weights: torch.Tensor, masks: torch.Tensor,
               action: torch.Tensor) -> torch.Tensor:
    """L_guide (the module's formula) over the clips that have a box (0 when none has).

    features (B, C, T', h, w), weights (B, C) of each clip's target class, masks (B, T', h, w) in [0, 1] (the boxes
    on every frame), action (B, T') bool (the frames of the action window).
    """
    valid = masks.flatten(1).amax(1) > 0  # (B,)
    if not bool(valid.any()):
        return features.sum() * 0.0
    cam = class_evidence(features[valid], weights[valid])  # (b, T', h, w)
    m = masks[valid]  # (b, T', h, w)
    m_a = m * action[valid][:, :, None, None].to(m.dtype)  # (b, T', h, w): the boxes on the action's frames
    has_action = m_a.flatten(1).amax(1) > 0  # (b,)
    energy = inside_share(cam[has_action], 1 - m_a[has_action]).sum() / len(cam)  # the share outside
    framed = m.flatten(2).amax(2) > 0  # (b, T'): frames with a box
    c, mf = cam.flatten(2)[framed], m.flatten(2)[framed]  # (n, h*w)
    point = -torch.log((torch.softmax(c, dim=1) * mf).sum(1).clamp_min(1e-6)).mean()
    peak = torch.relu(1.0 - c.masked_fill(mf <= 0, float("-inf")).amax(1)).mean()
    return energy + point / 2 + peak
