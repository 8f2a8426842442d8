"""Input attributions from Captum, reduced to the same per-frame maps as the CAMs.

Captum computes each attribution over the model's input x (1, 3, T, H, W); vidviz does not re-implement
them. The attribution of class c, ``R (3, T, H, W)``, is summed over the colour channels and averaged over
``cell x cell`` pixel blocks, giving a signed map (T, H/cell, W/cell); the displayed map is its positive
part (evidence for the class), as for the CAMs. ``signed=True`` keeps the sign.

* **Integrated Gradients** (Sundararajan et al., ICML 2017): R = (x - x0) * mean over ``steps`` points
  on the straight path from the baseline x0 = 0 to x of dy_c/dx (Riemann-trapezoid rule, as Captum).
* **SmoothGrad** (Smilkov et al., 2017): R = mean over ``samples`` noisy copies x + N(0, (stdev * (max x -
  min x))^2) of dy_c/dx (Captum's NoiseTunnel around its Saliency, signed gradients).
* **Input x Gradient** (Shrikumar et al., 2016): R = x * dy_c/dx.
* **Occlusion** (Zeiler & Fergus, ECCV 2014), space-time: R at each pixel = the mean, over the windows
  of ``window`` frames by ``patch`` x ``patch`` pixels (moved by ``stride`` frames and ``patch`` pixels)
  that cover it, of y_c(x) - y_c(x with the window set to 0).

Targets are class logits (pre-softmax). The classes of one clip share each batch of passes.
"""

from __future__ import annotations

import torch

from vidviz.errors import ExplainError
from vidviz.explain.methods import INPUT_METHODS, check_settings

CELL = 4  # attribution maps are averaged over 4x4 pixel blocks: 28x28 cells at a 112-pixel input


def _reduce(r: torch.Tensor) -> torch.Tensor:
    """(n, 3, T, H, W) attributions -> signed maps (n, T, H/CELL, W/CELL): channel sum, CELL x CELL mean."""
    s = r.sum(1)  # (n, T, H, W)
    return torch.nn.functional.avg_pool3d(s[:, None], (1, CELL, CELL), ceil_mode=True)[:, 0]


def evaluations(method: str, cfg: dict, shape: tuple[int, ...], n: int) -> int:
    """How many clips Captum runs through the model for ``n`` classes of a clip of ``shape`` (1, 3, T, H, W)."""
    if method == "integrated-gradients":
        return n * int(cfg["steps"])
    if method == "smoothgrad":
        return n * int(cfg["samples"])
    if method == "occlusion":
        _, _, t, h, w = shape
        win, patch, stride = int(cfg["window"]), int(cfg["patch"]), int(cfg["stride"])
        return n * (1 + ((t - win) // stride + 1) * ((h - patch) // patch + 1) * ((w - patch) // patch + 1))
    return n


def attribute(model: torch.nn.Module, x: torch.Tensor, classes: list[int], method: str,
              settings: dict | None = None, signed: bool = False, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (K,) and maps (n, T, H/CELL, W/CELL) of ``classes`` for x (1, 3, T, H, W) by a Captum method.

    ``progress(done, total)`` hears, after each batch Captum runs, how many clips went through the model."""
    from captum import attr

    if method not in INPUT_METHODS:
        raise ExplainError(f"{method!r} is not an input-attribution method (use one of {', '.join(INPUT_METHODS)})")
    cfg = check_settings(method, settings, tuple(x.shape))
    n = len(classes)
    with torch.no_grad():
        logits = model(x)[0]  # (K,)
    if n == 0:
        return logits, x.new_zeros((0, x.shape[2], -(-x.shape[3] // CELL), -(-x.shape[4] // CELL)))
    xs = x.expand(n, *x.shape[1:]).contiguous()  # (n, 3, T, H, W): one row per class, one batch
    target = [int(c) for c in classes]
    if progress is not None:  # Captum calls the model; a counting wrapper tells how far it is
        total, done, net = evaluations(method, cfg, tuple(x.shape), n), [0], model

        def model(inp: torch.Tensor) -> torch.Tensor:
            out = net(inp)  # (b, K)
            done[0] += inp.shape[0]
            progress(min(done[0], total), total)
            return out
    if method == "integrated-gradients":
        r = attr.IntegratedGradients(model).attribute(xs, baselines=torch.zeros_like(xs), target=target,
                                                      n_steps=int(cfg["steps"]), internal_batch_size=max(n, 8))
    elif method == "smoothgrad":
        torch.manual_seed(0)  # the same noise for the same request: a cached map is the map asked for again
        span = float(x.max() - x.min())
        r = attr.NoiseTunnel(attr.Saliency(model)).attribute(xs, nt_type="smoothgrad", nt_samples=int(cfg["samples"]),
                                                              stdevs=float(cfg["stdev"]) * span, target=target,
                                                              abs=False)
    elif method == "input-x-gradient":
        r = attr.InputXGradient(model).attribute(xs, target=target)
    else:
        win, patch, stride = int(cfg["window"]), int(cfg["patch"]), int(cfg["stride"])
        r = attr.Occlusion(model).attribute(xs, sliding_window_shapes=(3, win, patch, patch),
                                            strides=(3, stride, patch, patch), baselines=0.0, target=target,
                                            perturbations_per_eval=8)
    maps = _reduce(r.detach())  # (n, T, h, w)
    return logits, (maps if signed else torch.relu(maps))
