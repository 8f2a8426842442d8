"""Helpers the tests share (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from vidviz.data import synth
from vidviz.data.video import InputSpec
from vidviz.models import i3d_resnet_tiny
from vidviz.models.resnet3d import PoolLinearHead, VideoClassifier

ROOT = Path(__file__).resolve().parents[1]


def moving_square_frames(n: int = 30, h: int = 64, w: int = 96, gray: bool = False) -> np.ndarray:
    """uint8 (n, h, w, 3) frames of a white square moving right; frame i has i encoded in its top-left pixel."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        x = 4 + (i * 2) % (w - 20)
        frames[i, 20:36, x:x + 16] = 255
        frames[i, :8, :8] = min(255, i * 8)  # a brightness tag to recover the index after lossy coding
    if gray:
        frames[..., 1] = frames[..., 0]
        frames[..., 2] = frames[..., 0]
    return frames


def write_vp9(path: Path, frames: np.ndarray, fps: float = 12.0) -> bool:
    """Write VP9 WebM with OpenCV (slow encoder; small clips only). Returns False if unsupported."""
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"VP90"), fps, (frames.shape[2], frames.shape[1]))
    if not w.isOpened():
        return False
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return path.stat().st_size > 0


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidviz.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def random_model(seed: int = 0, **overrides) -> VideoClassifier:
    torch.manual_seed(seed)
    m = i3d_resnet_tiny(list(synth.TEMPLATES), **overrides)
    for mod in m.modules():  # undo zero-init so every block contributes
        if isinstance(mod, nn.BatchNorm3d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m.eval()


def torchvision_model(arch: str, seed: int = 3) -> nn.Module:
    """torchvision's video ``arch`` behind vidviz's adapter (9 classes, 8 frames of 32 px), random weights and
    batch-norm statistics, in eval mode: for tests of the explainers' paths, not of loading weights."""
    from vidviz.models.torchvision_video import torchvision_video

    torch.manual_seed(seed)
    spec = InputSpec(num_frames=8, fps=4.0, size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    return randomise_batchnorm(torchvision_video(arch, [f"c{i}" for i in range(9)], spec))


def randomise_batchnorm(m: nn.Module) -> nn.Module:
    """Random batch-norm scales, shifts and statistics (so no block is an identity), then eval mode."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm3d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def clip_tensor(seed: int = 0, t: int = 16, s: int = 112) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, t, s, s, generator=g)


def hook_counts(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def captum_gradcam(model, layer_module, x, target):
    from captum.attr import LayerGradCam

    return LayerGradCam(model, layer_module).attribute(x, target=target, relu_attributions=True)[0, 0].detach()


def assert_rel_close(a, b, rel=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    scale = max(float(b.abs().max()), 1e-12)
    assert float((a - b).abs().max()) <= rel * scale, float((a - b).abs().max()) / scale


class FrameReader(nn.Module):
    """A 'network' that only looks at frame k."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.conv = nn.Conv3d(3, 4, 1)

    def forward(self, x):
        mask = torch.zeros(1, 1, x.shape[2], 1, 1)
        mask[:, :, self.k] = 1.0
        return torch.relu(self.conv(x * mask))  # (B, 4, T, H, W)


def frame_reader_model(k: int) -> VideoClassifier:
    torch.manual_seed(0)
    head = PoolLinearHead(4, 3)
    return VideoClassifier([("only", FrameReader(k))], head, ["a", "b", "c"], InputSpec(size=16), "test").eval()


def assert_same_store(a, b):
    cols = ["id", "label", "pred", "true_rank", "case"]
    pd.testing.assert_frame_equal(a.table[cols].reset_index(drop=True), b.table[cols].reset_index(drop=True))
    assert np.allclose(a.table["prob"], b.table["prob"], atol=1e-5)
    assert np.allclose(a.maps.astype(np.float32), b.maps.astype(np.float32), rtol=1e-2, atol=1e-4)
    assert np.array_equal(a.map_classes, b.map_classes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hf_folder(tmp_path: Path, kind: str, preprocessor: dict | None = None):
    """A small ``*ForVideoClassification`` with random weights, written by ``save_pretrained``."""
    import transformers as tf

    small = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
    cfg = {
        "videomae": lambda: tf.VideoMAEConfig(image_size=32, patch_size=8, num_frames=8, tubelet_size=2, **small),
        "timesformer": lambda: tf.TimesformerConfig(image_size=32, patch_size=8, num_frames=4, **small),
        "vivit": lambda: tf.VivitConfig(image_size=32, tubelet_size=[2, 8, 8], num_frames=8, **small),
        "vjepa2": lambda: tf.VJEPA2Config(crop_size=32, patch_size=8, frames_per_clip=8, tubelet_size=2, hidden_size=32,
                                          num_hidden_layers=3, num_attention_heads=2, pred_hidden_size=32,
                                          pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1),
    }[kind]()
    cfg.id2label = {i: f"{kind} action {i}" for i in range(6)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    torch.manual_seed(0)
    net = getattr(tf, {"videomae": "VideoMAE", "timesformer": "Timesformer", "vivit": "Vivit", "vjepa2": "VJEPA2"}[kind]
                  + "ForVideoClassification")(cfg).eval()
    folder = tmp_path / kind
    net.save_pretrained(folder)
    if preprocessor:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return net, folder


def one_line_error(capsys) -> str:
    """The error line the command printed (progress bars may stand before it on stderr)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("vidviz: error: ") == 1, err
    line = "vidviz: error: " + err.split("vidviz: error: ", 1)[1]
    assert "\n" not in line.strip(), line
    return line.strip()


class BoxMotionModel(nn.Module):
    """A two-class model whose only evidence is known: rightward motion inside one box.

    logit 0 = ``gain`` * (the mean over the box and over time of an opponent Reichardt detector on the
    channel mean a: a[t, y, x] a[t+1, y, x+1] - a[t, y, x+1] a[t+1, y, x], which a still scene and
    unstructured flicker leave at 0 on average) - ``offset``; logit 1 = 0. A map that is 1 on the box is the
    right answer for it: the quality metrics' known-answer check.
    """

    def __init__(self, box: tuple[int, int, int, int], gain: float = 9.0, offset: float = 2.0):
        super().__init__()
        self.box, self.gain, self.offset = box, gain, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, y1, x2, y2 = self.box
        a = x[:, :, :, y1:y2, x1:x2].mean(1)  # (B, T, bh, bw)
        r = a[:, :-1, :, :-1] * a[:, 1:, :, 1:] - a[:, :-1, :, 1:] * a[:, 1:, :, :-1]  # (B, T-1, bh, bw-1)
        z = self.gain * r.mean(dim=(1, 2, 3)) - self.offset  # (B,)
        return torch.stack([z, torch.zeros_like(z)], 1)  # (B, 2)


def box_motion_clip(box: tuple[int, int, int, int], t: int = 8, s: int = 32, seed: int = 0) -> torch.Tensor:
    """A normalised clip (1, 3, T, S, S) for :class:`BoxMotionModel`: a still, textured background with a
    bright square moving right across ``box``."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.nn.functional.interpolate(torch.randn(1, 3, s // 4, s // 4, generator=g), size=(s, s), mode="bilinear")
    x = bg[:, :, None].repeat(1, 1, t, 1, 1)  # (1, 3, T, S, S), still
    x1, y1, x2, y2 = box
    side = max(2, (y2 - y1) // 2)
    for f in range(t):
        c = x1 + (x2 - x1 - side) * f // max(1, t - 1)
        x[:, :, f, y1 + (y2 - y1 - side) // 2:y1 + (y2 - y1 - side) // 2 + side, c:c + side] = 2.5
    return x
