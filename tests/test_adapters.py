"""Bring your own model (#13): every adapter's maps equal an independent autograd reference.

Each model is built with random weights (torchvision's nine video architectures) or from a small config
(Hugging Face), saved to a temporary folder and loaded back through the path a user takes. The reference
is written here, with no vidviz code: a forward hook on ``net.get_submodule(layer)``, the gradient of the
class logit, its mean over the map's positions, the ReLU of the weighted sum, reshaped with the model's own
grid (which this file spells out per architecture).
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from support import assert_rel_close, hf_folder, run_cli

from vidviz.errors import CheckpointError, ExplainError
from vidviz.explain.cam import explain, one_pass_applies
from vidviz.models import load_checkpoint, save_checkpoint
from vidviz.models.torchvision_video import (
    TORCHVISION_ARCHS,
    kinetics_meta,
    load_torchvision_weights,
)

#: arch -> (frames, size): the smallest input each accepts that keeps a map of more than one cell
TV_INPUT = {"r3d_18": (8, 64), "mc3_18": (8, 64), "r2plus1d_18": (8, 64), "s3d": (16, 224), "mvit_v1_b": (16, 224),
            "mvit_v2_s": (16, 224), "swin3d_t": (8, 64), "swin3d_s": (8, 64), "swin3d_b": (8, 64)}
HEAVY = {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_s", "swin3d_b"}  # slow: the fast loop has swin3d_t (r3d_18 below)


# ------------------------------------------------------------------ the independent reference
def _cnn(y, out):  # (C, T', h, w) already
    return y


def _swin(y, out):  # (T', h, w, C)
    return y.permute(3, 0, 1, 2)


def _mvit(y, out):  # (1 + T'hw, C), the grid as the block returns it
    t, h, w = out[1]
    return y[1:].reshape(t, h, w, -1).permute(3, 0, 1, 2)


def _tokens(prefix, thw, time_last=False):
    def grid(y, out):
        t, h, w = thw
        g = y[prefix:]
        if time_last:  # TimeSformer: tokens ordered (h, w, t)
            return g.reshape(h, w, t, -1).permute(3, 2, 0, 1)
        return g.reshape(t, h, w, -1).permute(3, 0, 1, 2)
    return grid


def reference_gradcam(net, inp, layer, cls, to_grid, logits_of=lambda o: o):
    """Grad-CAM (T', h, w) of ``cls`` at ``net.get_submodule(layer)``, from plain autograd."""
    seen = {}

    def hook(mod, args, out):
        y = out[0] if isinstance(out, tuple) else out
        leaf = y.detach().clone().requires_grad_(True)  # the layer's output as a leaf: its .grad is dy_c/dA
        seen["y"], seen["out"] = leaf, out
        y2 = leaf * 1.0  # what the network goes on with (it may add to it in place, e.g. a residual)
        return (y2, *out[1:]) if isinstance(out, tuple) else y2

    handle = net.get_submodule(layer).register_forward_hook(hook)
    try:
        logits_of(net(inp))[0, cls].backward()
    finally:
        handle.remove()
    a = to_grid(seen["y"][0].detach(), seen["out"])  # (C, T', h, w)
    g = to_grid(seen["y"].grad[0], seen["out"])  # (C, T', h, w)
    alpha = g.mean(dim=(1, 2, 3))  # (C,)
    return torch.relu(torch.einsum("c,cthw->thw", alpha, a))


def tv_grid(arch):
    return _swin if arch.startswith("swin") else _mvit if arch.startswith("mvit") else _cnn


# ------------------------------------------------------------------ torchvision
def saved_torchvision(arch, tmp_path, seed=0):
    """torchvision's ``arch`` with random weights, saved as a torchvision weights file, imported as a vidviz
    checkpoint and loaded back: the path a user takes (``vidviz import-weights``)."""
    t, s = TV_INPUT[arch]
    torch.manual_seed(seed)
    net = getattr(__import__("torchvision.models.video", fromlist=[arch]), arch)(weights=None)
    for name in ("fc", "classifier.1", "head", "head.1"):  # no classifier bias: the top classes are the ones whose
        head = dict(net.named_modules()).get(name)  # evidence is largest, so their maps are not all zero
        if head is not None and getattr(head, "bias", None) is not None:
            torch.nn.init.zeros_(head.bias)
    weights = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), weights)
    spec = replace(kinetics_meta(arch)[1], num_frames=t, size=s)  # as `import-weights --frames --size` does
    imported = load_torchvision_weights(weights, arch, spec)
    ckpt = save_checkpoint(tmp_path / f"{arch}.pt", imported)
    return net.eval(), load_checkpoint(ckpt)


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in HEAVY else a for a in TORCHVISION_ARCHS])
def test_torchvision_maps_equal_autograd_reference(arch, tmp_path):
    net, model = saved_torchvision(arch, tmp_path)
    classes, spec = kinetics_meta(arch)
    assert model.classes == classes and len(classes) == 400  # Kinetics-400 names round-trip
    assert (model.spec.num_frames, model.spec.size, model.spec.mean) == (*TV_INPUT[arch], spec.mean)
    t, s = TV_INPUT[arch]
    x = torch.randn(1, 3, t, s, s, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
        assert torch.allclose(logits, net(x), atol=1e-5)  # the same network, the same logits
    mid = model.layer_names[len(model.layer_names) // 2]
    targets = logits[0].topk(2).indices.tolist()  # (random weights: the top classes have positive evidence)
    for layer in (model.last_layer, mid):
        expl = explain(model, x, targets, "gradcam", layer)
        for i, c in enumerate(targets):
            ref = reference_gradcam(net, x, layer, c, tv_grid(arch))
            assert expl.maps[i].shape == tuple(ref.shape)
            assert float(ref.max()) > 0, (arch, layer)  # a reference of zeros would prove nothing
            assert_rel_close(expl.maps[i], ref, rel=1e-4)
    # the fast path is used exactly where the head after the default layer is GAP + linear
    assert one_pass_applies(model, "gradcam", None) == (arch in ("r3d_18", "mc3_18", "r2plus1d_18")
                                                        or arch.startswith("swin"))


@pytest.mark.slow
def test_every_class_from_one_forward_equals_autograd(tmp_path):
    """swin3d_t: the all-classes fast path at ``norm`` (channels-last maps) equals the batched backward."""
    _, model = saved_torchvision("swin3d_t", tmp_path)
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(2))
    fast = explain(model, x, None, "gradcam")  # every class, no backward
    from vidviz.explain.cam import autograd_cams

    _, slow = autograd_cams(model, x, "norm", list(range(0, 400, 37)), "gradcam")
    assert fast.maps.shape[0] == 400
    assert_rel_close(fast.maps[list(range(0, 400, 37))], slow, rel=1e-4)


@pytest.mark.slow
def test_any_module_path_is_a_layer(tmp_path):
    """A layer the picker does not list, named by its module path (a residual block inside layer3)."""
    net, model = saved_torchvision("r3d_18", tmp_path)
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(3))
    expl = explain(model, x, [7], "gradcam", "layer3.1.conv2")
    assert_rel_close(expl.maps[0], reference_gradcam(net, x, "layer3.1.conv2", 7, _cnn), rel=1e-4)
    with pytest.raises(ExplainError, match="unknown layer 'layer9'"):
        explain(model, x, [7], "gradcam", "layer9")
    with pytest.raises(ExplainError, match="not a 5D space-time map"):
        explain(model, x, [7], "gradcam", "fc")


