"""ResNets inflated to 3D with temporal stride 1, behind one interface.

Every vidviz model is a :class:`VideoClassifier`: an ordered list of named stages
(``stem``, ``layer1`` ... ``layer4``) whose composition is ``features(x)``, and a
``head`` of global average pooling plus a linear layer. Because the head is exactly
GAP + linear, Grad-CAM of the last block is ``ReLU(sum_k W[c,k] A_k)``
for every class at once (see :mod:`vidviz.explain.cam`).

``i3d_resnet50`` is the seed's architecture: ResNet-50 with every convolution inflated
to temporal kernel 3, temporal stride 1 and temporal padding 1, so a (1,3,16,224,224) clip
gives a (1,2048,16,7,7) last conv output. ``i3d_resnet_tiny`` is the same family, small
enough to train on two CPU cores (the shipped default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from vidviz.data.video import InputSpec


class PoolLinearHead(nn.Module):
    """Global average pooling over (T, h, w), dropout, then a linear layer."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        pooled = a.mean(dim=(2, 3, 4))  # (B, C)
        return self.fc(self.dropout(pooled))  # (B, K)


class VideoClassifier(nn.Module):
    """Ordered named stages + a GAP/linear head; what every explainer relies on.

    ``features(x)``: x (B, 3, T, H, W) -> a (B, C, T', h, w), the last stage's output.
    ``head(a)``: a -> logits (B, K). ``forward(x) = head(features(x))``.
    """

    def __init__(self, stages: Sequence[tuple[str, nn.Module]], head: PoolLinearHead,
                 classes: Sequence[str], spec: InputSpec, arch: str, arch_kwargs: dict | None = None):
        super().__init__()
        self.stages = nn.ModuleDict(list(stages))
        self.head = head
        self.classes = list(classes)
        self.spec = spec
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs or {})

    @property
    def layer_names(self) -> list[str]:
        return list(self.stages.keys())

    @property
    def last_layer(self) -> str:
        return self.layer_names[-1]

    @property
    def num_classes(self) -> int:
        return self.head.fc.out_features

    def run(self, x: torch.Tensor, start: str | None = None, stop: str | None = None) -> torch.Tensor:
        """Run the stages after ``start`` (exclusive; None = from the input) up to ``stop`` (inclusive)."""
        names = self.layer_names
        i = 0 if start is None else names.index(start) + 1
        j = len(names) if stop is None else names.index(stop) + 1
        for name in names[i:j]:
            x = self.stages[name](x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)  # (B, C, T', h, w)

    # ------------------------------------------------ the adapter interface (vidviz.models.adapter)
    layout = "BCTHW"
    notes = ""

    def has_layer(self, name: str) -> bool:
        return name in self.stages

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, 3, T, H, W)

    def features_logits(self, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the layer's output (B, C, T', h, w), logits (B, K)) from one forward."""
        layer = layer or self.last_layer
        a = self.run(x, stop=layer)  # (B, C, T', h, w)
        return a, self.rest(a, layer)

    def rest(self, a: torch.Tensor, layer: str, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K) from the output a (B, C, T', h, w) of ``layer``: the stages after it, then the head."""
        return self.head(self.run(a, start=layer))

    def head_weights(self, layer: str) -> torch.Tensor | None:
        """The head's (K, C) weights at the last stage (GAP + linear: the fast path), else None."""
        return self.head.fc.weight if layer == self.last_layer else None

    def cascade(self) -> list[tuple[str, nn.Module]]:
        """The head, then the stages from the last back (the randomisation check's order)."""
        return [("head", self.head), *((n, self.stages[n]) for n in reversed(self.layer_names))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, K)


# ---------------------------------------------------------------- ResNet blocks in 3D

_ONEDNN = torch.backends.mkldnn.is_available()


class TemporalConv3d(nn.Conv3d):
    """Conv3d with temporal stride 1 and 'same' temporal padding of zeros or replicated frames.

    Replicate padding in time (spatial padding stays zeros) makes an inflated network give
    exactly its 2D parent's output on a clip of one repeated frame, at every frame.
    """

    def __init__(self, cin: int, cout: int, k: int, kt: int, stride: int = 1, temporal_padding: str = "zeros"):
        pad_t = kt // 2 if temporal_padding == "zeros" else 0
        super().__init__(cin, cout, (kt, k, k), stride=(1, stride, stride), padding=(pad_t, k // 2, k // 2), bias=False)
        self.replicate_t = kt // 2 if temporal_padding == "replicate" else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.replicate_t:
            p = self.replicate_t
            x = torch.cat([x[:, :, :1].expand(-1, -1, p, -1, -1), x, x[:, :, -1:].expand(-1, -1, p, -1, -1)], dim=2)
        if _ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] == 1:
            # PyTorch's heuristic sends a batch of one to its slow im2col kernel; oneDNN is ~3x faster
            return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, list(self.padding), list(self.stride),
                                                     list(self.dilation), self.groups)  # (1, C', T, H', W')
        return super().forward(x)  # (B, C', T, H', W')


