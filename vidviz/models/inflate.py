"""2D -> 3D inflation of torchvision's ResNet-50 into ``i3d_resnet50``.

Name mapping (2D torchvision key -> vidviz key)::

    conv1.weight                 -> stages.stem.conv1.weight        (inflated)
    bn1.{weight,bias,running_*}  -> stages.stem.bn1.*               (copied)
    layerL.B.convN.weight        -> stages.layerL.B.convN.weight    (inflated)
    layerL.B.bnN.*               -> stages.layerL.B.bnN.*           (copied)
    layerL.B.downsample.0.weight -> stages.layerL.B.downsample.0.weight (inflated)
    layerL.B.downsample.1.*      -> stages.layerL.B.downsample.1.*  (copied)
    fc.*                         -> not used (new classes; the head starts fresh)

Inflation repeats each 2D kernel over time and divides by the temporal size:
``w3d = w2d.unsqueeze(2).expand(-1, -1, kT, -1, -1) / kT``, so a clip of one repeated
frame gives the 2D activations wherever temporal padding does not reach (everywhere,
with ``temporal_padding="replicate"``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vidviz.errors import CheckpointError
from vidviz.models.resnet3d import VideoClassifier
from vidviz.models.weights import mismatch_error, torch_load


def inflate_key(key2d: str) -> str:
    if key2d.startswith(("conv1.", "bn1.")):
        return "stages.stem." + key2d
    return "stages." + key2d


def inflate_weight(w2d: torch.Tensor, kt: int) -> torch.Tensor:
    """(Cout, Cin, kH, kW) -> (Cout, Cin, kT, kH, kW), repeated over time and divided by kT."""
    return w2d.unsqueeze(2).expand(-1, -1, kt, -1, -1).clone() / kt  # (Cout, Cin, kT, kH, kW)


def inflate_resnet2d(model: VideoClassifier, path_or_state_dict: str | Path | dict) -> VideoClassifier:
    """Fill ``model`` (an ``i3d_resnet50``) from a torchvision ResNet-50 state dict; strict on every key."""
    if isinstance(path_or_state_dict, dict):
        state2d, source = path_or_state_dict, "2D state dict"
    else:
        source = str(path_or_state_dict)
        state2d = torch_load(Path(path_or_state_dict))
        if isinstance(state2d, dict) and "state_dict" in state2d and isinstance(state2d["state_dict"], dict):
            state2d = state2d["state_dict"]
        if not isinstance(state2d, dict):
            raise CheckpointError("expected a ResNet-50 state dict (name -> tensor)", source)
    own = model.state_dict()
    new = {}
    unexpected, shaped = [], []
    for k, v in state2d.items():
        if k.startswith("fc."):
            continue
        k3 = inflate_key(k)
        if k3 not in own:
            unexpected.append(k)
            continue
        target = own[k3]
        if v.dim() == 4 and target.dim() == 5:
            kt = target.shape[2]
            v3 = inflate_weight(v, kt)
        else:
            v3 = v
        if tuple(v3.shape) != tuple(target.shape):
            shaped.append(f"{k} {tuple(v.shape)} -> {k3} {tuple(target.shape)}")
            continue
        new[k3] = v3.to(target.dtype)
    missing = sorted(k for k in own if k not in new and not k.startswith("head."))
    err = mismatch_error("2D ResNet-50 weights", source, missing, unexpected, shaped)
    if err is not None:
        raise err
    for k in own:
        if k.startswith("head."):
            new[k] = own[k]
    model.load_state_dict(new, strict=True)
    return model
