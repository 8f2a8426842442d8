"""torchvision's nine video classifiers behind the adapter interface (:mod:`vidviz.models.adapter`).

Each is torchvision's own module, unchanged: its layer names are torchvision's module paths and its
state dict is torchvision's. Weights come from a file on disk (no hub download); class names
(Kinetics-400) and preprocessing come from torchvision's weight metadata and documentation.

==============  =====================================  =================  =========================
arch            layers offered (default last)           map layout         all classes in one forward
==============  =====================================  =================  =========================
r3d_18, mc3_18,  stem, layer1 ... layer4                (C, T', h, w)      yes, at layer4 (GAP + fc)
r2plus1d_18
s3d              features.0 ... features.15             (C, T', h, w)      no: its head averages 2x7x7
                                                                           windows, then a 1x1 conv
mvit_v1_b,       blocks.0 ... blocks.N-1                tokens + class     no: the head reads the class
mvit_v2_s        (default blocks.N-2: the last block's  token; (T', h, w)  token; the last block's own
                 input)                                 from the block     output reaches it only there
swin3d_t/s/b     features.0, .2, .4, .6, norm           (T', h, w, C)      yes, at norm (GAP + head)
==============  =====================================  =================  =========================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from vidviz.config import TORCHVISION_ARCHS
from vidviz.data.io import file_hash
from vidviz.data.video import InputSpec
from vidviz.errors import CheckpointError, ExplainError
from vidviz.models.adapter import EntrySplit, Grid, HookedVideoModel, cnn_rule
from vidviz.models.weights import load_state_strict, torch_load

# torchvision itself is imported only when one of these models is built: importing it costs about 170 MB of
# memory that the app otherwise never needs.


def _tvv():
    from torchvision.models import video as tvv

    return tvv


def kinetics_meta(arch: str) -> tuple[list[str], InputSpec]:
    """Kinetics-400 class names and the input spec torchvision documents for ``arch``: its transform's
    crop, mean and std, and the ``clip_len`` and ``frame_rate`` its weights' documentation names."""
    weights = getattr(_tvv(), TORCHVISION_ARCHS[arch]).KINETICS400_V1
    tf = weights.transforms()
    crop = tf.crop_size[0] if isinstance(tf.crop_size, (list, tuple)) else int(tf.crop_size)
    docs = weights.meta.get("_docs", "")
    frames = re.search(r"clip_len=(\d+)", docs)
    rate = re.search(r"frame_rate=([\d.]+)", docs)
    spec = InputSpec(num_frames=int(frames.group(1)) if frames else 16, fps=float(rate.group(1)) if rate else 15.0,
                     size=int(crop), mean=tuple(tf.mean), std=tuple(tf.std), default_source_fps=30.0)
    return list(weights.meta["categories"]), spec


def _mvit_rule(name: str, y: torch.Tensor, out) -> Grid:
    """An MViT block returns (tokens, thw): the grid is the one the block itself reports."""
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], (list, tuple)) and len(out[1]) == 3):
        raise ExplainError(f"layer {name!r} is not an MViT block (blocks.N): only a block reports its token grid")
    thw = tuple(int(v) for v in out[1])
    if y.dim() != 3 or y.shape[1] != 1 + thw[0] * thw[1] * thw[2]:
        raise ExplainError(f"layer {name!r} outputs {tuple(y.shape)}, not 1 + {thw} tokens")
    return Grid("tokens", 1, thw, "thw")


def _resnet_tail(after: list[str]):
    """The part of a torchvision VideoResNet after a top-level stage: the stages ``after`` it, then its head."""

    def tail(net: nn.Module, a: torch.Tensor) -> torch.Tensor:
        for name in after:
            a = getattr(net, name)(a)  # (B, C, T', h, w)
        return net.fc(net.avgpool(a).flatten(1))  # (B, K)

    return tail


