"""Model shapes, inflation, checkpoints, training and evaluation."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch
import torchvision
from support import ROOT, run_cli

from vidviz.data import synth
from vidviz.data.datasets import open_dataset
from vidviz.errors import CheckpointError
from vidviz.models import build_model, i3d_resnet50, i3d_resnet_tiny, load_checkpoint, save_checkpoint
from vidviz.models.inflate import inflate_resnet2d, inflate_weight
from vidviz.models.train import TrainConfig, flip_partners, train


def test_fast_cpu_paths_match_the_reference_ops():
    """FrameMaxPool = MaxPool3d((1,3,3)); the batch-of-one oneDNN conv = the batched conv3d (values and grads)."""
    from vidviz.models.resnet3d import FrameMaxPool, TemporalConv3d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 9, 11, generator=g)  # odd sizes exercise the padding
    ref = torch.nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))(x)
    assert torch.equal(FrameMaxPool(3, 2, 1)(x), ref)
    assert torch.equal(FrameMaxPool(3, 2, 1)(x.to(memory_format=torch.channels_last_3d)), ref)
    conv = TemporalConv3d(4, 6, 3, 3, stride=2).eval()
    x1 = x[:1].clone().requires_grad_(True)
    y1 = conv(x1)  # batch of one: the oneDNN kernel
    y2 = torch.nn.functional.conv3d(x1, conv.weight, None, conv.stride, conv.padding)  # the reference kernel
    assert torch.allclose(y1, y2, rtol=1e-5, atol=1e-5)
    g1, = torch.autograd.grad(y1.square().sum(), x1)
    g2, = torch.autograd.grad(y2.square().sum(), x1)
    assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@torch.no_grad()
def test_seed_shapes_i3d_resnet50():
    """The seed's model and input: 16 frames of 224x224 at 4 fps give a 16x2048x7x7 last conv."""
    m = i3d_resnet50([f"c{i}" for i in range(40)]).eval()
    spec = m.spec  # what the model tells the decoder to feed it
    assert spec.fps == 4.0  # "The data is sampled at 4fps": 16 frames cover 4 s
    a = m.features(torch.randn(1, 3, spec.num_frames, spec.size, spec.size))
    assert a.shape == (1, 2048, 16, 7, 7)  # the seed's 16x2048x7x7
    assert m.head(a).shape == (1, 40)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv3d)]
    assert all(c.kernel_size[0] == 3 and c.stride[0] == 1 for c in convs)


@torch.no_grad()
def test_tiny_model_keeps_every_frame():
    m = i3d_resnet_tiny(list(synth.TEMPLATES)).eval()
    assert m.features(torch.randn(2, 3, 16, 112, 112)).shape == (2, 128, 16, 7, 7)
    assert sum(p.numel() for p in m.parameters()) < 5_000_000  # fits the 20 MB checkpoint budget


def test_inflation_formula():
    w2d = torch.randn(8, 4, 3, 3)
    w3d = inflate_weight(w2d, 3)
    assert w3d.shape == (8, 4, 3, 3, 3)
    assert torch.allclose(w3d[:, :, 1], w2d / 3) and torch.allclose(w3d.sum(2), w2d, atol=1e-6)


@pytest.mark.slow
@torch.no_grad()
def test_inflated_resnet50_matches_2d_network_on_a_static_clip():
    torch.manual_seed(0)
    net2d = torchvision.models.resnet50(weights=None).eval()
    for mod in net2d.modules():  # non-trivial BN statistics so copying them matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    img = torch.randn(1, 3, 64, 64)
    feats2d = torch.nn.Sequential(*list(net2d.children())[:-2])(img)  # (1, 2048, 2, 2)
    m = i3d_resnet50(["a", "b"], temporal_padding="replicate").eval()
    inflate_resnet2d(m, net2d.state_dict())
    clip = img[:, :, None].expand(-1, -1, 4, -1, -1)  # (1, 3, 4, 64, 64): one repeated frame
    feats3d = m.features(clip)  # (1, 2048, 4, 2, 2)
    tol = 1e-5 * float(feats2d.abs().max())  # float32 summation order differs between 2D and 3D kernels
    for t in range(4):
        assert torch.allclose(feats3d[:, :, t], feats2d, rtol=1e-4, atol=tol)
    # zero temporal padding differs only near the ends
    mz = i3d_resnet50(["a", "b"]).eval()
    inflate_resnet2d(mz, net2d.state_dict())
    assert not torch.allclose(mz.features(clip)[:, :, 0], feats2d, rtol=1e-2, atol=100 * tol)


def test_inflation_refuses_mismatched_weights():
    m = i3d_resnet50(["a"])
    state = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(CheckpointError) as e:
        inflate_resnet2d(m, state)
    assert "mis-shaped" in str(e.value) or "missing" in str(e.value)