class FrameMaxPool(nn.Module):
    """``nn.MaxPool3d((1, k, k), (1, s, s), (0, p, p))``: a spatial max-pool of every frame.

    On a contiguous input it runs as a 2D pool over the (B, C*T, H, W) view in channels-last
    layout, which gives the same values about 5x faster on a CPU than the 3D kernel.
    """

    def __init__(self, k: int = 3, s: int = 2, p: int = 1):
        super().__init__()
        self.k, self.s, self.p = k, s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous():  # e.g. channels_last_3d in training: the 3D kernel
            return nn.functional.max_pool3d(x, (1, self.k, self.k), (1, self.s, self.s), (0, self.p, self.p))
        b, c, t, h, w = x.shape
        planes = x.view(b, c * t, h, w).contiguous(memory_format=torch.channels_last)  # (B, C*T, H, W)
        y = nn.functional.max_pool2d(planes, self.k, self.s, self.p)  # (B, C*T, H', W')
        return y.contiguous().view(b, c, t, *y.shape[-2:])  # (B, C, T, H', W')


def _conv(cin: int, cout: int, k: int, kt: int, stride: int = 1, tp: str = "zeros") -> TemporalConv3d:
    """A conv with temporal kernel ``kt``, temporal stride 1 and 'same' temporal padding ``tp``."""
    return TemporalConv3d(cin, cout, k, kt, stride, tp)


class ResidualBlock(nn.Module):
    """What both blocks share: the block's input is read only by ``conv1`` and the shortcut.

    ``forward(x) = finish(*entry(x))``. ``entry`` applies the two linear maps that read x
    (``conv1``, and the shortcut's convolution or the identity); ``finish`` does the rest.
    Grad-CAM at the layer *before* this block needs only the gradient of x summed over its
    positions, which follows in closed form from the gradients of the two entry outputs
    (:func:`vidviz.explain.cam.pooled_input_grad`), without the transposed convolutions.
    """

    conv1: TemporalConv3d
    downsample: nn.Sequential | None

    def entry_convs(self) -> tuple[TemporalConv3d, TemporalConv3d | None]:
        """The convolutions that read the block's input: ``conv1`` and the shortcut's (None: identity)."""
        return self.conv1, None if self.downsample is None else self.downsample[0]

    def entry(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.conv1(x)  # (B, width, T, H', W')
        zid = x if self.downsample is None else self.downsample[0](x)  # (B, C_out, T, H', W')
        return z, zid

    def shortcut(self, zid: torch.Tensor) -> torch.Tensor:
        return zid if self.downsample is None else self.downsample[1](zid)  # (B, C_out, T, H', W')

    def finish(self, z: torch.Tensor, zid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(*self.entry(x))  # (B, C_out, T, H', W')


class BasicBlock3d(ResidualBlock):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, kt: int, tp: str = "zeros"):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv(cin, width, 3, kt, stride, tp), nn.BatchNorm3d(width)
        self.conv2, self.bn2 = _conv(width, cout, 3, kt, 1, tp), nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(cin, cout, 1, kt, stride, tp), nn.BatchNorm3d(cout))

    def finish(self, z: torch.Tensor, zid: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(z))  # (B, width, T, H', W')
        y = self.bn2(self.conv2(y))  # (B, C_out, T, H', W')
        return self.relu(y + self.shortcut(zid))


