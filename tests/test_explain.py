"""Explainer oracles (captum, a reference Grad-CAM++), thread safety, temporal tests, backend, rendering."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from support import (
    assert_rel_close,
    captum_gradcam,
    clip_tensor,
    frame_reader_model,
    hook_counts,
    random_model,
    randomise_batchnorm,
    torchvision_model,
)

from vidviz import render
from vidviz.data import synth
from vidviz.data.video import InputSpec, load_clip, write_video
from vidviz.errors import ExplainError
from vidviz.explain.cam import autograd_cams, contrast, explain, forward_cams, normalise, upsample
from vidviz.explain.temporal import importance_curve, perturbation_tests
from vidviz.models import save_checkpoint
from vidviz.models.resnet3d import VideoClassifier


def all_class_maps(m, x):
    """The one-pass maps (K, T', h, w) of one clip x (1, 3, T, H, W)."""
    return forward_cams(m, x)[2][0]


def test_one_pass_gradcam_equals_captum_at_the_last_block():
    m, x = random_model(), clip_tensor()
    maps = all_class_maps(m, x)
    assert maps.shape == (12, 16, 7, 7)
    for c in (0, 5, 11):
        ref = captum_gradcam(m, m.stages["layer4"], x, c)
        assert ref.shape == (16, 7, 7)
        assert_rel_close(maps[c], ref)


def test_autograd_gradcam_equals_captum_at_an_intermediate_layer():
    m, x = random_model(1), clip_tensor(1)
    classes = [2, 7, 9]
    _, maps = autograd_cams(m, x, "layer2", classes, "gradcam")
    assert maps.shape == (3, 16, 14, 14)
    for i, c in enumerate(classes):
        assert_rel_close(maps[i], captum_gradcam(m, m.stages["layer2"], x, c))


def test_autograd_path_equals_one_pass_path_at_the_last_block():
    m, x = random_model(2), clip_tensor(2)
    maps_fast = all_class_maps(m, x)
    _, maps_slow = autograd_cams(m, x, m.last_layer, list(range(12)), "gradcam")
    assert_rel_close(maps_slow, maps_fast)


def reference_gradcam_pp(model, x, layer, c):
    """Grad-CAM++ written out plainly, in float64, one channel at a time."""
    a = model.run(x, stop=layer).detach().requires_grad_(True)
    score = model.head(model.run(a, start=layer))[0, c]
    (g,) = torch.autograd.grad(score, a)
    A, G = a.detach()[0].double().numpy(), g[0].double().numpy()
    out = np.zeros(A.shape[1:])
    for k in range(A.shape[0]):
        g1 = G[k]
        num = g1 ** 2
        den = 2 * g1 ** 2 + A[k].sum() * g1 ** 3
        alpha = np.where(g1 != 0, num / np.where(den != 0, den, 1.0), 0.0)
        w = (alpha * np.maximum(g1, 0)).sum()
        out += w * A[k]
    return np.maximum(out, 0)


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_gradcam_pp_equals_reference(layer):
    m, x = random_model(3), clip_tensor(3)
    _, maps = autograd_cams(m, x, layer, [1, 4], "gradcam++")
    for i, c in enumerate([1, 4]):
        assert_rel_close(maps[i], torch.from_numpy(reference_gradcam_pp(m, x, layer, c)), rel=1e-4)


def test_explanation_is_immutable_and_complete():
    m, x = random_model(), clip_tensor()
    e = explain(m, x)
    assert e.maps.shape == (12, 16, 7, 7) and e.layer == "layer4" and e.method == "gradcam"
    assert abs(float(e.probs.sum()) - 1) < 1e-5 and e.top[0][1] == pytest.approx(float(e.probs.max()))
    with pytest.raises(ValueError):
        e.maps[0, 0, 0, 0] = 1.0
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        e.method = "x"
    d = contrast(e, 0, 1)
    assert np.allclose(d, e.map_for(0) - e.map_for(1))


def test_no_state_left_on_the_model_and_threads_agree():
    m = random_model(4)
    clips = [clip_tensor(100 + i) for i in range(8)]
    before = hook_counts(m)
    sequential = [autograd_cams(m, c, "layer3", [i, (i + 1) % 12], "gradcam")[1] for i, c in enumerate(clips)]
    fast_seq = [all_class_maps(m, c) for c in clips]
    with ThreadPoolExecutor(8) as pool:
        slow = list(pool.map(lambda i: autograd_cams(m, clips[i], "layer3", [i, (i + 1) % 12], "gradcam")[1], range(8)))
        fast = list(pool.map(lambda i: all_class_maps(m, clips[i]), range(8)))
    for a, b in zip(sequential + fast_seq, slow + fast, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)
    assert hook_counts(m) == before
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(ExplainError, match="class 99 is out of range"):
        autograd_cams(m, clips[0], "layer3", [99], "gradcam")
    assert hook_counts(m) == before and all(p.grad is None for p in m.parameters())


def test_unknown_layer_and_method_are_plain_errors():
    m, x = random_model(), clip_tensor()
    with pytest.raises(ExplainError, match="unknown layer 'layer9'"):
        autograd_cams(m, x, "layer9", [0])
    with pytest.raises(ExplainError, match="unknown method"):
        autograd_cams(m, x, "layer3", [0], "lime")
    with pytest.raises(ExplainError, match="unknown method"):
        explain(m, x, [0], "lime")  # the one-pass path checks too


def test_upsample_and_normalise():
    maps = np.zeros((4, 2, 2), np.float32)
    maps[1, 0, 0] = 2.0
    up = upsample(maps, (8, 16, 16))
    assert up.shape == (8, 16, 16) and up.max() > 0
    peak = np.unravel_index(np.argmax(up), up.shape)
    assert 1 <= peak[0] <= 3 and peak[1] < 8 and peak[2] < 8
    assert normalise(up).max() == pytest.approx(1.0)
    per = normalise(up + 1e-3, "frame")
    assert np.allclose(per.reshape(8, -1).max(1), 1.0)
    assert normalise(up, "global", scale=4.0).max() == pytest.approx(up.max() / 4.0)


def test_blanking_finds_the_frame_the_model_reads():
    m = frame_reader_model(5)
    x = torch.rand(1, 3, 8, 16, 16) + 0.5
    rep = perturbation_tests(m, x, target=0)
    changed = np.flatnonzero(np.abs(rep.blank) > 1e-7)
    assert changed.tolist() == [5]
    assert abs(rep.freeze) > 1e-6  # frame 5 replaced by frame 1
    maps = all_class_maps(m, x).numpy()  # (3, T, h, w)
    cam = maps[maps.sum((1, 2, 3)).argmax()]
    assert cam.sum() > 0
    curve = importance_curve(cam)
    assert curve.argmax() == 5 and curve.sum() == pytest.approx(1.0)


def test_importance_curve_resamples():
    cam = np.zeros((4, 2, 2))
    cam[2] = 1
    c = importance_curve(cam, 8)
    assert c.shape == (8,) and c.sum() == pytest.approx(1.0) and 4 <= c.argmax() <= 5


def test_render_overlay_is_red_where_the_map_is_high_and_videos_decode(tmp_path):
    frames = np.full((4, 32, 32, 3), 128, np.uint8)
    maps = np.zeros((4, 8, 8), np.float32)
    maps[:, :4, :4] = 1.0
    ov = render.overlay(frames, maps, 0.6)
    hot, cold = ov[0, 2, 2], ov[0, 30, 30]
    assert hot[0] > hot[2] + 50  # red
    assert cold[2] > cold[0] + 30  # blue
    grid = render.frame_grid(ov, cols=2)
    assert grid.shape == (2 * 32 + 2, 2 * 32 + 2, 3)
    webm = tmp_path / "o.webm"
    webm.write_bytes(render.video_bytes(ov, 4.0, min_side=64))
    assert load_clip(webm, InputSpec(num_frames=4, fps=4.0)).info.num_frames == 4
    assert render.gif_bytes(ov).startswith(b"GIF89a")
    assert render.png_bytes(grid).startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def backend_setup(tiny_ds, tmp_path_factory):
    from vidviz.backend import Backend

    d = tmp_path_factory.mktemp("be")
    ck = save_checkpoint(d / "m.pt", random_model(5))
    return Backend(ck, tiny_ds), d


def test_backend_class_switch_costs_no_forward(backend_setup):
    b, _ = backend_setup
    calls = {"n": 0}
    orig = b.model.features_logits

    def counting(x, layer=None):
        calls["n"] += 1
        return orig(x, layer)

    b.model.features_logits = counting
    stem = b.model.stages["stem"]
    stem_calls = {"n": 0}
    stem_forward = stem.forward

    def counting_stem(x):
        stem_calls["n"] += 1
        return stem_forward(x)

    stem.forward = counting_stem
    try:
        key = b.dataset.records[0].id
        e1 = b.explain(key, [0])
        assert calls["n"] == 1
        e2 = b.explain(key, [7])
        e3 = b.explain(key)
        assert calls["n"] == 1  # the maps of every class came from the first forward
        assert e3.maps.shape[0] == 12 and np.allclose(e2.map_for(7), e3.map_for(7))
        assert not np.allclose(e1.map_for(0), e2.map_for(7))
        assert stem_calls["n"] == 1
        top = [c for c, _ in b.predict(key)]
        pp = b.explain(key, [top[0]], "gradcam++", "layer3")
        assert stem_calls["n"] == 2  # one partial forward to layer3, then cached
        pp2 = b.explain(key, [top[3], top[7]], "gradcam++", "layer3")
        assert stem_calls["n"] == 2 and calls["n"] == 1  # a class switch at any layer: no forward
        assert pp2.maps.shape[0] == 2 and pp.maps.shape[0] == 1 and pp.maps.shape[1:] == pp2.maps.shape[1:]
        ref = explain(b.model, b.open(key).x, [top[7]], "gradcam++", "layer3").maps[0]
        assert np.allclose(pp2.map_for(top[7]), ref, rtol=1e-4, atol=1e-7)
    finally:
        del b.model.features_logits
        del stem.forward


def test_backend_lru_is_bounded_in_bytes():
    from vidviz.backend import LRUBytes

    c = LRUBytes(100)
    for i in range(10):
        c.put(i, i, 30)
    assert len(c) == 3 and c.total_bytes == 90 and c.get(0) is None and c.get(9) == 9
    c.get(7)
    c.put(10, 10, 30)
    assert c.get(7) == 7 and c.get(8) is None


def test_backend_uploads_and_bad_files(backend_setup, tmp_path):
    from vidviz.errors import VideoError

    b, _ = backend_setup
    frames = synth.render_clip(3, seed=1, index=1).frames
    p = write_video(tmp_path / "mine.mp4", frames, 12.0)
    key = b.register_upload("mine.mp4", p.read_bytes())
    assert key.startswith("upload:") and len(b.predict(key)) == 12
    with pytest.raises(VideoError, match="notes.txt"):
        b.register_upload("notes.txt", b"hello")
    with pytest.raises(VideoError, match="broken.mp4.*not a readable video"):
        b.register_upload("broken.mp4", b"\x00" * 5000)


def test_backend_ground_truth_maps_to_displayed_frames(backend_setup):
    b, _ = backend_setup
    key = b.dataset.records[0].id
    boxes, window = b.ground_truth(key)
    assert len(boxes) == 16 and window is not None and 0 <= window[0] <= window[1] < 16


@pytest.mark.parametrize("layer", ["stem", "layer1", "layer3"])
def test_autograd_gradcam_equals_captum_at_every_intermediate_layer(layer):
    """In float64, so that float32 rounding (about 1e-5 of a map's peak on both sides) cannot hide an error."""
    m, x = random_model(5).double(), clip_tensor(5).double()
    _, maps = autograd_cams(m, x, layer, [3, 8, 10], "gradcam")
    for i, c in enumerate([3, 8, 10]):
        ref = captum_gradcam(m, m.stages[layer], x, c)
        assert_rel_close(maps[i], ref, rel=1e-9)
    assert float(maps.abs().max()) > 0


@pytest.mark.parametrize("cin,cout,k,kt,stride,tp", [
    (8, 6, 3, 3, 2, "zeros"),  # 3x3x3, spatial stride 2 on an odd size: the last row/column is read by fewer taps
    (8, 6, 1, 3, 2, "replicate"),  # a shortcut conv with replicated temporal padding
    (5, 7, 3, 3, 1, "replicate"),
    (4, 4, 5, 1, 1, "zeros"),  # the stem's 5x5 kernel, no temporal extent
])
def test_pooled_input_grad_equals_the_summed_autograd_gradient(cin, cout, k, kt, stride, tp):
    from vidviz.explain.cam import pooled_input_grad
    from vidviz.models.resnet3d import TemporalConv3d

    torch.manual_seed(0)
    conv = TemporalConv3d(cin, cout, k, kt, stride, tp).double()
    x = torch.randn(1, cin, 5, 9, 9, dtype=torch.float64, requires_grad=True)
    y = conv(x)  # (1, cout, 5, H', W')
    g = torch.randn(3, *y.shape[1:], dtype=torch.float64)  # (3, cout, 5, H', W'): three cotangents
    ref = torch.stack([torch.autograd.grad(y, x, gi[None], retain_graph=True)[0][0].flatten(1).sum(-1) for gi in g])
    got = pooled_input_grad(conv, g, tuple(x.shape[2:]))  # (3, cin)
    assert got.shape == (3, cin)
    assert_rel_close(got.detach(), ref, rel=1e-10)


def bottleneck_model(tp: str) -> VideoClassifier:
    from vidviz.models.resnet3d import ResNet3dConfig, build_resnet3d

    torch.manual_seed(7)
    cfg = ResNet3dConfig(block="bottleneck", layers=[1, 2, 1, 1], widths=[4, 8, 8, 16], strides=[1, 2, 2, 1],
                         stem_channels=8, stem_kernel=3, temporal_padding=tp)
    spec = InputSpec(num_frames=6, fps=4.0, size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    return randomise_batchnorm(build_resnet3d(cfg, [f"c{i}" for i in range(9)], spec, "test_bottleneck"))


@pytest.mark.parametrize("model", ["tiny-replicate", "bottleneck-zeros", "bottleneck-replicate", "r2plus1d_18",
                                   pytest.param("r3d_18", marks=pytest.mark.slow),
                                   pytest.param("mc3_18", marks=pytest.mark.slow)])
def test_pooled_gradcam_equals_the_full_gradient_maps(model):
    """The closed-form pooling at the next block's entry gives the maps of the full backward, at every layer:
    vidviz's ResNets, and torchvision's video ResNets (3D, mixed and (2+1)D convolutions) behind the adapter."""
    from vidviz.explain.cam import _entry_split

    if model == "tiny-replicate":
        m, x = random_model(8, temporal_padding="replicate"), clip_tensor(8, t=8, s=64)
    elif model.startswith("bottleneck"):
        m, x = bottleneck_model(model.split("-")[1]), clip_tensor(9, t=6, s=32)
    else:
        m, x = torchvision_model(model), clip_tensor(9, t=8, s=32)
    m, x = m.double(), x.double()  # float64: the two paths must agree to rounding, not to float32's 1e-5
    for layer in m.layer_names[:-1]:
        assert _entry_split(m, layer) is not None, layer  # the pooled path is the one under test
        logits, fast = autograd_cams(m, x, layer, [0, 4, 6], "gradcam")
        logits_full, full = autograd_cams(m, x, layer, [0, 4, 6], "gradcam", full_gradients=True)
        assert float(full.abs().max()) > 0, layer
        assert_rel_close(fast, full, rel=1e-9)
        assert torch.allclose(logits, logits_full)
    assert _entry_split(m, m.last_layer) is None


@pytest.mark.slow
def test_allocator_tuning_applies_once_and_can_be_turned_off():
    import os
    import subprocess
    import sys

    code = "from vidviz import runtime; print(runtime.tune_allocator(), runtime.tune_allocator())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    env = {**os.environ, "VIDVIZ_MALLOC_TUNING": "0"}
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert on.stdout.split() == ["True", "True"]  # glibc Linux, as on every machine this project runs on
    assert off.stdout.split() == ["False", "False"]


def test_signed_overlay_is_red_for_a_positive_difference_and_blue_for_a_negative_one():
    frames = np.full((2, 8, 8, 3), 100, np.uint8)
    diff = np.zeros((2, 8, 8), np.float32)
    diff[0, :4] = 1.0  # more evidence for A in the top half of frame 1
    diff[1, 4:] = -1.0  # more for B in the bottom half of frame 2
    out = render.signed_overlay(frames, diff, alpha=0.5)
    assert out[0, 1, 1].tolist() == [178, 50, 50]  # 100 * 0.5 + 255 * 0.5 in red, 100 * 0.5 elsewhere
    assert out[1, 6, 6].tolist() == [50, 50, 178]
    assert out[0, 6, 6].tolist() == [100, 100, 100] and out[1, 1, 1].tolist() == [100, 100, 100]  # zero: untouched
    reddish = np.zeros((1, 8, 8, 3), np.uint8)
    reddish[..., 0] = 200
    shown = render.signed_overlay(reddish, np.full((1, 8, 8), 0.25, np.float32))  # a weak difference for A
    assert int(shown[0, 0, 0, 0]) - int(shown[0, 0, 0, 1]) > 60  # still plainly red over a red scene (frames shown in grey)
    assert render.signed_overlay(reddish, np.zeros((1, 8, 8), np.float32))[0, 0, 0].tolist() == [60, 60, 60]


def test_draw_boxes_maps_source_pixels_into_the_crop():
    from vidviz.data.datasets import Box

    frames = np.zeros((1, 20, 20, 3), np.uint8)
    boxes = [[Box("object", "red cube", (14.0, 4.0, 24.0, 14.0)), Box("hand", "hand", (4.0, 4.0, 8.0, 8.0)),
              Box("distractor", "ball", (0.0, 0.0, 30.0, 30.0))]]
    out = render.draw_boxes(frames, boxes, 1.0, (4, 2))  # the crop starts at source x=4, y=2
    assert out[0, 2, 10].tolist() == [255, 255, 255]  # object's top edge: y 4-2, x 14-4 .. 24-4
    assert out[0, 12, 15].tolist() == [255, 255, 255] and out[0, 8, 10].tolist() == [255, 255, 255]  # bottom, left
    assert out[0, 2, 0].tolist() == [255, 220, 0]  # the hand's top-left corner, yellow
    assert out[0, 8, 15].tolist() == [0, 0, 0]  # inside the object box: not filled; distractors not drawn
    assert frames.sum() == 0  # the input is not drawn on


@pytest.mark.parametrize("k", [40, 174])  # the seed's subset, the whole of Something-Something v2
def test_the_confusion_table_keeps_full_names_at_40_and_174_classes(k):
    rng = np.random.default_rng(k)
    conf = rng.integers(0, 4, (k, k))
    conf[np.arange(k), np.arange(k)] = 30
    names = [f"Pretending to put [something] next to [something] #{i}" for i in range(k)]
    styler = render.confusion_table(conf, names)
    df = styler.data
    assert list(df.index) == [f"{i}: {n}" for i, n in enumerate(names)]  # full names down the side
    assert list(df.columns) == [str(j) for j in range(k)]  # narrow index headers across (names on hover)
    assert (df.to_numpy() == conf).all()
    import re

    css = styler.to_html().split("</style>")[0]
    darkest = re.search(r"([^{}]+)\{[^}]*rgba\(200, 30, 30, 0\.93\)", css).group(1)
    cells = set(re.findall(r"row(\d+)_col(\d+)", darkest))
    assert cells == {(str(i), str(i)) for i in range(k)}  # the diagonal, and only it, in the darkest shade