def test_checkpoint_round_trip(tmp_path):
    m = i3d_resnet_tiny(list(synth.TEMPLATES))
    p = save_checkpoint(tmp_path / "c.pt", m, "fp123", {"test_top1": 0.9})
    m2 = load_checkpoint(p)
    assert m2.classes == list(synth.TEMPLATES) and m2.spec == m.spec and m2.metrics["test_top1"] == 0.9
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(1, 3, 16, 112, 112)
    assert torch.allclose(m.eval()(x), m2(x))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_payload_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "vidviz-checkpoint", "obj": Evil()}, p)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(p)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


@pytest.mark.parametrize("problem", ["corrupt", "empty", "arch", "classes", "shape", "missing_key", "not_vidviz"])
def test_mismatched_or_broken_checkpoints(tmp_path, problem):
    m = i3d_resnet_tiny(["a", "b", "c"])
    p = save_checkpoint(tmp_path / "c.pt", m)
    obj = torch.load(p, weights_only=True)
    if problem == "corrupt":
        p.write_bytes(p.read_bytes()[:1000])
    elif problem == "empty":
        p.write_bytes(b"")
    elif problem == "arch":
        obj["arch"] = "resnet9000"
    elif problem == "shape":
        obj["state_dict"]["head.fc.weight"] = torch.zeros(3, 7)
    elif problem == "missing_key":
        del obj["state_dict"]["stages.stem.conv1.weight"]
    elif problem == "not_vidviz":
        obj = obj["state_dict"]
    if problem in ("shape", "missing_key"):  # weights saved consistently, for another model
        from vidviz.models.checkpoint import weights_sha256

        obj["weights_sha256"] = weights_sha256(obj["state_dict"])
    if problem in ("arch", "shape", "missing_key", "not_vidviz"):
        torch.save(obj, p)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p, num_classes=12 if problem == "classes" else None)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    expected = {"corrupt": "corrupt", "empty": "empty", "arch": "unknown architecture", "classes": "3 classes but the dataset has 12",
                "shape": "mis-shaped", "missing_key": "missing 1", "not_vidviz": "not a vidviz checkpoint"}[problem]
    assert expected in msg


