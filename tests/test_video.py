"""Real decoding of real encoded files, sampling arithmetic, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import moving_square_frames, write_vp9

from vidviz.data.video import (
    InputSpec,
    centre_square,
    header,
    load_clip,
    probe,
    read_frames,
    sample_indices,
    to_tensor,
    write_video,
)
from vidviz.errors import InputTooLargeError, VideoError


@pytest.mark.parametrize("suffix", [".webm", ".mp4", ".avi"])
def test_decode_counts_frames_and_keeps_order(tmp_path, suffix):
    frames = moving_square_frames(30)
    p = write_video(tmp_path / f"v{suffix}", frames, 12.0)
    info = probe(p)
    assert info.num_frames == 30
    assert (info.height, info.width) == (64, 96)
    assert info.fps == pytest.approx(12.0)
    got = read_frames(p, np.array([0, 10, 29]))
    assert got.shape == (3, 64, 96, 3)
    tags = got[:, 2, 2, 0].astype(int)  # brightness tag i * 8 survives lossy coding within a few levels
    assert np.allclose(tags, [0, 80, 232], atol=12)


def test_decode_vp9_webm(tmp_path):
    frames = moving_square_frames(12)
    p = tmp_path / "v9.webm"
    assert write_vp9(p, frames), "this OpenCV build cannot write VP9"
    assert probe(p).num_frames == 12
    assert read_frames(p, np.array([11])).shape == (1, 64, 96, 3)


def test_jpeg_folder(tmp_path):
    import cv2

    d = tmp_path / "00042"
    d.mkdir()
    for i, f in enumerate(moving_square_frames(20)):
        cv2.imwrite(str(d / f"{i + 1:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    info = probe(d)
    assert info.num_frames == 20 and info.fps == 12.0
    got = read_frames(d, np.array([5, 19]))
    assert np.allclose(got[:, 2, 2, 0].astype(int), [40, 152], atol=10)


def test_sample_indices_rate_centring_and_padding():
    # 16 frames at 4 fps from 12 fps: step 3, span 46; a 60-frame video centres at start 7
    idx = sample_indices(60, 12.0, 16, 4.0)
    assert np.all(np.diff(idx) == 3)
    assert idx[0] == 7 and idx[-1] == 52
    # short video: starts at 0 and repeats the last frame
    idx = sample_indices(20, 12.0, 16, 4.0)
    assert idx[0] == 0 and idx.max() == 19 and list(idx[-5:]) == [19] * 5
    # same rate: consecutive frames, centred
    idx = sample_indices(100, 25.0, 8, 25.0)
    assert list(idx) == list(range(46, 54))


def test_load_clip_crops_square_and_normalises(video_file):
    spec = InputSpec(num_frames=8, fps=4.0, size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    clip = load_clip(video_file, spec)
    assert clip.frames.shape == (8, 64, 64, 3)
    assert clip.crop == (16, 0, 64)
    x = to_tensor(clip.frames, spec)
    assert x.shape == (3, 8, 32, 32)
    raw = torch.from_numpy(clip.frames[0, ::2, ::2, 0].astype(np.float32) / 255)
    assert torch.allclose(x[0, 0], (raw - 0.5) / 0.25, atol=0.6)  # same picture after resize + normalise
    assert float(x.max()) == pytest.approx((1 - 0.5) / 0.25, abs=0.05)


def test_a_video_with_fewer_frames_than_the_model_reads_is_refused_and_a_short_one_is_padded(tmp_path):
    spec = InputSpec(num_frames=16, fps=4.0, size=32)  # a window of 46 frames at 12 fps
    short = write_video(tmp_path / "short.avi", moving_square_frames(10), 12.0)
    with pytest.raises(VideoError) as e:
        load_clip(short, spec)
    assert str(e.value) == f"{short}: too short for the model: 10 frames, and the model reads 16"
    enough = write_video(tmp_path / "enough.avi", moving_square_frames(16), 12.0)
    clip = load_clip(enough, spec)  # 16 frames, fewer than the window: sampled from frame 0, the last repeated
    assert clip.indices.tolist()[:6] == [0, 3, 6, 9, 12, 15] and clip.padded == 10


def test_grayscale_and_odd_sized(tmp_path):
    p = write_video(tmp_path / "g.avi", moving_square_frames(10, h=63, w=81, gray=True), 12.0)
    clip = load_clip(p, InputSpec(num_frames=4, size=16))
    assert clip.frames.shape[1:] == (62, 62, 3)  # even-cropped by the writer, then squared
    sq, crop = centre_square(np.zeros((2, 7, 11, 3), np.uint8))
    assert sq.shape == (2, 7, 7, 3) and crop == (2, 0, 7)


@pytest.mark.parametrize("content,problem", [
    (b"", "empty"),
    (b"this is not a video at all" * 100, "not a readable video"),
    (b"\x1a\x45\xdf\xa3" + b"\x00" * 50, "video"),
])
def test_bad_files_raise_typed_one_line_errors(tmp_path, content, problem):
    p = tmp_path / "bad.webm"
    p.write_bytes(content)
    with pytest.raises(VideoError) as e:
        load_clip(p, InputSpec())
    msg = str(e.value)
    assert str(p) in msg and problem in msg and "\n" not in msg


def test_truncated_video_is_reported_not_padded(tmp_path):
    p = write_video(tmp_path / "t.avi", moving_square_frames(40), 12.0)
    data = p.read_bytes()
    assert probe(p).num_frames == 40 and header(p).num_frames == 40
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # the header still declares 40 frames
    for read in (probe, lambda f: load_clip(f, InputSpec())):
        with pytest.raises(VideoError) as e:
            read(cut)
        assert str(cut) in str(e.value) and "truncated" in str(e.value) and "of the 40 frames" in str(e.value)
    cut2 = tmp_path / "cut2.avi"
    cut2.write_bytes(data[:300])
    with pytest.raises(VideoError):
        probe(cut2)


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe(tmp_path / "nope.mp4")


def test_huge_frames_are_refused(tmp_path, monkeypatch):
    import vidviz.data.video as v

    p = write_video(tmp_path / "big.avi", moving_square_frames(3, h=64, w=96), 12.0)
    monkeypatch.setattr(v, "MAX_FRAME_PIXELS", 1000)
    v._probe_cached.cache_clear()
    with pytest.raises(InputTooLargeError, match="larger than"):
        v.probe(p)


def test_long_videos_are_refused(tmp_path, monkeypatch):
    import vidviz.data.video as v

    p = write_video(tmp_path / "long.avi", moving_square_frames(30), 12.0)
    monkeypatch.setattr(v, "MAX_SOURCE_FRAMES", 20)
    v._probe_cached.cache_clear()
    with pytest.raises(InputTooLargeError, match="more than 20 frames"):
        v.probe(p)


def test_large_frames_are_downsized_as_they_are_read_and_boxes_follow(tmp_path):
    """A 1280x960 video: decoded frames have a shorter side of 480, and a source-pixel box maps onto them."""
    from vidviz.data.video import MAX_DECODE_SIDE

    frames = np.zeros((12, 960, 1280, 3), np.uint8)
    frames[:, 400:560, 700:900] = 255  # a white box at x 700-900, y 400-560 in source pixels
    p = tmp_path / "big.avi"
    write_video(p, frames, 12.0)
    clip = load_clip(p, InputSpec(num_frames=4, fps=6.0, size=112))
    assert clip.frames.shape == (4, MAX_DECODE_SIDE, MAX_DECODE_SIDE, 3) and clip.scale == pytest.approx(0.5)
    x1, y1, x2, y2 = clip.to_display((700, 400, 900, 560))  # (700*0.5 - 80, 400*0.5 - 0, ...): the crop starts at x 80
    assert (x1, y1, x2, y2) == pytest.approx((270, 200, 370, 280))
    f = clip.frames[0].mean(-1)  # (480, 480)
    assert f[int(y1) + 5:int(y2) - 5, int(x1) + 5:int(x2) - 5].min() > 200  # inside the mapped box: white
    assert f[:int(y1) - 5].max() < 60 and f[:, :int(x1) - 5].max() < 60  # outside: black


@pytest.mark.slow  # new processes
def test_decode_caps_are_set_from_the_environment_with_a_clear_message(tmp_path):
    """``VIDVIZ_MAX_FRAMES`` and ``VIDVIZ_MAX_PIXELS``, through the command a user runs (a new process reads them)."""
    from support import run_cli

    p = write_video(tmp_path / "v.avi", moving_square_frames(30, h=64, w=96), 12.0)
    out = tmp_path / "out"
    r = run_cli("explain", str(p), "--out", str(out), env={"VIDVIZ_MAX_FRAMES": "20"})
    assert r.returncode == 2 and "more than 20 frames" in r.stderr and "VIDVIZ_MAX_FRAMES" in r.stderr
    r = run_cli("explain", str(p), "--out", str(out), env={"VIDVIZ_MAX_PIXELS": "5000"})
    assert r.returncode == 2 and "96x64 pixels" in r.stderr and "VIDVIZ_MAX_PIXELS" in r.stderr
    assert str(p) in r.stderr and not out.exists()
    r = run_cli("explain", str(p), "--out", str(out), env={"VIDVIZ_MAX_FRAMES": "many"})
    assert r.returncode == 2 and "VIDVIZ_MAX_FRAMES='many'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("explain", str(p), "--out", str(out), env={"VIDVIZ_MAX_FRAMES": "40"})
    assert r.returncode == 0, r.stderr  # within the cap
