"""The saliency methods vidviz computes: names, papers and costs (no torch: the CLI parses with it).

The formulas are in :mod:`vidviz.explain.cam` (the CAM family) and :mod:`vidviz.explain.attribution` (Captum's
input attributions), next to the code. ``cost`` says what one clip costs
for any number of classes at one layer: F = one forward pass, B = one backward pass batched over the
classes, C = the layer's channels.
"""

from __future__ import annotations

from dataclasses import dataclass


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
#: settings the command line takes (each method says which it uses; vidviz.explain.attribution checks them)
SETTING_FLAGS = ("steps", "samples", "stdev", "window", "patch", "stride")