def test_wrong_architecture_weights_name_file_and_keys(tmp_path):
    torch.manual_seed(0)
    from torchvision.models.video import r3d_18

    path = tmp_path / "r3d.pth"
    torch.save(r3d_18(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"r3d\.pth: swin3d_t weights do not match the model; .*missing"):
        load_torchvision_weights(path, "swin3d_t")


# ------------------------------------------------------------------ Hugging Face
HF_GRID = {"videomae": _tokens(0, (4, 4, 4)), "timesformer": _tokens(1, (4, 4, 4), time_last=True),
           "vivit": _tokens(1, (4, 4, 4)), "vjepa2": _tokens(0, (4, 4, 4))}


@pytest.mark.parametrize("kind", ["videomae", "timesformer", "vivit", "vjepa2"])
def test_hugging_face_maps_equal_autograd_reference(kind, tmp_path):
    net, folder = hf_folder(tmp_path, kind, {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]})
    model = load_checkpoint(folder)
    assert model.classes == [f"{kind} action {i}" for i in range(6)]  # from id2label
    frames = net.config.frames_per_clip if kind == "vjepa2" else net.config.num_frames
    assert (model.spec.num_frames, model.spec.size) == (frames, 32)
    assert model.spec.mean == (0.5, 0.5, 0.5) and model.spec.std == (0.25, 0.25, 0.25)  # preprocessor_config
    t = model.spec.num_frames
    x = torch.randn(1, 3, t, 32, 32, generator=torch.Generator().manual_seed(4))
    inp = x.transpose(1, 2)  # (1, T, 3, H, W): what a Hugging Face video model receives
    with torch.no_grad():
        assert torch.allclose(model(x), net(inp).logits, atol=1e-5)
    assert torch.equal(model.model_input(x), inp)
    for layer in (model.last_layer, model.layer_names[0]):
        expl = explain(model, x, [1, 4], "gradcam", layer)
        assert expl.maps.shape[1:] == (4, 4, 4)
        for i, c in enumerate([1, 4]):
            ref = reference_gradcam(net, inp, layer, c, HF_GRID[kind], lambda o: o.logits)
            assert float(ref.max()) > 0
            assert_rel_close(expl.maps[i], ref, rel=1e-4)
    assert not one_pass_applies(model, "gradcam", None)  # no GAP + linear head: every map takes a backward