@pytest.mark.slow
def test_app_modules_do_not_import_torchvision():
    """torchvision costs about 170 MB of memory; only the torchvision architectures load it."""
    code = ("import sys, vidviz.backend, vidviz.jobs.store, vidviz.tables, vidviz.render, vidviz.cli, vidviz.models; "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_torchvision_video_models_load_from_a_weights_file(tmp_path):
    from torchvision.models import video as tvv

    from vidviz.models.torchvision_video import load_torchvision_weights

    net = tvv.r3d_18(weights=None)
    p = tmp_path / "r3d.pth"
    torch.save(net.state_dict(), p)
    m = load_torchvision_weights(p, "r3d_18")
    assert len(m.classes) == 400 and m.classes[0] == "abseiling" and m.spec.size == 112
    x = torch.randn(1, 3, 8, 64, 64)  # any size the network takes: the comparison is what matters
    with torch.no_grad():
        assert torch.allclose(m(x), net.eval()(x), atol=1e-5)
    for arch in ("mc3_18", "r2plus1d_18"):
        assert build_model(arch, ["a", "b"]).features_logits(torch.randn(1, 3, 8, 32, 32))[0].dim() == 5


def test_flip_partners_swap_left_and_right():
    p = flip_partners(list(synth.TEMPLATES))
    t = list(synth.TEMPLATES)
    assert t[p[t.index("Pushing [something] from left to right")]] == "Pushing [something] from right to left"
    assert t[p[t.index("Turning the camera left while filming [something]")]] == "Turning the camera right while filming [something]"
    assert p[t.index("Picking [something] up")] == t.index("Picking [something] up")
    assert flip_partners(["Moving [something] left"]).tolist() == [-1]  # no partner: never flipped


@pytest.mark.slow
def test_a_few_training_steps_lower_the_loss(tiny_ds, tmp_path):
    ds = open_dataset(tiny_ds)
    # nine steps (three epochs of three batches of 16 clips): a few steps, not a training run
    s = train(ds, tmp_path / "t.pt", TrainConfig(epochs=3, batch_size=16, lr=3e-3, workers=0, seed=1), log=lambda *_: None)
    losses = [h["loss"] for h in s["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    assert (tmp_path / "t.pt").is_file() and (tmp_path / "t.resume.pt").is_file()
    # resume continues after the last finished epoch
    s2 = train(ds, tmp_path / "t.pt", TrainConfig(epochs=4, batch_size=16, workers=0, seed=1), resume=True,
               log=lambda *_: None)
    assert [h["epoch"] for h in s2["history"]] == list(range(1, 5))


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny_ds, tmp_path):
    out = tmp_path / "ddp.pt"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "vidviz.cli", "train", "--data", str(tiny_ds), "--out", str(out), "--epochs", "1",
                        "--batch-size", "4", "--workers", "0", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file() and "best validation top-1" in r.stdout
    assert load_checkpoint(out).arch == "i3d_resnet_tiny"


@pytest.mark.slow
def test_evaluate_reproduces_the_model_card(default_ds, default_checkpoint, tmp_path):
    card = (ROOT / "checkpoints" / "MODEL_CARD.md").read_text()
    m = re.search(r"test top-1[^0-9]*([0-9.]+)\s*%", card, re.I)
    assert m, "MODEL_CARD.md states no test top-1"
    r = run_cli("evaluate", "--data", str(default_ds), "--checkpoint", str(default_checkpoint), "--split", "test",
                "--csv", str(tmp_path / "conf.csv"), "--json", str(tmp_path / "eval.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "eval.json").read_text())
    assert abs(100 * res["top1"] - float(m.group(1))) <= 1.0
    assert (tmp_path / "conf.csv").read_text().count("\n") == 13  # header + 12 classes


@pytest.mark.slow
def test_inflating_from_a_weights_file(tmp_path):
    """The --init-2d path: a torchvision ResNet-50 state dict on disk (plain, or wrapped in 'state_dict')."""
    from torchvision.models import resnet18, resnet50

    torch.manual_seed(0)
    state = resnet50(weights=None).state_dict()
    plain, wrapped = tmp_path / "r50.pth", tmp_path / "r50-wrapped.pth"
    torch.save(state, plain)
    torch.save({"state_dict": state, "epoch": 90}, wrapped)
    for path in (plain, wrapped):
        m = inflate_resnet2d(i3d_resnet50(["a", "b"]), path)
        sd = m.state_dict()
        assert torch.equal(sd["stages.stem.conv1.weight"], inflate_weight(state["conv1.weight"], 3))
        assert torch.equal(sd["stages.layer3.2.conv2.weight"], inflate_weight(state["layer3.2.conv2.weight"], 3))
        assert torch.equal(sd["stages.layer4.0.downsample.1.running_var"], state["layer4.0.downsample.1.running_var"])
    other = tmp_path / "r18.pth"
    torch.save(resnet18(weights=None).state_dict(), other)
    with pytest.raises(CheckpointError) as e:
        inflate_resnet2d(i3d_resnet50(["a", "b"]), other)
    assert str(e.value).startswith(f"{other}: 2D ResNet-50 weights do not match the model") and "mis-shaped" in str(e.value)


@pytest.mark.slow  # a new process
def test_a_checkpoint_carries_a_checksum_of_its_weights_and_damage_is_refused(tmp_path, tiny_ds):
    """Flipped weight bytes used to load and predict something else (#17)."""
    import numpy as np
    from support import random_model

    model = random_model(3)
    path = save_checkpoint(tmp_path / "m.pt", model)
    obj = torch.load(path, weights_only=True)
    assert re.fullmatch(r"[0-9a-f]{64}", obj["weights_sha256"])
    load_checkpoint(path)  # intact: loads
    # one byte of a weight flipped in the file itself
    data = bytearray(path.read_bytes())
    w = obj["state_dict"]["head.fc.weight"].numpy().tobytes()
    at = bytes(data).find(w)
    assert at > 0
    data[at + 5] ^= 0x40
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    assert not np.array_equal(torch.load(bad, weights_only=True)["state_dict"]["head.fc.weight"].numpy(),
                              obj["state_dict"]["head.fc.weight"].numpy())  # the damage reaches the weights
    with pytest.raises(CheckpointError, match="do not match the checksum") as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value)
    r = run_cli("evaluate", "--checkpoint", str(bad), "--data", str(tiny_ds))
    assert r.returncode == 2 and "do not match the checksum" in r.stderr and str(bad) in r.stderr, r.stderr
    # a checkpoint written before the checksum existed still loads
    del obj["weights_sha256"]
    old = tmp_path / "old.pt"
    torch.save(obj, old)
    assert load_checkpoint(old).classes == model.classes


def test_a_model_whose_output_is_not_finite_is_an_error_naming_the_checkpoint(tmp_path, tiny_ds):
    from support import random_model

    from vidviz.backend import Backend
    from vidviz.errors import ExplainError

    model = random_model(3)
    with torch.no_grad():
        model.head.fc.weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", model)
    b = Backend(path, tiny_ds)
    clip = b.dataset.records[0].id
    with pytest.raises(ExplainError, match="not finite") as e:
        b.open(clip)
    assert str(path) in str(e.value)