def _resnet_entry_split(layers: list[str], tails: dict):
    """For a torchvision VideoResNet: the stage after ``layer`` split at its first block's entry convolutions
    (an :class:`EntrySplit`). torchvision's BasicBlock computes relu(conv2(conv1(x)) + downsample(x)), where
    conv1 = (conv, BN, ReLU) and conv is one Conv3d, or Conv2Plus1D's (spatial Conv3d, BN, ReLU, temporal
    Conv3d), and downsample = (Conv3d 1x1x1, BN) or None."""

    def split(net: nn.Module, layer: str) -> EntrySplit | None:
        i = layers.index(layer) if layer in layers else len(layers)
        if i + 1 >= len(layers):
            return None
        nxt = layers[i + 1]
        stage = getattr(net, nxt)
        blk = stage[0]
        first = blk.conv1[0]
        if isinstance(first, nn.Conv3d):
            conv, inner = first, nn.Identity()
        elif isinstance(first, nn.Sequential) and len(first) and isinstance(first[0], nn.Conv3d):
            conv, inner = first[0], nn.Sequential(*list(first)[1:])  # Conv2Plus1D (whose slices fail): spatial conv reads A
        else:
            return None
        ds = blk.downsample
        if ds is not None and not (isinstance(ds, nn.Sequential) and isinstance(ds[0], nn.Conv3d)):
            return None

        def entry(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return conv(a), (a if ds is None else ds[0](a))  # (B, C', T', h', w'), (B, C_out, T', h', w') or A

        def rest(z: torch.Tensor, zid: torch.Tensor) -> torch.Tensor:
            y = blk.conv2(blk.conv1[1:](inner(z)))  # (B, C_out, T', h', w')
            y = blk.relu(y + (zid if ds is None else ds[1:](zid)))
            return tails[nxt](net, stage[1:](y))  # (B, K)

        return EntrySplit(entry, rest, conv, None if ds is None else ds[0])

    return split


def torchvision_video(arch: str, classes: Sequence[str] | None = None, spec: InputSpec | None = None) -> HookedVideoModel:
    """torchvision's ``arch`` (random weights) behind the adapter interface."""
    if arch not in TORCHVISION_ARCHS:
        raise CheckpointError(f"unknown torchvision video model {arch!r} (known: {', '.join(TORCHVISION_ARCHS)})")
    k_classes, k_spec = kinetics_meta(arch)
    classes = list(classes) if classes is not None else k_classes
    net = getattr(_tvv(), arch)(weights=None, num_classes=len(classes))
    spec = spec or k_spec
    notes = ""
    tails, splits = {}, None
    if arch in ("r3d_18", "mc3_18", "r2plus1d_18"):
        layers, default, rule, head = ["stem", "layer1", "layer2", "layer3", "layer4"], "layer4", cnn_rule(), ["fc"]
        fast = {"layer4": lambda net: net.fc.weight}
        # torchvision's VideoResNet.forward runs these in order, then avgpool, flatten and fc
        tails = {name: _resnet_tail(layers[i + 1:]) for i, name in enumerate(layers)}
        splits = _resnet_entry_split(layers, tails)
    elif arch == "s3d":
        layers = [f"features.{i}" for i in range(len(net.features))]
        default, rule, head, fast = layers[-1], cnn_rule(), ["classifier"], {}
        notes = "s3d's head averages 2x7x7 windows before its classifier, so every class's map takes a backward."
    elif arch.startswith("mvit"):
        layers = [f"blocks.{i}" for i in range(len(net.blocks))]
        default, rule, head, fast = layers[-2], _mvit_rule, ["head"], {}
        notes = ("The classifier reads only the class token, so the last block's own output has zero maps; "
                 "the default layer is the last block's input (blocks.N-2).")
    else:  # swin3d_t, swin3d_s, swin3d_b
        layers = [f"features.{i}" for i in range(0, len(net.features), 2)] + ["norm"]
        default, rule, head = "norm", cnn_rule(channels_last=True), ["head"]
        fast = {"norm": lambda net: net.head.weight}
    return HookedVideoModel(net, classes, spec, arch, layers, default, rule, "BCTHW",
                            head_weights=lambda net, layer: fast[layer](net) if layer in fast else None,
                            head_modules=head, notes=notes, tails=tails, entry_splits=splits)


def torchvision_key(key: str) -> str:
    """A key of a vidviz checkpoint written before torchvision models kept their own module paths
    (``stages.layer1...``, ``head.fc...``) -> the wrapped module's key (``net.layer1...``, ``net.fc...``)."""
    if key.startswith("head.fc."):
        return "net." + key[len("head."):]
    if key.startswith("stages."):
        return "net." + key[len("stages."):]
    return key


def from_torchvision_state(arch: str, state: dict[str, torch.Tensor], source: str | Path,
                           spec: InputSpec | None = None) -> HookedVideoModel:
    """A Kinetics-400 model from a torchvision state dict (strict: all keys, all shapes)."""
    model = torchvision_video(arch, spec=spec)
    load_state_strict(model.net, state, source, what=f"{arch} weights")
    return model


def load_torchvision_weights(path: str | Path, arch: str, spec: InputSpec | None = None) -> HookedVideoModel:
    """A torchvision video model from a weights file on disk (a plain state dict, torchvision's key names)."""
    path = Path(path)
    state = torch_load(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a torchvision state dict (name -> tensor)", path)
    model = from_torchvision_state(arch, state, path, spec)
    model.checkpoint_path, model.checkpoint_hash = str(path), file_hash(path)
    model.metrics, model.train_fingerprint = {}, ""
    return model.eval()
