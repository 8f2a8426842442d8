"""Every saliency method against a reference written here from its paper's formula.

The references share no code with vidviz: a forward hook on the layer's module (``get_submodule``), plain
``torch.autograd.grad`` of each class logit, and the formula in a few lines; Score-CAM and Ablation-CAM one
channel at a time. Then a known-answer test: a model whose evidence lies in a known frame and patch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import random_model

from vidviz.explain.cam import autograd_cams
from vidviz.explain.methods import CAM_METHODS, METHOD_INFO
from vidviz.models import load_checkpoint
from vidviz.models.resnet3d import PoolLinearHead, VideoClassifier

GRADIENT = [m for m in CAM_METHODS if METHOD_INFO[m].uses_gradient]


def module_of(model, layer):
    """The module named ``layer``: a stage of a vidviz ResNet, or a module path of a wrapped (torchvision) model."""
    return model.net.get_submodule(layer) if hasattr(model, "net") else model.get_submodule(f"stages.{layer}")


def hooked(model, x, layer):
    """Activations A (C, T', h, w) of ``layer`` (captured by a forward hook) and the logits (K,), with a graph."""
    seen = {}
    handle = module_of(model, layer).register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    try:
        logits = model(x)[0]  # (K,)
    finally:
        handle.remove()
    return seen["a"], logits


def reference_gradient_maps(model, x, layer, classes, method):
    a, logits = hooked(model, x, layer)
    out = []
    for c in classes:
        (g,) = torch.autograd.grad(logits[c], a, retain_graph=True)
        A, g = a[0].detach().double(), g[0].double()  # (C, T', h, w)
        if method == "gradcam":
            cam = torch.relu((g.mean(dim=(1, 2, 3))[:, None, None, None] * A).sum(0))
        elif method == "gradcam++":
            num = g**2
            den = 2 * g**2 + A.sum(dim=(1, 2, 3))[:, None, None, None] * g**3
            alpha = torch.where(g != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(g))
            w = (alpha * torch.relu(g)).sum(dim=(1, 2, 3))
            cam = torch.relu((w[:, None, None, None] * A).sum(0))
        elif method == "xgradcam":
            s = A.sum(dim=(1, 2, 3))
            w = torch.where(s != 0, (g * A).sum(dim=(1, 2, 3)) / torch.where(s != 0, s, 1.0), 0.0)  # 0/0 := 0
            cam = torch.relu((w[:, None, None, None] * A).sum(0))
        elif method == "hirescam":
            cam = torch.relu((g * A).sum(0))
        elif method == "gradcam-elementwise":
            cam = torch.relu(g * A).sum(0)
        elif method == "layercam":
            cam = torch.relu((torch.relu(g) * A).sum(0))
        out.append(cam)
    return torch.stack(out)  # (n, T', h, w)


def reference_ablation(model, x, layer, classes):
    a, logits = hooked(model, x, layer)
    A = a[0].detach()
    maps = []
    for c in classes:
        w = []
        for k in range(A.shape[0]):
            def zero_k(m, i, o, k=k):
                o = o.clone()
                o[:, k] = 0
                return o
            h = module_of(model, layer).register_forward_hook(zero_k)
            with torch.no_grad():
                y = model(x)[0, c]
            h.remove()
            w.append((logits[c].detach() - y) / logits[c].detach())
        maps.append(torch.relu((torch.stack(w)[:, None, None, None].double() * A.double()).sum(0)))
    return torch.stack(maps)


def reference_score(model, x, layer, classes):
    a, _ = hooked(model, x, layer)
    A = a[0].detach()
    w = []
    for k in range(A.shape[0]):
        m = torch.nn.functional.interpolate(A[k][None, None], size=x.shape[2:], mode="trilinear", align_corners=False)
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
        with torch.no_grad():
            w.append(torch.softmax(model(x * m)[0], -1)[classes])  # (n,)
    w = torch.stack(w, 1).double()  # (n, C)
    return torch.relu(torch.einsum("nc,cthw->nthw", w, A.double()))


def reference_eigen(model, x, layer):
    a, _ = hooked(model, x, layer)
    A = a[0].detach().double()
    P = A.reshape(A.shape[0], -1).T  # (positions, channels)
    Pc = P - P.mean(0)
    v = torch.linalg.svd(Pc, full_matrices=False).Vh[0]
    proj = Pc @ v
    if (proj * P.sum(1)).sum() < 0:
        proj = -proj
    return torch.relu(proj).reshape(A.shape[1:])


def close(ours, ref, rel=1e-5):
    ours, ref = ours.double(), ref.double()
    assert ours.shape == ref.shape
    err = (ours - ref).abs().max().item()
    assert err <= rel * max(ref.abs().max().item(), 1e-12), f"max error {err:.3g} vs max {ref.abs().max().item():.3g}"


@pytest.fixture(scope="module")
def default_model(default_checkpoint):
    return load_checkpoint(default_checkpoint).eval()


@pytest.fixture(scope="module")
def torchvision_model():
    from vidviz.models.torchvision_video import torchvision_video

    torch.manual_seed(0)
    return torchvision_video("r3d_18", [f"class {i}" for i in range(5)]).eval()


def clip(seed=0, t=16, s=112):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, t, s, s, generator=g)


