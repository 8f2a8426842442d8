"""Grad-CAM and Grad-CAM++ for video classifiers, at native resolution (T', h, w).

Targets are class **logits** (pre-softmax), as in the Grad-CAM paper.

Grad-CAM (Selvaraju et al., 2017) of class c at a layer with activations A (C, T', h, w)::

    alpha_k = mean_{t,i,j} d y_c / d A_k(t,i,j)
    L_c     = ReLU( sum_k alpha_k A_k )                         # (T', h, w)

When the model's head is global average pooling plus a linear layer (every vidviz model),
``d y_c / d A_k = W[c,k] / Z`` with ``Z = T' h w``, so at the last block
``L_c = ReLU( sum_k W[c,k] A_k ) / Z`` (paper, section 3.1): the maps of *all* classes come
from one forward pass, with no hooks and no backward (:func:`forward_cams`).

At any other layer the gradients come from one forward and one backward batched over all
requested classes (``torch.func.vjp`` + ``torch.func.vmap``, :func:`autograd_cams`); nothing is written to the
parameters' ``.grad`` and no hook is registered, so one model can serve many threads. Grad-CAM
uses only the gradient averaged over positions, so on the vidviz ResNets that backward stops
at the convolutions that read the layer and the average is taken in closed form
(:func:`pooled_input_grad`): exact, and without the two transposed convolutions.

Grad-CAM++ (Chattopadhyay et al., 2018), with g = d y_c / d A::

    a_k(t,i,j) = g^2 / (2 g^2 + sum_{t,i,j} A_k * g^3)          (0 where g == 0)
    w_k        = sum_{t,i,j} a_k * ReLU(g)
    L_c        = ReLU( sum_k w_k A_k )

The rest of the CAM family, with p = (t,i,j) a position and g, A as above (:mod:`vidviz.explain.methods`
lists the papers and the costs)::

    XGrad-CAM   w_k = sum_p g_k(p) A_k(p) / sum_p A_k(p)       L = ReLU( sum_k w_k A_k )
    HiResCAM    L = ReLU( sum_k g_k * A_k )                    (element-wise product, then the channel sum)
    Grad-CAM element-wise   L = sum_k ReLU( g_k * A_k )
    LayerCAM    L = ReLU( sum_k ReLU(g_k) * A_k )
    Eigen-CAM   L = ReLU( A' v_1 )  where A' is A as (positions, channels) centred over positions and v_1
                its first right-singular vector, signed so that the projection correlates positively with
                sum_k A_k (class-agnostic: no gradient, one map for every class)
    Ablation-CAM  w_k = (y_c - y_c^(k)) / y_c,  y_c^(k) the logit with channel k of A set to 0
                (the network after the layer only: exact)      L = ReLU( sum_k w_k A_k )
    Score-CAM   w_k = softmax(f(X * H_k))_c,  H_k = A_k upsampled to the input's (T, H, W) and scaled to
                [0, 1] (min-max); one full forward per channel  L = ReLU( sum_k w_k A_k )

The perturbation methods (Ablation-CAM, Score-CAM) batch their passes, ``chunk`` at a time, to bound memory.

Example::

    >>> expl = explain(model, x, method="gradcam")             # all classes, one forward
    >>> expl.map_for(expl.top[0][0]).shape                     # (T', h, w)
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vidviz.errors import ExplainError
from vidviz.explain.methods import CAM_METHODS, INPUT_METHODS, METHOD_INFO, METHODS, check_settings
from vidviz.models.adapter import EntrySplit
from vidviz.models.resnet3d import ResidualBlock, VideoClassifier


def ranked(probs: np.ndarray) -> list[tuple[int, float]]:
    """(class, probability) of every class, most probable first (ties: lower index first)."""
    order = np.argsort(-np.asarray(probs), kind="stable")
    return [(int(c), float(probs[c])) for c in order]


def one_pass_applies(model: VideoClassifier, method: str, layer: str | None) -> bool:
    """Whether the maps of every class come exactly from one forward: Grad-CAM at the default layer of a
    model whose head there is GAP + linear (``model.head_weights``; see :mod:`vidviz.models.adapter`)."""
    return method == "gradcam" and (layer is None or layer == model.last_layer) \
        and model.head_weights(model.last_layer) is not None


INPUT = "input"  # the "layer" of an input attribution (Captum's methods attribute the pixels)


def check_request(model: VideoClassifier, method: str, layer: str, classes=()) -> None:
    """Typed one-line errors for an unknown method or layer, or a class out of range."""
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r} (use one of {', '.join(METHODS)})")
    if method in INPUT_METHODS:
        pass  # the input's pixels, whatever layer the viewer shows for the CAMs
    elif not model.has_layer(layer):
        raise ExplainError(f"unknown layer {layer!r} (use one of {', '.join(model.layer_names)})")
    bad = [int(c) for c in classes if not 0 <= int(c) < model.num_classes]
    if bad:
        raise ExplainError(f"class {bad[0]} is out of range (the model has {model.num_classes} classes)")


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
        return ranked(self.probs)

    def map_for(self, cls: int) -> np.ndarray:
        """Raw map (T', h, w) of class ``cls``."""
        try:
            return self.maps[self.classes.index(int(cls))]
        except ValueError:
            raise ExplainError(f"class {cls} was not explained (have {list(self.classes)[:10]}...)") from None


def cams_from_features(a: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Exact Grad-CAM at the last block for a GAP + linear head.

    a: (B, C, T', h, w) activations; weight: (K, C) head weights; ``classes``: (B, n) class
    indices per clip (default: all K). Returns (B, n, T', h, w): ReLU(sum_k W[c,k] A_k) / (T' h w).
    """
    z = a.shape[2] * a.shape[3] * a.shape[4]
    w = weight.to(a.dtype)  # (K, C)
    if classes is None:
        cam = torch.einsum("kc,bcthw->bkthw", w, a)  # (B, K, T', h, w)
    else:
        cam = torch.einsum("bnc,bcthw->bnthw", w[classes], a)  # (B, n, T', h, w)
    return torch.relu(cam) / z


@torch.no_grad()
def forward_cams(model: VideoClassifier, x: torch.Tensor, pick=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass and the exact last-block Grad-CAM of its classes, for a batch of clips.

    x: (B, 3, T, H, W). ``pick(logits (B, K)) -> (B, n)`` chooses each clip's classes
    (default: all K). Returns (features (B, C, T', h, w), logits (B, K), maps (B, n, T', h, w)).
    The one path the viewer, the precompute store and :func:`explain` share; only where
    :func:`one_pass_applies` (the model's head is GAP + linear after its default layer).
    """
    weight = model.head_weights(model.last_layer)  # (K, C) or None
    if weight is None:
        raise ExplainError(f"{model.arch}: the all-classes fast path does not apply (its head after "
                           f"{model.last_layer} is not average pooling + linear)")
    a, logits = model.features_logits(x, model.last_layer)  # (B, C, T', h, w), (B, K)
    classes = None if pick is None else pick(logits)  # (B, n)
    return a, logits, cams_from_features(a, weight, classes)


def batch_cams(model: VideoClassifier, x: torch.Tensor, pick) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, K) and Grad-CAM (B, n, T', h, w) at the default layer of the classes ``pick(logits)`` (B, n)
    chooses: from the one forward where :func:`one_pass_applies`, else one batched backward per clip."""
    if one_pass_applies(model, "gradcam", None):
        _, logits, maps = forward_cams(model, x, pick)
        return logits, maps
    with torch.no_grad():
        logits = model(x)  # (B, K)
    classes = pick(logits)  # (B, n)
    maps = torch.stack([autograd_cams(model, x[i:i + 1], model.last_layer, [int(c) for c in classes[i]])[1]
                        for i in range(x.shape[0])])  # (B, n, T', h, w)
    return logits, maps


def _gradcam_weights(grads: torch.Tensor, acts: torch.Tensor, method: str) -> torch.Tensor:
    """Channel weights (n, C) from grads (n, C, T', h, w) and activations (C, T', h, w)."""
    if method == "gradcam":
        return grads.flatten(2).mean(-1)  # (n, C)
    if method == "xgradcam":
        sum_a = acts.flatten(1).sum(-1)  # (C,)
        den = torch.where(sum_a != 0, sum_a, torch.ones_like(sum_a))
        return (grads * acts[None]).flatten(2).sum(-1) / den  # (n, C)
    g2 = grads.pow(2)  # (n, C, T', h, w)
    g3 = g2 * grads
    sum_a = acts.flatten(1).sum(-1)  # (C,)
    denom = 2 * g2 + sum_a[None, :, None, None, None] * g3  # (n, C, T', h, w)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(grads != 0, g2 / denom, torch.zeros_like(g2))  # (n, C, T', h, w)
    return (alpha * torch.relu(grads)).flatten(2).sum(-1)  # (n, C)


def cams_from_gradients(grads: torch.Tensor, acts: torch.Tensor, method: str) -> torch.Tensor:
    """The maps (n, T', h, w) of a gradient method from grads (n, C, T', h, w) and activations (C, T', h, w)."""
    if method == "hirescam":
        return torch.relu((grads * acts[None]).sum(1))  # (n, T', h, w)
    if method == "gradcam-elementwise":
        return torch.relu(grads * acts[None]).sum(1)  # (n, T', h, w)
    if method == "layercam":
        return torch.relu((torch.relu(grads) * acts[None]).sum(1))  # (n, T', h, w)
    w = _gradcam_weights(grads, acts, method)  # (n, C)
    return torch.relu(torch.einsum("nc,cthw->nthw", w, acts))  # (n, T', h, w)


def eigencam(acts: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (T', h, w) of activations (C, T', h, w): the first principal component over positions."""
    c = acts.shape[0]
    a = acts.reshape(c, -1).T.double()  # (P, C)
    a = a - a.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)  # vh: (min(P, C), C)
    proj = a @ vh[0]  # (P,)
    strength = acts.reshape(c, -1).sum(0).double()  # (P,) the activations' total at each position
    if (proj * strength).sum() < 0:  # a singular vector's sign is arbitrary: point it where activations are strong
        proj = -proj
    return torch.relu(proj).reshape(acts.shape[1:]).to(acts.dtype)  # (T', h, w)


def _rest(model: VideoClassifier, a: torch.Tensor, layer: str, x: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, K) from activations (B, C, T', h, w) of ``layer``: the network after it (a vidviz ResNet, or a
    model whose part after the layer is a plain sequence), or else the whole network on the clip x with the
    layer's output replaced."""
    return model.rest(a, layer, x)


@torch.no_grad()
def ablationcam(model: VideoClassifier, a0: torch.Tensor, layer: str, classes: list[int],
                chunk: int = 16, progress=None, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ablation-CAM at ``layer``: logits (K,) and maps (n, T', h, w) from activations a0 (1, C, T', h, w).

    Each channel is zeroed in turn, ``chunk`` channels a batch; only the network after the layer runs where it
    runs from the layer's output alone (:func:`_rest`), else the whole network on the clip x (1, 3, T, H, W).
    """
    acts = a0[0]  # (C, T', h, w)
    c = acts.shape[0]
    logits = _rest(model, a0, layer, x)[0]  # (K,)
    idx = torch.as_tensor(classes, dtype=torch.long, device=a0.device)
    base = logits[idx]  # (n,)
    ablated = []
    for s in range(0, c, chunk):
        ks = torch.arange(s, min(c, s + chunk), device=a0.device)
        batch = acts[None].repeat(len(ks), 1, 1, 1, 1)  # (b, C, T', h, w)
        batch[torch.arange(len(ks)), ks] = 0
        ablated.append(_rest(model, batch, layer, x)[:, idx])  # (b, n)
        if progress:
            progress(min(c, s + chunk), c)  # channels done, of all
    y = torch.cat(ablated).T  # (n, C)
    den = torch.where(base.abs() > 1e-12, base, torch.full_like(base, 1e-12))  # (n,)
    w = (base[:, None] - y) / den[:, None]  # (n, C)
    return logits, torch.relu(torch.einsum("nc,cthw->nthw", w, acts))


def _scorecam_masks(acts: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Score-CAM's masks (b, 1, T, H, W) in [0, 1]: activations (b, T', h, w) upsampled to ``size`` (T, H, W) and
    min-max scaled each; a constant map gives an all-zero mask."""
    m = torch.nn.functional.interpolate(acts[:, None], size=size, mode="trilinear", align_corners=False)  # (b, 1, T, H, W)
    lo = m.flatten(1).min(1).values.view(-1, 1, 1, 1, 1)
    hi = m.flatten(1).max(1).values.view(-1, 1, 1, 1, 1)
    return torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(m))  # (b, 1, T, H, W)


@torch.no_grad()
def scorecam(model: VideoClassifier, x: torch.Tensor, a0: torch.Tensor, layer: str, classes: list[int],
             chunk: int | None = None, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM at ``layer``: logits (K,) and maps (n, T', h, w); x (1, 3, T, H, W), a0 (1, C, T', h, w).

    Wang et al. (CVPR Workshops 2020): with M_k the k-th channel's map upsampled to the input and min-max scaled to
    [0, 1], w_k^c = softmax(f(x * M_k))_c and the map is ReLU(sum_k w_k^c A^k). One forward of the clip masked
    by each channel's map, ``chunk`` masked clips a batch; the classes share the passes. By default 8 on a CPU
    (a batch costs what its clips cost one by one there); on a GPU as many as fit in a quarter of its free
    memory, from the peak memory of the first channel's forward (a GPU runs a batch in about the time of one
    clip while it is not full).
    """
    acts = a0[0]  # (C, T', h, w)
    c = acts.shape[0]
    logits = _rest(model, a0, layer, x)[0]  # (K,)
    idx = torch.as_tensor(classes, dtype=torch.long, device=a0.device)
    size = tuple(x.shape[2:])
    scores, done = [], 0
    if not chunk and x.device.type == "cuda":  # measure one masked forward's memory, and keep its score
        torch.cuda.synchronize(x.device)
        base = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        scores.append(torch.softmax(model(x * _scorecam_masks(acts[:1], size)), -1)[:, idx])  # (1, n)
        per_clip = max(1, torch.cuda.max_memory_allocated(x.device) - base)
        chunk = int(max(1, torch.cuda.mem_get_info(x.device)[0] // 4 // per_clip))
        done = 1
    chunk = max(1, int(chunk or 8))
    for s in range(done, c, chunk):
        m = _scorecam_masks(acts[s:s + chunk], size)  # (b, 1, T, H, W)
        scores.append(torch.softmax(model(x * m), -1)[:, idx])  # (b, n)
        if progress:
            progress(min(c, s + chunk), c)  # channels done, of all
    w = torch.cat(scores).T  # (n, C)
    return logits, torch.relu(torch.einsum("nc,cthw->nthw", w, acts))


def layer_activations(model: VideoClassifier, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Activations (1, C, T', h, w) of ``layer`` for x (1, 3, T, H, W), without autograd."""
    check_request(model, "gradcam", layer)
    with torch.no_grad():
        return model.run(x, stop=layer)  # (1, C, T', h, w)


def _taps_inside(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int, like: torch.Tensor) -> torch.Tensor:
    """(k, n_out) 0/1 in ``like``'s dtype and device: whether tap ``a`` of output ``o`` reads an input position (not
    padding), one axis. Made on the device itself: a copy from the host would wait for the GPU's queue."""
    o = torch.arange(n_out, device=like.device)[None, :]  # (1, n_out)
    i = o * stride - pad + torch.arange(k, device=like.device)[:, None] * dil  # (k, n_out)
    return ((i >= 0) & (i < n_in)).to(like.dtype)


def pooled_input_grad(conv: nn.Conv3d, g: torch.Tensor, in_thw: tuple[int, int, int]) -> torch.Tensor:
    """Sum over all positions of dL/dx for y = conv(x), from g = dL/dy, without a transposed convolution.

    g: (n, C_out, T', H', W'); ``in_thw``: x's (T, H, W). Returns (n, C_in).
    Input position ``o * s - p + a * d`` receives ``W[:, :, a] * g[:, :, o]``, so summed over
    all input positions the gradient is ``sum_{c,a} W[c, k, a] S[c, a]``, where ``S[c, a]`` sums
    g over the outputs whose tap ``a`` falls inside x. The taps are independent along T, H
    and W, so S is g contracted with one (taps, outputs) 0/1 matrix per axis. Exact; costs
    O(C_out * T'H'W' * taps) instead of a transposed convolution's O(C_in * C_out * THW * taps).
    A :class:`TemporalConv3d` with replicated temporal padding convolves the padded clip,
    whose summed gradient equals x's (the copies of the end frames add into them).
    """
    if conv.groups != 1:
        raise ExplainError("pooled_input_grad supports ungrouped convolutions only")
    t, h, w = in_thw
    t += 2 * getattr(conv, "replicate_t", 0)
    k, st, pd, dl = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    vt, vh, vw = (_taps_inside(n, m, k[i], st[i], pd[i], dl[i], g)
                  for i, (n, m) in enumerate(zip((t, h, w), g.shape[2:], strict=True)))  # (k_i, out_i) each
    n, c, ot, oh, ow = g.shape
    kt, kh, kw = k
    vhw = (vh[:, None, :, None] * vw[None, :, None, :]).reshape(kh * kw, oh * ow)  # (kh*kw, H'W') both axes at once
    s = g.reshape(n * c * ot, oh * ow) @ vhw.T  # (n*C_out*T', kh*kw): one flat matmul, 3x faster than a 4-way einsum
    s = vt @ s.reshape(n * c, ot, kh * kw).transpose(0, 1).reshape(ot, -1)  # (kt, n*C_out*kh*kw)
    taps = s.reshape(kt, n, c, kh, kw).permute(1, 2, 0, 3, 4)  # (n, C_out, kt, kh, kw)
    return torch.einsum("ncabe,ckabe->nk", taps, conv.weight.to(g.dtype))  # (n, C_in)


def _entry_split(model, layer: str) -> EntrySplit | None:
    """The network after ``layer`` split at the convolutions that read its output (an :class:`EntrySplit`): a
    vidviz ResNet's next :class:`ResidualBlock`, or what an adapter offers (torchvision's video ResNets); else None."""
    if not isinstance(model, VideoClassifier):
        return getattr(model, "entry_split", lambda layer: None)(layer)
    if layer not in model.stages:
        return None
    names = model.layer_names
    i = names.index(layer) + 1
    stage = model.stages[names[i]] if i < len(names) else None
    blk = stage[0] if isinstance(stage, nn.Sequential) and len(stage) else None
    if not isinstance(blk, ResidualBlock):
        return None
    nxt = names[i]

    def rest(z: torch.Tensor, zid: torch.Tensor) -> torch.Tensor:
        y = stage[1:](blk.finish(z, zid))  # (B, C_out, T', h', w')
        return model.head(model.run(y, start=nxt))  # (B, K)

    conv, conv_id = blk.entry_convs()
    return EntrySplit(blk.entry, rest, conv, conv_id)


def _pooled_gradcam_weights(model: VideoClassifier, a0: torch.Tensor, layer: str, onehots: torch.Tensor,
                            chunk: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Grad-CAM weights (n, C) at ``layer`` from the gradients of the next block's entry convolutions.

    Grad-CAM needs only the mean of dy_c/dA over positions. The block after ``layer`` reads A
    through two linear maps (its first convolution and the shortcut's), so the backward stops at their
    outputs and :func:`pooled_input_grad` gives the pooled gradient of A in closed form.
    Same maps as the full backward (tested against captum and the autograd reference). None where the model
    does not allow it.
    """
    split = _entry_split(model, layer)
    if split is None:
        return None
    with torch.no_grad():
        z, zid = split.entry(a0)  # (1, width, T', h', w'), (1, C_out, T', h', w') or A

    logits, pullback = torch.func.vjp(split.rest, z, zid)  # (1, K)
    gz, gid = _batched_pullback(pullback, onehots, chunk)  # (n, 1, width, ...), (n, 1, C_out, ...)
    thw = tuple(a0.shape[2:])
    pooled = pooled_input_grad(split.conv, gz[:, 0], thw)  # (n, C)
    conv_id = split.conv_id
    pooled = pooled + (gid[:, 0].flatten(2).sum(-1) if conv_id is None else pooled_input_grad(conv_id, gid[:, 0], thw))
    return logits, pooled / (thw[0] * thw[1] * thw[2])  # (1, K), (n, C)


def _batched_pullback(pullback, onehots: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
    """The pullback of every row of ``onehots`` (n, 1, K): one batched backward (``vmap``), in chunks."""
    n = onehots.shape[0]
    try:
        if n == 1:
            return tuple(g[None] for g in pullback(onehots[0]))  # (1, 1, ...) each
        with warnings.catch_warnings():  # an op without a batching rule runs in a loop inside vmap: exact, slower
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            return torch.func.vmap(pullback, chunk_size=max(1, chunk))(onehots)  # (n, 1, ...) each
    except RuntimeError:  # an op without a batching rule: one pullback per class
        outs = [pullback(onehots[i]) for i in range(n)]
        return tuple(torch.stack(gs) for gs in zip(*outs, strict=True))  # (n, 1, ...) each


_GRADIENT_MAPS = tuple(m for m in CAM_METHODS if METHOD_INFO[m].uses_gradient)  # the maps from dy/dA


def _leaf_cams(model, x: torch.Tensor, layer: str, classes: list[int], method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A gradient method on a hooked adapter: one forward whose layer output is a graph leaf, then one backward
    batched over the classes (``autograd.grad(is_grads_batched=True)``) through the part after the layer only.
    Used for one class, and for several where the part after the layer is not a plain sequence of modules (where
    it is, ``torch.func.vjp`` over that part folds the classes into batched convolutions, which is faster).
    Returns (logits (K,), maps (n, T', h, w))."""
    a, logits = model.grid_leaf(x, layer)  # (1, C, T', h, w), (1, K)
    n = len(classes)
    if n == 0:
        return logits.detach()[0], a.new_zeros((0, *a.shape[2:]))
    eye = torch.zeros(n, *logits.shape, dtype=logits.dtype, device=logits.device)  # (n, 1, K) one-hot targets
    eye[torch.arange(n), 0, torch.as_tensor(classes, dtype=torch.long, device=logits.device)] = 1.0
    try:
        with warnings.catch_warnings():  # an op without a batching rule runs in a loop: exact, slower
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            (grads,) = torch.autograd.grad(logits, a, eye, is_grads_batched=n > 1) if n > 1 else \
                (torch.autograd.grad(logits, a, eye[0])[0][None],)  # (n, 1, C, T', h, w)
    except RuntimeError:  # no batched backward for some op: one backward per class
        grads = torch.stack([torch.autograd.grad(logits, a, eye[i], retain_graph=i < n - 1)[0] for i in range(n)])
    return logits.detach()[0], cams_from_gradients(grads[:, 0].detach(), a.detach()[0], method)


def uses_activations(model: VideoClassifier, layer: str, method: str, n: int) -> bool:
    """Whether :func:`autograd_cams` starts from the layer's activations (worth caching), or, on a hooked adapter's
    gradient method, from one forward of the clip whose layer output is a graph leaf (:func:`_leaf_cams`): for one
    class, and for several where the part after the layer does not run from its output alone."""
    tail = getattr(model, "has_tail", lambda layer: True)(layer)  # the part after the layer runs from it alone
    return not (hasattr(model, "grid_leaf") and method in _GRADIENT_MAPS and not (tail and n > 1))


def autograd_cams(model: VideoClassifier, x: torch.Tensor | None, layer: str, classes: list[int],
                  method: str = "gradcam", activations: torch.Tensor | None = None,
                  chunk: int = 16, full_gradients: bool = False, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Any method of :data:`METHODS` at ``layer`` for ``classes`` (targets: class logits, pre-softmax).

    The gradient methods (Grad-CAM and its family) work as follows; Eigen-CAM, Ablation-CAM and Score-CAM
    take their own paths (:func:`eigencam`, :func:`ablationcam`, :func:`scorecam`; Score-CAM needs ``x``).

    x: (1, 3, T, H, W), and/or ``activations`` of ``layer`` (1, C, T', h, w) computed before (a model other
    than a vidviz ResNet needs x: the part after its layer runs with the layer's output replaced). One
    forward (the stages up to ``layer`` without autograd, the rest under ``torch.func.vjp``),
    then one backward batched over the requested classes with ``torch.func.vmap``; ``chunk``
    classes at most at a time, to bound memory. torch.func's batching rule for convolution
    backward folds the classes into one batched convolution; ``autograd.grad(is_grads_batched=True)``
    loops over them and is about twice as slow on a CPU.
    Grad-CAM needs only the gradient pooled over positions: on a CPU, where the next block allows it
    (vidviz's ResNets and torchvision's), the backward stops at that block's entry convolutions and the
    pooling is done in closed form (:func:`_pooled_gradcam_weights`), which saves their transposed
    convolutions, once per class. A GPU runs those convolutions for the batched classes in about the
    time of the pooling's own small kernels (measured slower by 2-2.5 ms on an H100 with the ResNets), so
    there the full backward runs. ``full_gradients=True`` takes the full gradient map on any device (same
    maps; Grad-CAM++ always needs it).
    Returns (logits (K,), maps (n, T', h, w)). No hooks, no ``.grad`` writes; the model must be in
    eval mode (dropout and batch statistics would otherwise change the result).
    """
    check_request(model, method, layer, classes)
    if method in INPUT_METHODS:
        raise ExplainError(f"{method} attributes the input, not a layer (use vidviz.explain.attribution.attribute)")
    if model.training:
        raise ExplainError("autograd_cams needs the model in eval mode (call model.eval())")
    if x is not None and not uses_activations(model, layer, method, len(classes)):
        return _leaf_cams(model, x, layer, [int(c) for c in classes], method)
    a0 = activations if activations is not None else layer_activations(model, x, layer)  # (1, C, T', h, w)
    a0 = a0.detach()
    acts = a0[0]  # (C, T', h, w)
    n = len(classes)
    if method == "eigencam":
        with torch.no_grad():
            logits = _rest(model, a0, layer, x)[0]  # (K,)
        return logits, eigencam(acts)[None].expand(n, *acts.shape[1:]).contiguous()  # (n, T', h, w)
    if method == "ablationcam":
        return ablationcam(model, a0, layer, [int(c) for c in classes], chunk, progress, x)
    if method == "scorecam":
        if x is None:
            raise ExplainError("Score-CAM needs the clip itself (it masks the input), not only a layer's activations")
        return scorecam(model, x, a0, layer, [int(c) for c in classes], None, progress)
    eye = torch.zeros(n, 1, model.num_classes, dtype=a0.dtype, device=a0.device)  # (n, 1, K) one-hot targets
    eye[torch.arange(n), 0, torch.as_tensor([int(c) for c in classes], dtype=torch.long, device=a0.device)] = 1.0
    with torch.enable_grad():
        pooled = None
        if method == "gradcam" and not full_gradients and n and a0.device.type == "cpu":
            pooled = _pooled_gradcam_weights(model, a0, layer, eye, chunk)
        if pooled is not None:
            logits, w = pooled  # (1, K), (n, C)
        else:
            logits, pullback = torch.func.vjp(lambda a: _rest(model, a, layer, x), a0)  # (1, K)
            if n == 0:
                return logits.detach()[0], acts.new_zeros((0, *acts.shape[1:]))
            (grads,) = _batched_pullback(pullback, eye, chunk)  # (n, 1, C, T', h, w)
            return logits.detach()[0], cams_from_gradients(grads[:, 0].detach(), acts, method)  # (n, T', h, w)
    cams = torch.relu(torch.einsum("nc,cthw->nthw", w.detach(), acts))  # (n, T', h, w)
    return logits.detach()[0], cams


def explain(model: VideoClassifier, x: torch.Tensor, classes: list[int] | None = None, method: str = "gradcam",
            layer: str | None = None, settings: dict | None = None) -> Explanation:
    """Explain one clip x (1, 3, T, H, W) for ``classes`` (default: all) with ``method`` at ``layer``.

    Uses the exact one-pass path for Grad-CAM at the last block, autograd otherwise; Captum's input
    attributions (:mod:`vidviz.explain.attribution`) for the input methods, with their ``settings``.
    """
    t0 = time.perf_counter()
    layer = layer or model.last_layer
    idx = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
    check_request(model, method, layer, idx)
    check_settings(method, settings)  # (a CAM method has none)
    if method in INPUT_METHODS:
        from vidviz.explain.attribution import attribute

        logits, maps = attribute(model, x, idx, method, settings)
        layer = INPUT
    elif one_pass_applies(model, method, layer):
        _, logits, maps = forward_cams(model, x, None if classes is None else (lambda lg: torch.as_tensor([idx])))
        logits, maps = logits[0], maps[0]  # (K,), (n, T', h, w)
    else:
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
            raise ExplainError("normalise(mode='global') needs a scale")
        den = np.float32(scale)
    elif mode == "clip":
        den = m.max()
    else:
        raise ExplainError(f"unknown normalisation {mode!r} (clip, frame or global)")
    return m / np.maximum(den, 1e-12)
