"""Captum's input attributions behind vidviz: equal to a direct Captum call, the evidence found where it is,
settings checked, and the command line's one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum import attr
from support import random_model
from test_methods import evidence_model

from vidviz.errors import ExplainError
from vidviz.explain.attribution import CELL, attribute
from vidviz.explain.cam import explain
from vidviz.explain.methods import INPUT_METHODS


def direct(model, x, classes, method):
    """The Captum call a user would write, then vidviz's documented reduction (channel sum, CELL x CELL mean)."""
    xs = x.expand(len(classes), *x.shape[1:])
    if method == "integrated-gradients":
        r = attr.IntegratedGradients(model).attribute(xs, baselines=torch.zeros_like(xs), target=classes, n_steps=16)
    elif method == "smoothgrad":
        torch.manual_seed(0)
        r = attr.NoiseTunnel(attr.Saliency(model)).attribute(
            xs, nt_type="smoothgrad", nt_samples=8, stdevs=0.15 * float(x.max() - x.min()), target=classes, abs=False)
    elif method == "input-x-gradient":
        r = attr.InputXGradient(model).attribute(xs, target=classes)
    else:
        r = attr.Occlusion(model).attribute(xs, sliding_window_shapes=(3, 4, 28, 28), strides=(3, 4, 28, 28),
                                            baselines=0.0, target=classes)
    s = r.sum(1)  # (n, T, H, W)
    n, t, h, w = s.shape
    return s.reshape(n, t, h // CELL, CELL, w // CELL, CELL).mean((3, 5))  # (n, T, h/CELL, w/CELL)


@pytest.fixture(scope="module")
def model():
    return random_model(2)


@pytest.mark.slow
@pytest.mark.parametrize("method", INPUT_METHODS)
def test_each_attribution_equals_a_direct_captum_call(model, method):
    x = torch.rand(1, 3, 8, 56, 56, generator=torch.Generator().manual_seed(3))
    _, signed = attribute(model, x, [1, 4], method, signed=True)
    ref = direct(model, x, [1, 4], method)
    assert signed.shape == ref.shape == (2, 8, 14, 14)
    err = (signed - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item() + 1e-9, err
    _, shown = attribute(model, x, [1, 4], method)
    assert torch.equal(shown, torch.relu(signed))  # the displayed map: the evidence for the class


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_every_attribution_finds_the_evidence_where_it_is(method):
    model, x = evidence_model()  # a red patch in frame 6, rows 4-7, columns 9-12 of a 16x16 clip
    settings = {"window": 1, "patch": 4, "stride": 1} if method == "occlusion" else None
    expl = explain(model, x, [0], method, settings=settings)
    m = expl.maps[0]  # (T, 16/CELL, 16/CELL) = (8, 4, 4)
    t, rest = divmod(int(m.argmax()), m.shape[1] * m.shape[2])
    i, j = divmod(rest, m.shape[2])
    assert (t, i) == (5, 1) and j in (2, 3), (method, t, i, j)  # the cells of rows 4-7, columns 8-15
    assert m[5, 1, 2:].mean() > m.mean()
    assert expl.layer == "input"


def test_settings_are_checked_with_one_line_errors(model):
    x = torch.rand(1, 3, 8, 56, 56)
    for method, settings, words in (
            ("integrated-gradients", {"steps": 0}, "steps=0 is out of range"),
            ("smoothgrad", {"samples": 1000}, "samples=1000 is out of range"),
            ("occlusion", {"window": 9}, "longer than the clip's 8 frames"),
            ("occlusion", {"patch": 100}, "larger than the 56x56 input"),
            ("input-x-gradient", {"steps": 4}, "has no setting 'steps'")):
        with pytest.raises(ExplainError, match=words):
            attribute(model, x, [0], method, settings)


@pytest.mark.slow
def test_the_command_line_takes_settings_and_refuses_a_layer_for_an_input_method(tiny_ds, tmp_path, capsys):
    from vidviz.cli import main
    from vidviz.data.datasets import open_dataset
    from vidviz.models import save_checkpoint

    ck = save_checkpoint(tmp_path / "m.pt", random_model(2))
    clip = open_dataset(tiny_ds).split("train")[0].id
    args = ["explain", clip, "--data", str(tiny_ds), "--checkpoint", str(ck), "--class", "0", "--out", str(tmp_path / "o")]
    assert main([*args, "--method", "integrated-gradients", "--steps", "4"]) == 0
    maps = np.load(next((tmp_path / "o").glob("*_maps.npy")))
    assert maps.shape == (16, 112 // CELL, 112 // CELL) and maps.max() > 0
    assert "with integrated-gradients at input" in capsys.readouterr().out
    assert main([*args, "--method", "integrated-gradients", "--steps", "0"]) == 2
    assert "steps=0 is out of range" in capsys.readouterr().err
    assert main([*args, "--method", "occlusion", "--layer", "layer3"]) == 2
    assert "occlusion attributes the input, not a layer" in capsys.readouterr().err
    assert main([*args, "--method", "gradcam", "--steps", "4"]) == 2
    assert "gradcam has no setting 'steps'" in capsys.readouterr().err


@pytest.mark.parametrize("method,settings", [("integrated-gradients", {"steps": 4}), ("smoothgrad", {"samples": 3}),
                                             ("input-x-gradient", None),
                                             ("occlusion", {"window": 4, "patch": 8, "stride": 4})])
def test_captum_methods_report_their_progress_to_the_end(method, settings):
    """The viewer's progress bar for Captum's methods: clips through the model, counted up to the exact total."""
    model = random_model(0).eval()
    x = torch.randn(1, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = []
    _, maps = attribute(model, x, [0, 2], method, settings, progress=lambda d, n: seen.append((d, n)))
    assert seen and seen[-1][0] == seen[-1][1], seen  # it ends at its total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # and only goes forward
    total = {"integrated-gradients": 8, "smoothgrad": 6, "input-x-gradient": 2, "occlusion": 2 * (1 + 2 * 2 * 2)}
    assert seen[-1][1] == total[method]
    assert maps.shape == (2, 8, 4, 4)
