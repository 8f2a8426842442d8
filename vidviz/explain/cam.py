"""Grad-CAM and Grad-CAM++ for video classifiers, at native resolution (T', h, w).

Targets are class **logits** (pre-softmax), as in the Grad-CAM paper.

Grad-CAM (Selvaraju et al., 2017) of class c at a layer with activations A (C, T', h, w)::

    alpha_k = mean_{t,i,j} d y_c / d A_k(t,i,j)
    L_c     = ReLU( sum_k alpha_k A_k )                         # (T', h, w)

When the model's head is global average pooling plus a linear layer (every vidviz model),
``d y_c / d A_k = W[c,k] / Z`` with ``Z = T' h w``, so at the last block
``L_c = ReLU( sum_k W[c,k] A_k ) / Z`` (paper, section 3.1): the maps of *all* classes come
from one forward pass, with no hooks and no backward (:func:`cams_for_all_classes`).

At any other layer the gradients come from one forward and one backward batched over all
requested classes (``torch.func.vjp`` + ``torch.func.vmap``, :func:`autograd_cams`); nothing is written to the
parameters' ``.grad`` and no hook is registered, so one model can serve many threads.

Grad-CAM++ (Chattopadhyay et al., 2018), with g = d y_c / d A::

    a_k(t,i,j) = g^2 / (2 g^2 + sum_{t,i,j} A_k * g^3)          (0 where g == 0)
    w_k        = sum_{t,i,j} a_k * ReLU(g)
    L_c        = ReLU( sum_k w_k A_k )

Example::

    >>> expl = explain(model, x, method="gradcam")             # all classes, one forward
    >>> expl.map_for(expl.top[0][0]).shape                     # (T', h, w)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from vidviz.models.resnet3d import VideoClassifier

METHODS = ("gradcam", "gradcam++")


@dataclass(frozen=True)
class Explanation:
    """An immutable explanation: detached CPU arrays only."""

    logits: np.ndarray = field(repr=False)  # (K,) float32, pre-softmax
    probs: np.ndarray = field(repr=False)  # (K,) float32
    classes: tuple[int, ...]  # class index of each map
    maps: np.ndarray = field(repr=False)  # (n, T', h, w) float32, raw (un-normalised) CAMs
    layer: str
    method: str
    seconds: float  # time spent explaining (forward + maps)

    def __post_init__(self):
        for a in (self.logits, self.probs, self.maps):
            a.setflags(write=False)

    @property
    def top(self) -> list[tuple[int, float]]:
        """(class, probability) of all classes, most probable first."""
        order = np.argsort(-self.probs, kind="stable")
        return [(int(c), float(self.probs[c])) for c in order]

    def topk(self, k: int = 5) -> list[tuple[int, float]]:
        return self.top[:k]

    def map_for(self, cls: int) -> np.ndarray:
        """Raw map (T', h, w) of class ``cls``."""
        try:
            return self.maps[self.classes.index(int(cls))]
        except ValueError:
            raise KeyError(f"class {cls} was not explained (have {list(self.classes)[:10]}...)") from None


def cams_from_features(a: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Exact Grad-CAM at the last block for a GAP + linear head.

    a: (C, T', h, w) activations of one clip; weight: (K, C) head weights.
    Returns (n, T', h, w): ReLU(sum_k W[c,k] A_k) / (T' h w) for each class c in ``classes`` (default: all).
    """
    w = weight if classes is None else weight[classes]  # (n, C)
    z = a.shape[1] * a.shape[2] * a.shape[3]
    cam = torch.einsum("nc,cthw->nthw", w.to(a.dtype), a)  # (n, T', h, w)
    return torch.relu(cam) / z


@torch.no_grad()
def cams_for_all_classes(model: VideoClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass: (features (C,T',h,w), logits (K,), maps (K,T',h,w)) for a clip x (1,3,T,H,W)."""
    a = model.features(x)  # (1, C, T', h, w)
    logits = model.head(a)[0]  # (K,)
    maps = cams_from_features(a[0], model.head.fc.weight)  # (K, T', h, w)
    return a[0], logits, maps


def _gradcam_weights(grads: torch.Tensor, acts: torch.Tensor, method: str) -> torch.Tensor:
    """Channel weights (n, C) from grads (n, C, T', h, w) and activations (C, T', h, w)."""
    if method == "gradcam":
        return grads.flatten(2).mean(-1)  # (n, C)
    g2 = grads.pow(2)  # (n, C, T', h, w)
    g3 = g2 * grads
    sum_a = acts.flatten(1).sum(-1)  # (C,)
    denom = 2 * g2 + sum_a[None, :, None, None, None] * g3  # (n, C, T', h, w)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(grads != 0, g2 / denom, torch.zeros_like(g2))  # (n, C, T', h, w)
    return (alpha * torch.relu(grads)).flatten(2).sum(-1)  # (n, C)


def layer_activations(model: VideoClassifier, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Activations (1, C, T', h, w) of ``layer`` for x (1, 3, T, H, W), without autograd."""
    if layer not in model.layer_names:
        raise ValueError(f"unknown layer {layer!r} (use one of {', '.join(model.layer_names)})")
    with torch.no_grad():
        return model.run(x, stop=layer)  # (1, C, T', h, w)


def autograd_cams(model: VideoClassifier, x: torch.Tensor | None, layer: str, classes: list[int],
                  method: str = "gradcam", activations: torch.Tensor | None = None,
                  chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM / Grad-CAM++ at ``layer`` for ``classes`` (targets: class logits, pre-softmax).

    x: (1, 3, T, H, W), or ``activations`` of ``layer`` (1, C, T', h, w) computed before. One
    forward (the stages up to ``layer`` without autograd, the rest under ``torch.func.vjp``),
    then one backward batched over the requested classes with ``torch.func.vmap``; ``chunk``
    classes at most at a time, to bound memory. torch.func's batching rule for convolution
    backward folds the classes into one batched convolution; ``autograd.grad(is_grads_batched=True)``
    loops over them and is about twice as slow on a CPU.
    Returns (logits (K,), maps (n, T', h, w)). No hooks, no ``.grad`` writes; the model must be in
    eval mode (dropout and batch statistics would otherwise change the result).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (use {' or '.join(METHODS)})")
    if model.training:
        raise ValueError("autograd_cams needs the model in eval mode (call model.eval())")
    bad = [int(c) for c in classes if not 0 <= int(c) < model.num_classes]
    if bad:
        raise IndexError(f"class {bad[0]} is out of range (the model has {model.num_classes} classes)")
    a0 = activations if activations is not None else layer_activations(model, x, layer)  # (1, C, T', h, w)
    a0 = a0.detach()
    acts = a0[0]  # (C, T', h, w)
    n = len(classes)
    with torch.enable_grad():
        logits, pullback = torch.func.vjp(lambda a: model.head(model.run(a, start=layer)), a0)  # (1, K)
        if n == 0:
            return logits.detach()[0], acts.new_zeros((0, *acts.shape[1:]))
        eye = torch.zeros(n, *logits.shape, dtype=logits.dtype, device=logits.device)  # (n, 1, K)
        eye[torch.arange(n), 0, torch.as_tensor(classes, device=logits.device)] = 1.0
        try:
            if n == 1:
                grads = pullback(eye[0])[0][None]  # (1, 1, C, T', h, w)
            else:
                grads = torch.func.vmap(pullback, chunk_size=max(1, chunk))(eye)[0]  # (n, 1, C, T', h, w)
        except RuntimeError:  # an op without a batching rule: one pullback per class
            grads = torch.stack([pullback(eye[i])[0] for i in range(n)])  # (n, 1, C, T', h, w)
    g = grads[:, 0].detach()  # (n, C, T', h, w)
    w = _gradcam_weights(g, acts, method)  # (n, C)
    cams = torch.relu(torch.einsum("nc,cthw->nthw", w, acts))  # (n, T', h, w)
    return logits.detach()[0], cams


def explain(model: VideoClassifier, x: torch.Tensor, classes: list[int] | None = None, method: str = "gradcam",
            layer: str | None = None) -> Explanation:
    """Explain one clip x (1, 3, T, H, W) for ``classes`` (default: all) with ``method`` at ``layer``.

    Uses the exact one-pass path for Grad-CAM at the last block, autograd otherwise.
    """
    t0 = time.perf_counter()
    layer = layer or model.last_layer
    if method == "gradcam" and layer == model.last_layer:
        _, logits, maps = cams_for_all_classes(model, x)
        idx = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
        maps = maps[idx] if classes is not None else maps
    else:
        idx = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
        logits, maps = autograd_cams(model, x, layer, idx, method)
    probs = torch.softmax(logits.float(), 0)
    return Explanation(logits=logits.float().cpu().numpy(), probs=probs.cpu().numpy(), classes=tuple(idx),
                       maps=maps.float().cpu().numpy(), layer=layer, method=method,
                       seconds=time.perf_counter() - t0)


def contrast(expl: Explanation, cls_a: int, cls_b: int) -> np.ndarray:
    """Signed difference map (T', h, w): where the model sees more evidence for ``cls_a`` than ``cls_b``."""
    return expl.map_for(cls_a) - expl.map_for(cls_b)


def upsample(maps: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resize of (n, T', h, w) or (T', h, w) maps to (…, T, H, W)."""
    m = torch.from_numpy(np.array(maps, dtype=np.float32))  # a writable copy
    squeeze = m.dim() == 3
    if squeeze:
        m = m[None]
    out = torch.nn.functional.interpolate(m[:, None], size=size, mode="trilinear", align_corners=False)[:, 0]  # (n, T, H, W)
    return out[0].numpy() if squeeze else out.numpy()


def normalise(maps: np.ndarray, mode: str = "clip", scale: float | None = None) -> np.ndarray:
    """Scale maps to [0, 1]: per ``clip`` (default), per ``frame``, or by a ``global`` scale passed in."""
    m = np.maximum(np.asarray(maps, dtype=np.float32), 0)
    if mode == "frame":
        den = m.reshape(m.shape[0], -1).max(1).reshape(-1, *([1] * (m.ndim - 1)))
    elif mode == "global":
        if scale is None:
            raise ValueError("normalise(mode='global') needs a scale")
        den = np.float32(scale)
    elif mode == "clip":
        den = m.max()
    else:
        raise ValueError(f"unknown normalisation {mode!r} (clip, frame or global)")
    return m / np.maximum(den, 1e-12)
