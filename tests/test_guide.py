"""Evidence guidance (``vidviz train --guide``): the masks, their augmentation, the loss, the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from support import one_line_error

from vidviz.cli import main
from vidviz.data import synth
from vidviz.data.datasets import open_dataset
from vidviz.data.video import Geometry, load_clip
from vidviz.models.guide import action_frames, evidence_mask, frame_pointing, guide_loss, inside_share
from vidviz.models.resnet3d import TINY_SPEC
from vidviz.models.train import augment, flip_partners
from vidviz.models.weights import torch_load


def test_evidence_masks_cover_the_rendered_object_on_every_frame(tiny_ds):
    """Boxes go through the sampling, the square crop and the resize: the object's rendered pixels (re-rendered
    with their masks) lie inside the mask on every sampled frame; the action's frames are those of its window."""
    ds = open_dataset(tiny_ds)
    plan = {cid: (i, label) for i, (cid, label, _) in enumerate(synth.plan(48, seed=5))}
    checked = 0
    for rec in ds.split("train")[:12]:
        index, label = plan[rec.id]
        clip = load_clip(rec.path, TINY_SPEC)
        geo = Geometry(clip.indices, clip.crop, clip.scale, clip.frames.shape[1])
        size = 64  # a resize, so that the scale is exercised
        mask = evidence_mask(ds.boxes[rec.id], geo, size)  # (T, size, size)
        rendered = synth.render_clip(label, 5, index, with_masks=True).masks  # (N, H, W) source frames
        a0, a1 = ds.windows[rec.id]
        assert action_frames((a0, a1), geo).tolist() == [a0 <= i <= a1 for i in clip.indices]
        assert action_frames(None, geo).all()
        x0, y0, side = clip.crop
        for j, src in enumerate(clip.indices):
            obj = rendered[min(src, len(rendered) - 1)][y0:y0 + side, x0:x0 + side]  # (side, side)
            ys, xs = np.nonzero(obj)
            if len(ys) == 0:  # the object is hidden (covered) or out of the crop on this frame
                continue
            yy = np.minimum((ys * size / side).astype(int), size - 1)
            xx = np.minimum((xs * size / side).astype(int), size - 1)
            assert mask[j][yy, xx].mean() > 0.99, f"clip {rec.id}, frame {src}: the object lies outside its mask"
            assert mask[j].mean() < 0.5  # a box, not the frame
            checked += 1
    assert checked > 50


def test_augment_crops_and_flips_the_masks_with_the_frames():
    """A bright square in the left part of every frame, and its mask: after random crops and left/right flips the
    mask's cells sit where the square went (centre of mass within half a cell), flipped or not."""
    b, t, s0 = 16, 4, 128
    frames = torch.full((b, t, s0, s0, 3), 40, dtype=torch.uint8)
    masks = torch.zeros(b, t, s0, s0, dtype=torch.uint8)
    frames[:, :, 40:80, 10:50] = 220
    masks[:, :, 40:80, 10:50] = 1
    partners = torch.from_numpy(flip_partners(list(synth.TEMPLATES)))
    left_right = list(synth.TEMPLATES).index("Pushing [something] from left to right")
    labels = torch.full((b,), left_right)
    x, y, cells = augment(frames, labels, TINY_SPEC, partners, torch.Generator().manual_seed(0), masks, (7, 7))
    assert x.shape == (b, 3, t, 112, 112) and cells.shape == (b, t, 7, 7)
    flipped = y != left_right
    assert 0 < int(flipped.sum()) < b  # both cases happen
    grid = torch.arange(7, dtype=torch.float32) + 0.5
    for i in range(b):
        square = (x[i, 0] > x[i, 0].mean()).float()  # (T, S, S): brightness and contrast keep it the brightest
        img_cx = float((square.sum((0, 1)) * (torch.arange(112) + 0.5)).sum() / square.sum()) / 16  # in cells
        cell_cx = float((cells[i].sum((0, 1)) * grid).sum() / cells[i].sum())
        assert abs(img_cx - cell_cx) < 0.5, (i, img_cx, cell_cx)
        assert (img_cx > 3.5) == bool(flipped[i])  # a flip moves the square to the right half


