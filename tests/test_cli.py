"""The `vidviz` command's happy paths, run in-process through ``vidviz.cli.main`` (the same parser and code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import moving_square_frames, random_model

from vidviz.backend import Backend
from vidviz.cli import main, resolve_class
from vidviz.data.datasets import open_dataset
from vidviz.data.video import write_video
from vidviz.errors import UsageError
from vidviz.models import load_checkpoint, save_checkpoint

CLASSES = ["Pushing [something] from left to right", "Pushing [something] from right to left", "Holding [something]"]


def test_resolve_class_by_index_name_template_and_unique_part():
    assert resolve_class("2", CLASSES) == 2
    assert resolve_class("holding [something]", CLASSES) == 2  # case-insensitive
    assert resolve_class("Holding something", CLASSES) == 2  # brackets optional
    assert resolve_class("right to left", CLASSES) == 1  # a unique part
    with pytest.raises(UsageError, match="out of range"):
        resolve_class("3", CLASSES)
    with pytest.raises(UsageError, match="2 partial matches"):
        resolve_class("Pushing", CLASSES)
    with pytest.raises(UsageError, match="no class named 'Lifting'"):
        resolve_class("Lifting", CLASSES)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", random_model(3))


def test_explain_a_dataset_clip_writes_what_the_backend_computes(tiny_ds, ckpt, tmp_path, capsys):
    clip = open_dataset(tiny_ds).split("train")[0]
    out = tmp_path / "out"
    code = main(["explain", clip.id, "--data", str(tiny_ds), "--checkpoint", str(ckpt), "--class", "Holding something",
                 "--layer", "layer2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"True label: {clip.template}" in printed
    b = Backend(ckpt, tiny_ds)
    cls = b.classes.index("Holding [something]")
    assert f"explained class {cls} (Holding [something]) with gradcam at layer2" in printed
    stem = f"{clip.id}_{cls}_gradcam_layer2"
    maps = np.load(out / f"{stem}_maps.npy")
    assert maps.shape == (16, 14, 14)  # layer2 of the tiny model: T' = 16, 14x14 cells
    assert np.allclose(maps, b.explain(clip.id, [cls], "gradcam", "layer2").map_for(cls), rtol=1e-5, atol=1e-7)
    assert (out / f"{stem}_grid.png").stat().st_size > 1000 and (out / f"{stem}_overlay.webm").stat().st_size > 1000
    top = b.open(clip.id).top
    assert f"1. {b.classes[top[0][0]]}: {top[0][1]:.2f}" in printed


def test_explain_a_video_file_reads_it_in_place(ckpt, tmp_path, capsys):
    video = tmp_path / "mine.mp4"
    write_video(video, moving_square_frames(40), 12.0)
    out = tmp_path / "out"
    assert main(["explain", str(video), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    maps = sorted(out.glob("mine_*_gradcam_layer4_maps.npy"))
    assert len(maps) == 1 and np.load(maps[0]).shape == (16, 7, 7)
    assert "True label" not in printed  # a file has no label
    cls = int(maps[0].name.split("_")[1])
    b = Backend(ckpt, None)
    assert b.open(b.register_file(video)).top[0][0] == cls  # the default target: the top prediction


def test_import_weights_wraps_a_torchvision_state_dict(tmp_path, capsys):
    from torchvision.models.video import r3d_18

    torch.manual_seed(0)
    net = r3d_18(weights=None).eval()
    weights = tmp_path / "r3d_18.pth"
    torch.save(net.state_dict(), weights)
    out = tmp_path / "r3d.pt"
    assert main(["import-weights", "--arch", "r3d_18", "--weights", str(weights), "--out", str(out)]) == 0
    assert f"wrote {out}: r3d_18, 400 classes (Kinetics-400)" in capsys.readouterr().out
    m = load_checkpoint(out)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), net(x), atol=1e-5)  # the wrapped model computes what torchvision's does
    assert m.classes[0] == "abseiling" and len(m.classes) == 400


def test_import_weights_of_another_architecture_names_the_file(tmp_path, capsys):
    from torchvision.models.video import mc3_18

    weights = tmp_path / "mc3.pth"
    torch.save(mc3_18(weights=None).state_dict(), weights)
    assert main(["import-weights", "--arch", "r2plus1d_18", "--weights", str(weights), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vidviz: error: {weights}:") and "do not match the model" in err and "\n" not in err
    assert not (tmp_path / "x.pt").exists()
