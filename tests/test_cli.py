"""The `vidviz` command's happy paths, run in-process through ``vidviz.cli.main`` (the same parser and code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import moving_square_frames, one_line_error, random_model

from vidviz.backend import Backend
from vidviz.cli import main, resolve_class
from vidviz.data.datasets import open_dataset
from vidviz.data.video import write_video
from vidviz.errors import UsageError, VidvizError
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


@pytest.mark.slow  # two 130 MB checkpoints; the fast loop loads torchvision weights in test_models
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


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written

@pytest.mark.parametrize("argv", [
    ["train", "--out", "x.pt", "--epochs", "0"],
    ["train", "--out", "x.pt", "--batch-size", "0"],
    ["precompute", "--part-size", "0"],
    ["precompute", "--k", "0"],
    ["precompute", "--batch-size", "0"],
    ["quality", "--max-clips", "0"],
])
def test_counts_below_one_are_refused_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_training_where_no_clip_decodes_writes_nothing_and_exits_2(tiny_ds, tmp_path, capsys):
    import shutil

    data = tmp_path / "ds"
    shutil.copytree(tiny_ds, data)
    for rec in open_dataset(data).split("train"):
        rec.path.write_bytes(b"not a video")
    out = tmp_path / "m.pt"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--workers", "0"]) == 2
    err = one_line_error(capsys)
    assert "no clip of the train split could be decoded" in err and str(data) in err
    assert not out.exists() and not (tmp_path / "m.resume.pt").exists()


def test_a_corrupt_resume_state_is_a_plain_error(tiny_ds, tmp_path, capsys):
    out = tmp_path / "m.pt"
    (tmp_path / "m.resume.pt").write_bytes(b"\x00garbage")
    assert main(["train", "--data", str(tiny_ds), "--out", str(out), "--epochs", "1", "--workers", "0",
                 "--resume"]) == 2
    assert str(tmp_path / "m.resume.pt") in one_line_error(capsys)


@pytest.mark.parametrize("device,words", [("bogus", "unknown device 'bogus'"), ("cuda", "no usable CUDA device")])
def test_an_unusable_device_is_a_plain_error(ckpt, tiny_ds, device, words, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    clip = open_dataset(tiny_ds).split("train")[0].id
    assert main(["explain", clip, "--data", str(tiny_ds), "--checkpoint", str(ckpt), "--device", device]) == 2
    assert words in one_line_error(capsys)


def test_an_output_folder_that_cannot_be_made_is_a_plain_error(ckpt, tiny_ds, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    clip = open_dataset(tiny_ds).split("train")[0].id
    assert main(["explain", clip, "--data", str(tiny_ds), "--checkpoint", str(ckpt), "--out", str(blocker / "sub")]) == 2
    assert str(blocker) in one_line_error(capsys)


def test_a_checkpoint_with_an_impossible_input_spec_names_the_file(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "m.pt", random_model(1))
    obj = torch.load(path, weights_only=True)
    obj["input_spec"]["size"] = 0
    torch.save(obj, path)
    with pytest.raises(Exception) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path}: malformed input_spec") and "size 0" in str(e.value)


def test_explain_names_a_missing_file_or_a_folder(ckpt, tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope.mp4"), "--checkpoint", str(ckpt)]) == 2
    assert one_line_error(capsys) == f"vidviz: error: {tmp_path / 'nope.mp4'}: file not found"
    assert main(["explain", str(tmp_path), "--checkpoint", str(ckpt)]) == 2
    assert "is a folder, not a video file" in one_line_error(capsys)


def test_quality_on_a_split_without_labels_is_a_plain_error(ckpt, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", moving_square_frames(30), 12.0)
    assert main(["quality", "--data", str(folder), "--checkpoint", str(ckpt), "--split", "all"]) == 2
    assert "has no labelled clip to score" in one_line_error(capsys)


def test_a_rejected_upload_is_not_kept(ckpt):
    b = Backend(ckpt, None)
    with pytest.raises(Exception, match="clip.mp4"):
        b.register_upload("clip.mp4", b"\x00" * 2048)
    folder = b._upload_dir
    assert folder is not None and list(folder.iterdir()) == []
    del b
    import gc

    gc.collect()
    assert not folder.exists()  # the upload folder goes with its backend


def test_a_text_file_given_as_checkpoint_is_named_as_such(tiny_ds, tmp_path, capsys):
    text = tmp_path / "model.pth"
    text.write_text("these are not weights\n")
    clip = open_dataset(tiny_ds).split("train")[0].id
    assert main(["explain", clip, "--data", str(tiny_ds), "--checkpoint", str(text)]) == 2
    assert one_line_error(capsys) == f"vidviz: error: {text}: a text file, not a PyTorch checkpoint"


def test_written_files_follow_the_umask(tmp_path):
    import os
    import stat

    from vidviz.data.io import atomic_write_bytes

    atomic_write_bytes(tmp_path / "f.bin", b"x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_an_upload_pushed_out_of_the_cache_is_deleted_and_uploads_share_one_folder(ckpt, tmp_path):
    from vidviz.backend import upload_root

    videos = []
    for i in range(3):
        p = write_video(tmp_path / f"v{i}.avi", moving_square_frames(20, h=64, w=64) // (i + 1), 12.0)
        videos.append(p.read_bytes())
    b = Backend(ckpt, None, cache_mb=1)  # one opened clip (about 1.7 MB) fills the cache
    keys = [b.register_upload(f"v{i}.avi", data) for i, data in enumerate(videos)]
    assert len(set(keys)) == 3
    files = sorted(b._upload_dir.iterdir())
    assert [f.name.split(".")[0] for f in files] == [keys[2].split(":")[1]]  # only the clip still cached is kept
    assert b._upload_dir.parent == upload_root()  # one folder per process for every backend's uploads
    with pytest.raises(VidvizError, match="upload the file again"):
        b.open(keys[0])
    assert b.register_upload("v0.avi", videos[0]) == keys[0]  # uploaded again, it is back
    b2 = Backend(ckpt, None)
    b2.register_upload("v1.avi", videos[1])
    assert b2._upload_dir.parent == upload_root() and b2._upload_dir != b._upload_dir


@pytest.mark.slow  # new processes
def test_the_upload_folder_goes_when_the_process_ends(ckpt, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    p = write_video(tmp_path / "v.avi", moving_square_frames(20, h=64, w=64), 12.0)
    code = ("import sys; from vidviz.backend import Backend, upload_root; "
            f"b = Backend({str(ckpt)!r}, None); b.register_upload('v.avi', open({str(p)!r}, 'rb').read()); "
            "print(upload_root()); sys.stdout.flush()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    folder = Path(r.stdout.strip().splitlines()[-1])
    assert folder.name.startswith("vidviz-uploads-") and not folder.exists()


def test_a_bug_exits_1_with_its_traceback_in_a_log_file(monkeypatch, capsys, tmp_path):
    import re
    import tempfile

    import vidviz.cli as cli

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("VIDVIZ_DEBUG", raising=False)

    def broken(a):
        raise RuntimeError("an impossible state")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "evaluate", broken))
    assert main(["evaluate"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vidviz: internal error: RuntimeError: an impossible state")
    log = re.search(r"the traceback is in (\S+)\)", err).group(1)
    assert log.startswith(str(tmp_path)) and "Traceback" in open(log).read() and "broken" in open(log).read()


def _with_func(parser, command: str, func):
    for action in parser._subparsers._group_actions:
        action.choices[command].set_defaults(func=func)
    return parser


def test_evaluate_counts_the_clips_it_could_not_decode_and_refuses_when_none_decodes(tiny_ds, ckpt, tmp_path, capsys):
    import shutil

    folder = tmp_path / "ds"
    shutil.copytree(tiny_ds, folder)
    recs = open_dataset(folder).split("train")
    recs[0].path.write_bytes(b"not a video")
    assert main(["evaluate", "--data", str(folder), "--checkpoint", str(ckpt), "--split", "train",
                 "--workers", "0"]) == 0
    out = capsys.readouterr()
    assert f"{len(recs) - 1} clips, top-1" in out.out
    assert f"1 clip(s) could not be decoded and are not counted: {recs[0].id}:" in out.err
    for r in recs[1:]:
        r.path.write_bytes(b"not a video")
    assert main(["evaluate", "--data", str(folder), "--checkpoint", str(ckpt), "--split", "train",
                 "--workers", "0"]) == 2
    assert "no clip of split 'train' could be evaluated" in capsys.readouterr().err


@pytest.mark.slow
def test_explain_works_for_every_method(tiny_ds, ckpt, tmp_path, capsys):
    from vidviz.explain.methods import METHOD_INFO, METHODS

    clip = open_dataset(tiny_ds).split("train")[1]
    b = Backend(ckpt, tiny_ds)
    for method in METHODS:
        out = tmp_path / method
        assert main(["explain", clip.id, "--data", str(tiny_ds), "--checkpoint", str(ckpt), "--class", "0",
                     "--method", method, "--out", str(out)]) == 0, method
        where = "input" if METHOD_INFO[method].input_level else "layer4"
        assert f"explained class 0 ({b.classes[0]}) with {method} at {where}" in capsys.readouterr().out
        maps = np.load(next(out.glob("*_maps.npy")))
        shape = (16, 28, 28) if where == "input" else (16, 7, 7)  # input: 4x4-pixel cells of the 112-pixel input
        assert maps.shape == shape and np.isfinite(maps).all() and maps.max() > 0, method
        assert np.allclose(maps, b.explain(clip.id, [0], method, "layer4").map_for(0), rtol=1e-4, atol=1e-7), method
        x = np.load(next(out.glob("*_input.npy")))  # the exact tensor the model received
        assert x.shape == (1, 3, 16, 112, 112) and np.array_equal(x, b.open(clip.id).x.numpy())


def test_an_unknown_method_is_one_line(tiny_ds, ckpt, capsys):
    clip = open_dataset(tiny_ds).split("train")[1]
    with pytest.raises(SystemExit) as e:
        main(["explain", clip.id, "--data", str(tiny_ds), "--checkpoint", str(ckpt), "--method", "magic-cam"])
    assert e.value.code == 2 and "invalid choice: 'magic-cam'" in capsys.readouterr().err
