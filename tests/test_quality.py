"""Saliency-quality metrics with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import BoxMotionModel, box_motion_clip, frame_reader_model, random_model

from vidviz.explain import metrics as q
from vidviz.explain.cam import explain


def test_map_on_the_box_scores_one():
    maps = np.zeros((3, 20, 20), np.float32)
    box = (4, 5, 10, 12)
    maps[:, 5:12, 4:10] = 1.0
    maps[:, 8, 6] = 2.0
    hits, rate = q.pointing_game(maps, [box, box, None])
    assert rate == 1.0 and np.isnan(hits[2])
    share, mean = q.energy_in_box(maps, [box, box, box])
    assert mean == pytest.approx(1.0)


def test_uniform_map_scores_the_box_area_share():
    maps = np.ones((2, 20, 20), np.float32)
    box = (0, 0, 10, 5)  # 50 of 400 pixels
    _, mean = q.energy_in_box(maps, [box, box])
    assert mean == pytest.approx(50 / 400)
    off = np.zeros((1, 20, 20), np.float32)
    off[0, 15, 15] = 1
    assert q.pointing_game(off, [box])[1] == 0.0


def test_several_boxes_count_as_their_union():
    maps = np.ones((2, 20, 20), np.float32)
    obj, hand = (0, 0, 10, 5), (0, 10, 20, 15)  # 50 and 100 of 400 pixels
    maps[0, 12, 15] = 3.0  # the peak of frame 0 in the hand's box
    maps[1, 18, 18] = 3.0  # the peak of frame 1 in neither
    hits, rate = q.pointing_game(maps, [[obj, hand], [obj, hand]])
    assert hits.tolist() == [1.0, 0.0] and q.pointing_game(maps, [obj, obj])[1] == 0.0
    uniform = np.ones((1, 20, 20), np.float32)
    assert q.energy_in_box(uniform, [[obj, hand]])[1] == pytest.approx(150 / 400)
    assert q.energy_in_box(uniform, [[obj, obj]])[1] == pytest.approx(50 / 400)  # overlapping boxes count once


def test_temporal_localisation():
    curve = np.array([0.0, 0.1, 0.5, 0.3, 0.1, 0.0])
    share, peak = q.temporal_localisation(curve, (2, 3))
    assert share == pytest.approx(0.8) and peak == 1.0
    assert q.temporal_localisation(curve, (4, 5)) == (pytest.approx(0.1), 0.0)


@torch.no_grad()
def test_deletion_and_insertion_tell_the_right_map_from_a_random_one_on_a_known_model():
    """A model whose only evidence is the motion inside a known box: the map of that box deletes the class
    faster and restores it sooner than a random map, by a wide margin, with the default baseline."""
    box = (8, 8, 24, 24)
    m = BoxMotionModel(box)
    x = box_motion_clip(box, t=8, s=32)
    assert float(torch.softmax(m(x), 1)[0, 0]) > 0.85 > 0.15 > float(torch.softmax(m(torch.zeros_like(x)), 1)[0, 0])
    still = x[:, :, :1].expand_as(x)  # the same scene without its motion: the evidence is the motion
    assert float(torch.softmax(m(still), 1)[0, 0]) < 0.15
    right = np.zeros((8, 32, 32), np.float32)
    right[:, 8:24, 8:24] = 1.0
    good = q.deletion_insertion(m, x, right, 0)
    rand = q.deletion_insertion(m, x, q.random_map((8, 32, 32), seed=1), 0)
    assert good["deletion"] < rand["deletion"] - 0.15
    assert good["insertion"] > rand["insertion"] + 0.3
    with pytest.raises(ValueError, match="baseline must be"):
        q.deletion_insertion(m, x, right, 0, baseline="noise")


@torch.no_grad()
def test_framewise_deletion_drops_at_the_frame_the_model_reads():
    m = frame_reader_model(3)
    m.stages["only"].conv.weight.data.abs_()
    m.stages["only"].conv.bias.data.zero_()
    m.head.fc.weight.data = torch.tensor([[1.0] * 4, [-1.0] * 4, [0.0] * 4]) * 4
    m.head.fc.bias.data.zero_()
    x = torch.rand(1, 3, 8, 16, 16) + 0.5  # class 0 wins by what frame 3 shows, and by nothing else
    target = 0
    assert float(torch.softmax(m(x), 1)[0, target]) > 0.6
    good = np.zeros((8, 16, 16), np.float32)
    good[3] = 1.0  # saliency on the frame the model reads
    bad = np.zeros((8, 16, 16), np.float32)
    bad[6] = 1.0
    s_good = q.deletion_insertion(m, x, good, target, steps=8, baseline="mean")
    s_bad = q.deletion_insertion(m, x, bad, target, steps=8, baseline="mean")
    assert s_good["deletion_frames"] < s_bad["deletion_frames"]  # removing frame 3 first hurts at once
    assert s_good["deletion"] < s_bad["deletion"]
    assert s_good["insertion"] > s_bad["insertion"]


def test_randomisation_check_flags_an_explainer_that_ignores_the_model():
    m = random_model(9)
    x = torch.randn(1, 3, 16, 112, 112)

    def edge_map(model, clip, target):  # "explains" by the input's edges, whatever the model
        g = clip[0].mean(0)
        return (g.diff(dim=-1).abs()[..., :-1, :] + g.diff(dim=-2).abs()[..., :-1]).numpy()

    def gradcam(model, clip, target):
        return explain(model, clip, [target], "gradcam", "layer3").maps[0]

    edge = q.randomisation_check(m, x, 3, edge_map)
    cam = q.randomisation_check(m, x, 3, gradcam)
    assert [n for n, _ in edge] == ["head", "layer4", "layer3", "layer2", "layer1", "stem"]
    assert q.fails_randomisation(edge) and edge[-1][1] == pytest.approx(1.0)
    assert not q.fails_randomisation(cam)


def test_spearman_and_baselines():
    a = np.arange(10.0)
    assert q.spearman(a, a) == pytest.approx(1.0) and q.spearman(a, -a) == pytest.approx(-1.0)
    c = q.centre_prior((2, 9, 9))
    assert np.unravel_index(np.argmax(c[0]), c[0].shape) == (4, 4)
    frames = np.zeros((3, 10, 10, 3), np.uint8)
    frames[1, 2:4, 2:4] = 255
    mm = q.motion_map(frames)
    assert mm.shape == (3, 10, 10) and mm[1, 3, 3] > mm[1, 8, 8]
    r = q.random_map((2, 4, 4), seed=1)
    assert r.shape == (2, 4, 4) and not np.allclose(r, q.random_map((2, 4, 4), seed=2))
    mean, half, n = q.mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(1.96 * 1.0 / np.sqrt(3))


@pytest.mark.slow
def test_quality_cli_prints_methods_and_baselines(tiny_ds, tmp_path):
    import shutil

    from support import run_cli

    from vidviz.data.datasets import open_dataset
    from vidviz.models import save_checkpoint

    ck = save_checkpoint(tmp_path / "m.pt", random_model(2))
    r = run_cli("quality", "--data", str(tiny_ds), "--checkpoint", str(ck), "--split", "train", "--max-clips", "2",
                "--sanity-clips", "1", "--out", str(tmp_path / "q"))
    assert r.returncode == 0, r.stderr
    for name in ("gradcam", "gradcam++", "random", "centre", "motion", "pointing_object", "deletion"):
        assert name in r.stdout
    import pandas as pd

    s = pd.read_csv(tmp_path / "q" / "quality.csv")
    assert set(s["method"]) >= {"gradcam", "gradcam++", "random", "centre", "motion"}
    assert (tmp_path / "q" / "quality_clips.csv").is_file()
    # the same folder with another checkpoint: refused, saying what differs (it used to mix the two runs)
    other = save_checkpoint(tmp_path / "other.pt", random_model(5))
    r = run_cli("quality", "--data", str(tiny_ds), "--checkpoint", str(other), "--split", "train", "--max-clips", "3",
                "--sanity-clips", "0", "--out", str(tmp_path / "q"))
    assert r.returncode == 2 and "checkpoint_hash" in r.stderr and str(tmp_path / "q") in r.stderr
    assert "delete it to start over" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert s.equals(pd.read_csv(tmp_path / "q" / "quality.csv"))  # nothing of the first run lost
    # a bad clip is counted and named on the command line
    bad = tmp_path / "bad"
    shutil.copytree(tiny_ds, bad)
    first = next(r for r in open_dataset(bad).split("train") if r.label is not None)
    first.path.write_bytes(b"broken")
    r = run_cli("quality", "--data", str(bad), "--checkpoint", str(ck), "--split", "train", "--max-clips", "2",
                "--sanity-clips", "0", "--out", str(tmp_path / "q2"))
    assert r.returncode == 0, r.stderr
    assert f"1 clip(s) could not be scored: {first.id}:" in r.stderr and "quality_failures.csv" in r.stderr


@pytest.mark.slow
def test_quality_resumes_and_records_a_bad_clip_as_an_error_row(tiny_ds, tmp_path, monkeypatch):
    import json
    import shutil

    from vidviz.backend import Backend
    from vidviz.jobs import quality as jq
    from vidviz.models import save_checkpoint

    ds_dir = tmp_path / "ds"
    shutil.copytree(tiny_ds, ds_dir)
    b = Backend(save_checkpoint(tmp_path / "m.pt", random_model(2)), ds_dir)
    recs = [r for r in b.dataset.split("train") if r.label is not None][:3]
    out = tmp_path / "q"
    summary, clips = jq.run_quality(b, "train", out, ["gradcam"], max_clips=2, sanity_clips=0)
    assert sorted(clips["clip"].unique()) == sorted(r.id for r in recs[:2])
    assert set(clips["method"]) == {"gradcam", "random", "centre", "motion"}

    scored = []
    real = jq.score_clip
    monkeypatch.setattr(jq, "score_clip", lambda backend, key, methods: scored.append(key) or real(backend, key, methods))
    recs[2].path.unlink()  # the third clip's video is gone
    summary, clips = jq.run_quality(b, "train", out, ["gradcam"], max_clips=3, sanity_clips=0)
    assert scored == [recs[2].id]  # the two finished clips were not scored again
    assert sorted(clips["clip"].unique()) == sorted(r.id for r in recs[:2])  # the bad clip adds no score
    rows = [json.loads(line) for line in (out / "quality_clips.jsonl").read_text().splitlines()]
    errors = [r for r in rows if r["method"] == "error"]
    assert [r["clip"] for r in errors] == [recs[2].id] and "file not found" in errors[0]["error"]
    n = summary[(summary["method"] == "gradcam") & (summary["metric"] == "energy_object")]["n"].iloc[0]
    assert n == 2


@pytest.mark.slow
def test_quality_finishes_when_the_first_clips_cannot_be_decoded(tiny_ds, tmp_path):
    import shutil

    from vidviz.backend import Backend
    from vidviz.jobs import quality as jq
    from vidviz.models import save_checkpoint

    ds_dir = tmp_path / "ds"
    shutil.copytree(tiny_ds, ds_dir)
    b = Backend(save_checkpoint(tmp_path / "m.pt", random_model(2)), ds_dir)
    recs = [r for r in b.dataset.split("train") if r.label is not None]
    for r in recs[:3]:
        r.path.write_bytes(b"broken")  # the clips the randomisation check used to take
    summary, clips = jq.run_quality(b, "train", tmp_path / "q", ["gradcam"], max_clips=5, sanity_clips=2)
    assert (tmp_path / "q" / "quality.csv").is_file()
    assert sorted(clips["clip"].unique()) == sorted(r.id for r in recs[3:5])
    rho = summary[(summary["metric"] == "randomisation_rho") & (summary["method"] == "gradcam")]
    assert int(rho["n"].iloc[0]) == 2  # the check ran on two clips that decode
    assert [c for c, _ in clips.attrs["failures"]] == [r.id for r in recs[:3]]  # every failure counted
    import pandas as pd

    failed = pd.read_csv(tmp_path / "q" / "quality_failures.csv")
    assert list(failed["clip"].astype(str)) == [r.id for r in recs[:3]] and failed["error"].str.len().min() > 10


@pytest.mark.slow
def test_quality_scores_every_method_and_ranks_them(tiny_ds, tmp_path):
    import pandas as pd
    from support import run_cli

    from vidviz.explain.methods import METHODS
    from vidviz.models import save_checkpoint

    ck = save_checkpoint(tmp_path / "m.pt", random_model(2))
    r = run_cli("quality", "--data", str(tiny_ds), "--checkpoint", str(ck), "--split", "train", "--max-clips", "1",
                "--sanity-clips", "1", "--methods", "all", "--out", str(tmp_path / "q"))
    assert r.returncode == 0, r.stderr
    s = pd.read_csv(tmp_path / "q" / "quality.csv")
    assert set(s["method"]) == {*METHODS, "random", "centre", "motion"}
    assert set(s[s["metric"] == "randomisation_rho"]["method"]) >= set(METHODS)  # the sanity check for every method
    secs = s[s["metric"] == "seconds"].set_index("method")["mean"]
    assert (secs[list(METHODS)] > 0).all() and secs["scorecam"] > secs["gradcam++"]  # 128 masked forwards cost more
    table = r.stdout.split("best first")[0].splitlines()
    ranks = [float(line.split()[1]) for line in table[2:] if line.strip()]
    assert len(ranks) == len(METHODS) + 3 and ranks == sorted(ranks)  # ranked, best first