@pytest.mark.parametrize("method", GRADIENT)
@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_gradient_methods_equal_their_formula_on_the_default_model(default_model, method, layer):
    x = clip(1)
    classes = [0, 3, 7]
    _, ours = autograd_cams(default_model, x, layer, classes, method)
    close(ours, reference_gradient_maps(default_model, x, layer, classes, method))


@pytest.mark.slow
@pytest.mark.parametrize("method", GRADIENT)
def test_gradient_methods_equal_their_formula_on_a_torchvision_model(torchvision_model, method):
    x = clip(2, t=8, s=64)
    _, ours = autograd_cams(torchvision_model, x, "layer3", [1, 4], method)
    close(ours, reference_gradient_maps(torchvision_model, x, "layer3", [1, 4], method))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ablationcam", "scorecam", "eigencam"])
def test_perturbation_and_eigen_cams_equal_their_references_on_a_torchvision_model(torchvision_model, method):
    """On a hooked adapter the part after the layer is the whole network with the layer's output replaced."""
    x = clip(6, t=4, s=32)  # at the stem (64 channels): 64 passes per class for the one-at-a-time references
    _, ours = autograd_cams(torchvision_model, x, "stem", [1, 4], method)
    ref = {"ablationcam": lambda: reference_ablation(torchvision_model, x, "stem", [1, 4]),
           "scorecam": lambda: reference_score(torchvision_model, x, "stem", [1, 4]),
           "eigencam": lambda: reference_eigen(torchvision_model, x, "stem")[None].expand(2, -1, -1, -1)}[method]()
    close(ours, ref)


@pytest.mark.parametrize("kind", [pytest.param("swin3d_t", marks=pytest.mark.slow), "videomae"])
def test_every_method_runs_on_other_adapters(kind, tmp_path):
    """Every method of the viewer on a channels-last (Swin) and a token (VideoMAE) adapter: maps of the layer's
    grid (or the input's, for Captum's), finite, and for the CAMs not negative."""
    from support import hf_folder

    from vidviz.explain.cam import explain
    from vidviz.explain.methods import INPUT_METHODS, METHODS

    if kind == "videomae":
        model = load_checkpoint(hf_folder(tmp_path, "videomae")[1])
        x, grid = clip(7, t=8, s=32), (4, 4, 4)
    else:
        from dataclasses import replace

        from vidviz.models.torchvision_video import kinetics_meta, torchvision_video

        torch.manual_seed(0)
        model = torchvision_video("swin3d_t", [f"c{i}" for i in range(6)],
                                  replace(kinetics_meta("swin3d_t")[1], num_frames=8, size=32)).eval()
        x, grid = clip(7, t=8, s=32), (4, 1, 1)
    settings = {"integrated-gradients": {"steps": 4}, "smoothgrad": {"samples": 2},
                "occlusion": {"window": 4, "patch": 16, "stride": 4}}
    for method in METHODS:
        e = explain(model, x, [0, 3], method, None, settings.get(method))
        want = (8, 8, 8) if method in INPUT_METHODS else grid  # Captum's maps: 4x4-pixel cells per frame
        assert e.maps.shape == (2, *want), (method, e.maps.shape)
        assert np.isfinite(e.maps).all(), method
        if method not in INPUT_METHODS:
            assert (e.maps >= 0).all(), method