class Bottleneck3d(ResidualBlock):
    """torchvision's Bottleneck (stride on the 3x3 conv), every conv inflated to kernel ``kt`` in time."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, kt: int, tp: str = "zeros"):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv(cin, width, 1, kt, 1, tp), nn.BatchNorm3d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, kt, stride, tp), nn.BatchNorm3d(width)
        self.conv3, self.bn3 = _conv(width, cout, 1, kt, 1, tp), nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(cin, cout, 1, kt, stride, tp), nn.BatchNorm3d(cout))

    def finish(self, z: torch.Tensor, zid: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(z))  # (B, width, T, H, W)
        y = self.relu(self.bn2(self.conv2(y)))  # (B, width, T, H', W')
        y = self.bn3(self.conv3(y))  # (B, C_out, T, H', W')
        return self.relu(y + self.shortcut(zid))


@dataclass
class ResNet3dConfig:
    """Shape of an inflated ResNet (one comment per field, as in nanoGPT)."""

    block: str = "bottleneck"  # "basic" or "bottleneck"
    layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])  # blocks per stage
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # block widths per stage
    strides: list[int] = field(default_factory=lambda: [1, 2, 2, 2])  # spatial stride of each stage
    stem_channels: int = 64  # channels after the stem conv
    stem_kernel: int = 7  # spatial kernel of the stem conv
    temporal_kernel: int = 3  # kt of every conv (the seed: 3, stride 1, padding 1)
    dropout: float = 0.0  # before the linear head
    temporal_padding: str = "zeros"  # "zeros" (I3D) or "replicate" (exact 2D equivalence on static clips)


def build_resnet3d(cfg: ResNet3dConfig, classes: Sequence[str], spec: InputSpec, arch: str) -> VideoClassifier:
    block = {"basic": BasicBlock3d, "bottleneck": Bottleneck3d}[cfg.block]
    kt = cfg.temporal_kernel
    if cfg.temporal_padding not in ("zeros", "replicate"):
        raise ValueError(f"temporal_padding must be 'zeros' or 'replicate', not {cfg.temporal_padding!r}")
    tp = cfg.temporal_padding
    stem = nn.Sequential()
    stem.add_module("conv1", _conv(3, cfg.stem_channels, cfg.stem_kernel, kt, 2, tp))
    stem.add_module("bn1", nn.BatchNorm3d(cfg.stem_channels))
    stem.add_module("relu", nn.ReLU(inplace=True))
    stem.add_module("maxpool", FrameMaxPool(3, 2, 1))  # = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
    stages: list[tuple[str, nn.Module]] = [("stem", stem)]
    cin = cfg.stem_channels
    for i, (n, w, s) in enumerate(zip(cfg.layers, cfg.widths, cfg.strides, strict=True)):
        blocks = []
        for j in range(n):
            blocks.append(block(cin, w, s if j == 0 else 1, kt, tp))
            cin = w * block.expansion
        stages.append((f"layer{i + 1}", nn.Sequential(*blocks)))
    head = PoolLinearHead(cin, len(classes), cfg.dropout)
    model = VideoClassifier(stages, head, classes, spec, arch, {"config": asdict(cfg)})
    for m in model.modules():
        if isinstance(m, nn.Conv3d):  # includes TemporalConv3d
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():  # zero-init the last BN of each residual branch (trains faster)
        if isinstance(m, Bottleneck3d):
            nn.init.zeros_(m.bn3.weight)
        elif isinstance(m, BasicBlock3d):
            nn.init.zeros_(m.bn2.weight)
    return model


#: ImageNet statistics, as torchvision's ResNet-50 expects.
IMAGENET_SPEC = InputSpec(num_frames=16, fps=4.0, size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
TINY_SPEC = InputSpec(num_frames=16, fps=4.0, size=112, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
TINY_CONFIG = ResNet3dConfig(block="basic", layers=[1, 1, 1, 1], widths=[16, 32, 64, 128], strides=[1, 2, 2, 1],
                             stem_channels=16, stem_kernel=5, dropout=0.2)


def i3d_resnet50(classes: Sequence[str], spec: InputSpec = IMAGENET_SPEC, **overrides) -> VideoClassifier:
    """The seed's model: ResNet-50, every conv inflated to temporal kernel 3 (stride 1, padding 1)."""
    return build_resnet3d(ResNet3dConfig(**overrides), classes, spec, "i3d_resnet50")


def i3d_resnet_tiny(classes: Sequence[str], spec: InputSpec = TINY_SPEC, **overrides) -> VideoClassifier:
    """A small inflated ResNet (basic blocks, 16-128 channels) that trains on two CPU cores.

    The last stage keeps spatial stride 1, so a (1,3,16,112,112) clip gives (1,128,16,7,7).
    """
    cfg = ResNet3dConfig(**{**asdict(TINY_CONFIG), **overrides})
    return build_resnet3d(cfg, classes, spec, "i3d_resnet_tiny")
