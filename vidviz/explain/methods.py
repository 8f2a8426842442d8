"""The saliency methods vidviz computes: names, papers and costs (no torch: the CLI parses with it).

The formulas are in :mod:`vidviz.explain.cam`, next to the code. ``cost`` says what one clip costs
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
}
METHODS = tuple(METHOD_INFO)
