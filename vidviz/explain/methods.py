"""The saliency methods vidviz computes: names, papers, costs and settings (no torch: the CLI parses with it).

The formulas are in :mod:`vidviz.explain.cam` (the CAM family) and :mod:`vidviz.explain.attribution` (Captum's
input attributions), next to the code. ``cost`` says what one clip costs
for any number of classes at one layer: F = one forward pass, B = one backward pass batched over the
classes, C = the layer's channels.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidviz.errors import ExplainError


@dataclass(frozen=True)
class Method:
    name: str  # as shown
    paper: str
    cost: str
    uses_gradient: bool
    class_agnostic: bool = False  # the same map for every class
    input_level: bool = False  # attributes the input (pixels), not a layer: computed by Captum


METHOD_INFO: dict[str, Method] = {
    "gradcam": Method("Grad-CAM", "Selvaraju et al., ICCV 2017", "1 F (all classes, last block); F + B elsewhere", True),
    "gradcam++": Method("Grad-CAM++", "Chattopadhyay et al., WACV 2018", "F + B", True),
    "xgradcam": Method("XGrad-CAM", "Fu et al., BMVC 2020", "F + B", True),
    "hirescam": Method("HiResCAM", "Draelos & Carin, 2020 (arXiv:2011.08891)", "F + B", True),
    "gradcam-elementwise": Method("Grad-CAM element-wise", "Draelos & Carin, 2020; as in pytorch-grad-cam",
                                  "F + B", True),
    "layercam": Method("LayerCAM", "Jiang et al., IEEE TIP 2021", "F + B", True),
    "eigencam": Method("Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020", "1 F + one SVD (no gradient)", False, True),
    "ablationcam": Method("Ablation-CAM", "Desai & Ramaswamy, WACV 2020",
                          "1 F + C passes of the network after the layer", False),
    "scorecam": Method("Score-CAM", "Wang et al., CVPR Workshops 2020", "1 F + C full forwards (masked inputs)", False),
    "integrated-gradients": Method("Integrated Gradients", "Sundararajan et al., ICML 2017 (Captum)",
                                   "steps x (F + B)", True, input_level=True),
    "smoothgrad": Method("SmoothGrad", "Smilkov et al., 2017 (Captum NoiseTunnel)", "samples x (F + B)", True,
                         input_level=True),
    "input-x-gradient": Method("Input x Gradient", "Shrikumar et al., 2016 (Captum)", "F + B", True, input_level=True),
    "occlusion": Method("Occlusion (space-time)", "Zeiler & Fergus, ECCV 2014 (Captum)",
                        "1 F per window position", False, input_level=True),
}
METHODS = tuple(METHOD_INFO)
CAM_METHODS = tuple(m for m, i in METHOD_INFO.items() if not i.input_level)  # maps at a layer
INPUT_METHODS = tuple(m for m, i in METHOD_INFO.items() if i.input_level)  # maps of the input's pixels


@dataclass(frozen=True)
class Setting:
    default: float
    low: float
    high: float
    meaning: str


#: input method -> its settings (name -> default and allowed range); the CAM methods have none.
SETTINGS: dict[str, dict[str, Setting]] = {
    "integrated-gradients": {"steps": Setting(16, 2, 256, "points on the path from the black clip to the clip")},
    "smoothgrad": {"samples": Setting(8, 1, 128, "noisy copies of the clip"),
                   "stdev": Setting(0.15, 0.0, 1.0, "noise, as a share of the clip's value range")},
    "input-x-gradient": {},
    "occlusion": {"window": Setting(4, 1, 64, "frames per occluding window"),
                  "patch": Setting(28, 4, 512, "pixels per side of the occluding window"),
                  "stride": Setting(4, 1, 64, "frames the window moves between positions")},
}


def check_settings(method: str, settings: dict | None, x_shape: tuple[int, ...] | None = None) -> dict:
    """The method's settings, its defaults filled in; a one-line error for an unknown or out-of-range one
    (a CAM method has none). ``x_shape`` (1, 3, T, H, W), when given, bounds the occlusion window."""
    allowed = SETTINGS.get(method, {})
    out = {name: s.default for name, s in allowed.items()}
    for name, value in (settings or {}).items():
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            raise ExplainError(f"{method} has no setting {name!r} (its settings: {known})")
        s = allowed[name]
        if not s.low <= float(value) <= s.high:
            raise ExplainError(f"{method}: {name}={value} is out of range ({s.low:g} to {s.high:g}: {s.meaning})")
        out[name] = type(s.default)(value)
    if method == "occlusion" and x_shape is not None:
        t, h, w = x_shape[2:]
        if out["window"] > t:
            raise ExplainError(f"occlusion: a window of {out['window']} frames is longer than the clip's {t} frames")
        if out["patch"] > min(h, w):
            raise ExplainError(f"occlusion: a patch of {out['patch']} pixels is larger than the {h}x{w} input")
    return out