def test_eigencam_is_the_first_principal_component_and_the_same_for_every_class(default_model):
    x = clip(3)
    _, ours = autograd_cams(default_model, x, "layer4", [0, 5], "eigencam")
    ref = reference_eigen(default_model, x, "layer4")
    close(ours[0], ref)
    assert torch.equal(ours[0], ours[1])


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_ablationcam_equals_one_ablation_at_a_time(default_model, layer):
    x = clip(4)
    _, ours = autograd_cams(default_model, x, layer, [2, 6], "ablationcam")
    close(ours, reference_ablation(default_model, x, layer, [2, 6]))


@pytest.mark.slow
def test_scorecam_equals_one_masked_forward_at_a_time(default_model):
    x = clip(5)
    _, ours = autograd_cams(default_model, x, "layer4", [1, 8], "scorecam")
    close(ours, reference_score(default_model, x, "layer4", [1, 8]))


def evidence_model() -> tuple[VideoClassifier, torch.Tensor]:
    """Channel 0 of its one stage is the input's red channel, channel 1 a constant; class 0 reads channel 0 only,
    class 1 channel 1 only. The clip is black but for a red patch in frame 6, rows 4-7, columns 9-12."""
    from vidviz.data.video import InputSpec

    conv = torch.nn.Conv3d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.bias.copy_(torch.tensor([0.0, 0.5]))
    head = PoolLinearHead(2, 2)
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(2))
        head.fc.bias.zero_()
    model = VideoClassifier([("feat", torch.nn.Sequential(conv, torch.nn.ReLU()))], head, ["patch", "constant"],
                            InputSpec(num_frames=8, size=16), "evidence").eval()
    x = torch.zeros(1, 3, 8, 16, 16)
    x[0, 0, 5, 4:8, 9:13] = 1.0
    return model, x


@pytest.mark.parametrize("method", CAM_METHODS)  # (the input attributions: tests/test_attribution.py)
def test_every_method_finds_the_evidence_where_it_is(method):
    model, x = evidence_model()
    _, maps = autograd_cams(model, x, "feat", [0], method)
    m = maps[0]  # (T', h, w) = (8, 16, 16)
    t, i, j = divmod(int(m.argmax()), 16 * 16)[0], *divmod(int(m.argmax()) % (16 * 16), 16)
    assert t == 5 and 4 <= i < 8 and 9 <= j < 13, (method, t, i, j)
    inside = m[5, 4:8, 9:13].mean()
    outside = torch.cat([m[:5].flatten(), m[6:].flatten()]).mean()
    assert inside > 2 * outside  # most of the map is on the patch


def test_a_random_model_still_gives_finite_maps_for_every_method():
    model = random_model(1)
    x = clip(6, t=8, s=64)
    for method in CAM_METHODS:
        logits, maps = autograd_cams(model, x, "layer4", [0, 1], method)
        assert maps.shape[0] == 2 and torch.isfinite(maps).all() and (maps >= 0).all(), method


@pytest.mark.parametrize("method", ["ablationcam", "scorecam"])
def test_the_perturbation_methods_report_their_progress(method):
    model, x = evidence_model()  # one stage of 2 channels
    seen = []
    autograd_cams(model, x, "feat", [0], method, chunk=2, progress=lambda d, n: seen.append((d, n)))
    assert seen and seen[-1] == (2, 2) and [d for d, _ in seen] == sorted(d for d, _ in seen)
