"""torchvision's video ResNets (r3d_18, mc3_18, r2plus1d_18) behind the vidviz interface.

Weights come from a torchvision weights file on disk (no hub download); class names
(Kinetics-400) and preprocessing come from torchvision's own weight metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from vidviz.data.io import file_hash
from vidviz.data.video import InputSpec
from vidviz.errors import CheckpointError
from vidviz.models.resnet3d import PoolLinearHead, VideoClassifier
from vidviz.models.weights import load_state_strict, torch_load

#: arch -> the name of its torchvision weights enum. torchvision itself is imported only when one
#: of these models is built: importing it costs about 170 MB of memory that the app otherwise never needs.
TORCHVISION_ARCHS = {"r3d_18": "R3D_18_Weights", "mc3_18": "MC3_18_Weights", "r2plus1d_18": "R2Plus1D_18_Weights"}


def _tvv():
    from torchvision.models import video as tvv

    return tvv


def kinetics_meta(arch: str) -> tuple[list[str], InputSpec]:
    """Kinetics-400 class names and the input spec torchvision documents for ``arch``."""
    weights = getattr(_tvv(), TORCHVISION_ARCHS[arch]).KINETICS400_V1
    tf = weights.transforms()
    crop = tf.crop_size[0] if isinstance(tf.crop_size, (list, tuple)) else int(tf.crop_size)
    spec = InputSpec(num_frames=16, fps=15.0, size=int(crop), mean=tuple(tf.mean), std=tuple(tf.std),
                     default_source_fps=30.0)
    return list(weights.meta["categories"]), spec


def torchvision_video(arch: str, classes: Sequence[str] | None = None, spec: InputSpec | None = None) -> VideoClassifier:
    """Build ``arch`` wrapped as a :class:`VideoClassifier` (random weights)."""
    if arch not in TORCHVISION_ARCHS:
        raise CheckpointError(f"unknown torchvision video model {arch!r} (known: {', '.join(TORCHVISION_ARCHS)})")
    k_classes, k_spec = kinetics_meta(arch)
    classes = list(classes) if classes is not None else k_classes
    net = getattr(_tvv(), arch)(weights=None, num_classes=len(classes))
    head = PoolLinearHead(net.fc.in_features, len(classes))
    head.fc = net.fc
    stages = [("stem", net.stem), ("layer1", net.layer1), ("layer2", net.layer2), ("layer3", net.layer3),
              ("layer4", net.layer4)]
    return VideoClassifier(stages, head, classes, spec or k_spec, arch, {})


def torchvision_key(key: str) -> str:
    """torchvision state-dict key -> vidviz key (``layer1.0.conv1...`` -> ``stages.layer1.0.conv1...``)."""
    if key.startswith("fc."):
        return "head." + key
    return "stages." + key


def from_torchvision_state(arch: str, state: dict[str, torch.Tensor], source: str | Path) -> VideoClassifier:
    """A Kinetics-400 model from a torchvision state dict (strict: all keys, all shapes)."""
    model = torchvision_video(arch)
    load_state_strict(model, {torchvision_key(k): v for k, v in state.items()}, source, what=f"{arch} weights")
    return model


def load_torchvision_weights(path: str | Path, arch: str) -> VideoClassifier:
    """A torchvision video model from a weights file on disk (a plain state dict)."""
    path = Path(path)
    state = torch_load(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a torchvision state dict (name -> tensor)", path)
    model = from_torchvision_state(arch, state, path)
    model.checkpoint_path, model.checkpoint_hash = str(path), file_hash(path)
    model.metrics, model.train_fingerprint = {}, ""
    return model.eval()