def test_hugging_face_bad_folders_are_one_line_errors(tmp_path):
    _, folder = hf_folder(tmp_path, "videomae")
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)  # corrupt weights
    with pytest.raises(CheckpointError, match=r"videomae: cannot load the videomae weights"):
        load_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_checkpoint(folder)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(CheckpointError, match=r"config.json: model_type 'bert' is not a video classifier"):
        load_checkpoint(bert)
    with pytest.raises(CheckpointError, match="not a Hugging Face model folder"):
        load_checkpoint(tmp_path)


def test_hooked_model_is_thread_safe(tmp_path):
    """Four threads explain different clips at different layers of one model at once: each gets its own maps."""
    _, folder = hf_folder(tmp_path, "vivit")
    model = load_checkpoint(folder)
    xs = [torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    layers = [model.layer_names[i % 3] for i in range(4)]
    want = [explain(model, x, [2], "gradcam", layer).maps for x, layer in zip(xs, layers, strict=True)]
    got, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(3):
                got[i] = explain(model, xs[i], [2], "gradcam", layers[i]).maps
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-9)


@pytest.mark.slow
def test_explain_cli_on_videomae_and_swin(tmp_path, tiny_ds):
    """The issue's "must show": a VideoMAE folder and an imported swin3d_t, explained by the CLI, whose maps and
    input equal the autograd reference on the tensor the model received."""
    video = sorted((tiny_ds / "20bn-something-something-v2").iterdir())[0]
    net, folder = hf_folder(tmp_path, "videomae")
    torch.manual_seed(0)
    from torchvision.models.video import swin3d_t

    sw = swin3d_t(weights=None).eval()
    torch.save(sw.state_dict(), tmp_path / "swin.pth")
    r = run_cli("import-weights", "--arch", "swin3d_t", "--weights", str(tmp_path / "swin.pth"),
                "--out", str(tmp_path / "swin.pt"), "--frames", "8", "--size", "64")
    assert r.returncode == 0, r.stderr
    for ckpt, netw, grid, logits_of in ((folder, net, HF_GRID["videomae"], lambda o: o.logits),
                                        (tmp_path / "swin.pt", sw, _swin, lambda o: o)):
        out = tmp_path / f"out-{ckpt.name}"
        r = run_cli("explain", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--class", "2")
        assert r.returncode == 0, r.stderr
        layer = load_checkpoint(ckpt).last_layer
        assert f"at {layer}" in r.stdout
        maps = np.load(next(out.glob("*_maps.npy")))
        inp = torch.from_numpy(np.load(next(out.glob("*_input.npy"))))
        assert list(out.glob("*overlay*")), sorted(p.name for p in out.iterdir())
        ref = reference_gradcam(netw, inp, layer, 2, grid, logits_of)
        assert_rel_close(maps, ref, rel=1e-4)


@pytest.mark.slow
def test_bad_models_are_one_line_errors_in_the_cli(tmp_path, tiny_ds):
    """Weights of another architecture, a folder that is not a video classifier, a folder without its weights and
    an unknown layer: one line naming the file (or layer) and the problem, exit 2."""
    from torchvision.models.video import r3d_18

    video = sorted((tiny_ds / "20bn-something-something-v2").iterdir())[0]
    torch.save(r3d_18(weights=None).state_dict(), tmp_path / "r3d.pth")
    _, folder = hf_folder(tmp_path, "videomae")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((folder / "config.json").read_text())
    cases = [
        (["import-weights", "--arch", "swin3d_t", "--weights", str(tmp_path / "r3d.pth"), "--out", str(tmp_path / "x.pt")],
         "r3d.pth: swin3d_t weights do not match the model"),
        (["explain", str(video), "--checkpoint", str(bert), "--out", str(tmp_path / "o")], "is not a video classifier"),
        (["explain", str(video), "--checkpoint", str(empty), "--out", str(tmp_path / "o")], "empty: no weights file"),
        (["explain", str(video), "--checkpoint", str(folder), "--layer", "videomae.encoder.layer.9", "--out",
          str(tmp_path / "o")], "unknown layer 'videomae.encoder.layer.9'"),
    ]
    for args, want in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and want in lines[0], r.stderr
        assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "o").exists()  # nothing half-written