def _features_for(cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (1, 2, T, h, w) and weights (1, 2) whose class evidence is exactly ``cam`` (T, h, w)."""
    a = torch.stack([cam.clamp_min(0), (-cam).clamp_min(0)])[None]  # (1, 2, T, h, w), non-negative like ReLU output
    return a, torch.tensor([[1.0, -1.0]])


def test_guide_loss_known_answers():
    import math

    m = torch.zeros(1, 2, 3, 3)
    m[0, :, 0, 0] = 1.0  # the box: the top-left cell of both frames
    action = torch.tensor([[True, False]])  # the action's window holds frame 0 only
    cam_of = lambda a, w: torch.einsum("bcthw,bc->bthw", a, w)  # noqa: E731
    point = lambda box, rest: -math.log(math.exp(box) / (math.exp(box) + 8 * math.exp(rest)))  # noqa: E731

    good = torch.full((2, 3, 3), -1.0)
    good[0, 0, 0], good[1, 0, 0] = 8.0, 1.0  # the peaks in the box, the evidence mostly on the action's frame
    a, w = _features_for(good)
    expected = 1 / 9 + 0.5 * (point(8, -1) + point(1, -1)) / 2 + 0.0  # energy outside: 1 of 9; peaks >= 1
    assert float(guide_loss(a, w, m, action)) == pytest.approx(expected, rel=1e-4)
    assert float(inside_share(cam_of(a, w), m)) == pytest.approx(1.0)

    bad = torch.full((2, 3, 3), 1.0)
    bad[:, 0, 0] = -1.0  # all positive evidence and the peaks outside the box
    a, w = _features_for(bad)
    expected = 1.0 + 0.5 * point(-1, 1) + (1 - (-1))
    assert float(guide_loss(a, w, m, action)) == pytest.approx(expected, rel=1e-4)
    hit, framed = frame_pointing(cam_of(a, w), m)
    assert framed.all() and not hit.any()

    negative = bad - 5.0  # no positive evidence anywhere: the energy term is 0, the other two are not
    a, w = _features_for(negative)
    assert float(guide_loss(a, w, m, action)) == pytest.approx(0.5 * point(-6, -4) + (1 - (-6)), rel=1e-4)
    # no frame of the action sampled: only the peak terms count
    a, w = _features_for(good)
    assert float(guide_loss(a, w, m, torch.zeros_like(action))) == pytest.approx(
        0.5 * (point(8, -1) + point(1, -1)) / 2, rel=1e-4)

    a = a.clone().requires_grad_(True)
    loss = guide_loss(a, w, torch.zeros_like(m), action)  # no box: nothing to learn, and still part of the graph
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) == 0.0


@pytest.mark.slow
def test_guided_training_writes_its_setting_and_bad_settings_exit_2(tiny_ds, tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(["train", "--data", str(tiny_ds), "--out", str(out), "--epochs", "1", "--guide", "1",
                 "--workers", "0", "--max-steps", "2"]) == 0
    assert torch_load(out)["training"]["guide"] == 1.0
    capsys.readouterr()
    assert main(["train", "--data", str(tiny_ds), "--out", str(tmp_path / "n.pt"), "--guide", "-1", "--workers", "0"]) == 2
    assert "--guide must be 0 or more" in one_line_error(capsys)
    no_boxes = tmp_path / "ds"
    shutil.copytree(tiny_ds, no_boxes)
    (no_boxes / synth.BOX_FILE).unlink()
    assert main(["train", "--data", str(no_boxes), "--out", str(tmp_path / "b.pt"), "--guide", "1", "--workers", "0"]) == 2
    err = one_line_error(capsys)
    assert str(no_boxes) in err and "--guide needs per-frame boxes" in err
    assert not (tmp_path / "b.pt").exists()