def test_precompute_and_evaluate_take_a_hugging_face_model_whose_names_differ(tmp_path, tiny_ds):
    """The store and the evaluation of a model without the one-forward path, whose class names match only some of
    the dataset's (by name, brackets and case ignored): its maps equal explain()'s, its labels are its own classes."""
    import transformers

    from vidviz.data.datasets import open_dataset
    from vidviz.jobs.store import open_store, precompute
    from vidviz.models.train import evaluate

    ds = open_dataset(tiny_ds)
    names = [c.replace("[", "").replace("]", "").lower() for c in ds.classes[:4]] + ["juggling", "knitting"]
    _, folder = hf_folder(tmp_path, "videomae")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = {str(i): n for i, n in enumerate(names)}
    cfg["label2id"] = {n: i for i, n in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(cfg))
    model = load_checkpoint(folder)
    assert isinstance(model.net, transformers.VideoMAEForVideoClassification)
    recs = [r for r in ds.split("train") if r.label is not None]
    r = evaluate(model, ds, "train", workers=0, progress=False)
    matched = [x for x in recs if x.label < 4]
    assert r["clips"] == len(matched) and r["unmatched"] == len(recs) - len(matched)
    assert set(r["per_class"]) <= set(names)
    st = open_store(precompute(model, ds, "train", tmp_path / "store", k=2, workers=0))
    assert len(st.table) == len(ds.split("train"))
    row = 0
    rec = ds.get(str(st.table["id"].iat[row]))
    assert st.table["label"].iat[row] == (rec.label if rec.label < 4 else -1)  # the model's index, by name
    from vidviz.data.video import load_clip, to_tensor

    x = to_tensor(load_clip(rec.path, model.spec).frames, model.spec)[None]
    cls = int(st.map_classes[int(st.table["map_row"].iat[row])][0])
    ref = explain(model, x, [cls], "gradcam").maps[0]
    np.testing.assert_allclose(st.map_of(row, cls), ref, rtol=1e-2, atol=1e-4 * float(np.abs(ref).max()))  # float16


def test_randomisation_check_cascades_through_a_hooked_model(tmp_path):
    """The sanity check on an adapter other than vidviz's: classifier, layers from the last back, then the rest;
    Grad-CAM's map changes once the model is random, the input itself (an explainer that ignores it) does not."""
    from vidviz.explain import metrics as q

    model = load_checkpoint(hf_folder(tmp_path, "videomae")[1])
    x = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(5))
    cam = q.randomisation_check(model, x, 1, lambda m, xx, c: explain(m, xx, [c], "gradcam").maps[0])
    names = [n for n, _ in cam]
    assert names == ["classifier", *reversed(model.layer_names), "all"]
    assert cam[-1][1] < 0.5
    same = q.randomisation_check(model, x, 1, lambda m, xx, c: xx[0].abs().sum(0).numpy())
    assert same[-1][1] == pytest.approx(1.0)
    assert list(model.state_dict()) == list(load_checkpoint(tmp_path / "videomae").state_dict())  # a copy was randomised
    torch.testing.assert_close(model(x), load_checkpoint(tmp_path / "videomae")(x))


@pytest.mark.parametrize("arch", ["mc3_18", pytest.param("swin3d_t", marks=pytest.mark.slow)])
def test_a_copy_of_an_adapter_explains_with_its_own_weights(arch):
    """A deep copy (what the randomisation check changes) computes its maps with the copy's weights in every
    path: the all-classes fast path (head weights), the part after a layer, and the pooled top-5 path."""
    import copy

    from support import torchvision_model

    from vidviz.explain.cam import autograd_cams, forward_cams

    model = torchvision_model(arch)
    x = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(4))
    twin = copy.deepcopy(model)
    torch.manual_seed(9)
    for p in twin.parameters():  # the copy gets other weights (each scaled by 1 +- 0.5); the original keeps its own
        p.data.mul_(1 + 0.5 * torch.randn_like(p))
    fresh = torchvision_model(arch)
    fresh.load_state_dict(twin.state_dict())  # the copy's weights in a model of its own
    mid = model.layer_names[len(model.layer_names) // 2]
    classes = [0, 4, 7]
    ours_all, fresh_all = forward_cams(twin, x)[2], forward_cams(fresh, x)[2]  # (1, K, T', h, w) each
    assert float(fresh_all.abs().max()) > 0
    assert_rel_close(ours_all, fresh_all, rel=1e-4)
    _, ours = autograd_cams(twin, x, mid, classes)
    _, ref = autograd_cams(fresh, x, mid, classes)
    assert float(ref.abs().max()) > 0
    assert_rel_close(ours, ref, rel=1e-4)
    with torch.no_grad():
        assert torch.allclose(twin.rest(twin.run(x, stop=mid), mid, x), fresh(x), atol=1e-5)
