"""Dataset readers on small fixture datasets, the generator, and every bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from support import moving_square_frames, run_cli

from vidviz.data import synth
from vidviz.data.datasets import open_dataset, read_subset
from vidviz.data.video import InputSpec, load_clip, write_video
from vidviz.errors import DatasetError


def make_v2(root, entries, labels=None, videos=True):
    root.mkdir(parents=True, exist_ok=True)
    labels = labels or {"Putting something on a surface": "7", "Dropping something": "2", "Tearing something": "0"}
    (root / "labels.json").write_text(json.dumps(labels))
    (root / "train.json").write_text(json.dumps(entries))
    vd = root / "20bn-something-something-v2"
    vd.mkdir(exist_ok=True)
    if videos:
        for e in entries:
            if isinstance(e, dict) and "id" in e and "/" not in str(e["id"]):
                write_video(vd / f"{e['id']}.webm", moving_square_frames(12), 12.0)
    return root


def test_v2_class_index_is_the_labels_json_id(tmp_path):
    entries = [{"id": "11", "label": "putting a cup on a surface", "template": "Putting [something] on a surface",
                "placeholders": ["a cup"]},
               {"id": "12", "label": "dropping a pen", "template": "Dropping [something]", "placeholders": ["pen"]}]
    ds = open_dataset(make_v2(tmp_path / "v2", entries))
    assert ds.format == "ssv2" and len(ds.records) == 2 and not ds.problems
    r = ds.get("11")
    assert r.label == 7  # as labels.json says, never a re-sort (alphabetical would give 1)
    assert ds.classes[7] == "Putting [something] on a surface"
    assert r.placeholders == ("a cup",) and r.split == "train"
    assert len(ds.classes) == 8


def test_v2_subset_remaps_consistently(tmp_path):
    entries = [{"id": str(i), "label": "x", "template": t, "placeholders": []}
               for i, t in enumerate(["Putting [something] on a surface", "Dropping [something]", "Tearing [something]"])]
    root = make_v2(tmp_path / "v2", entries)
    sub = tmp_path / "subset.txt"
    sub.write_text("# two classes\nTearing [something]\nPutting [something] on a surface\n")
    ds = open_dataset(root, sub)
    assert ds.classes == ["Tearing [something]", "Putting [something] on a surface"]
    assert {r.id: r.label for r in ds.records} == {"0": 1, "2": 0}
    assert read_subset(sub) == ds.classes


def test_v2_bad_entries_are_reported_and_good_ones_load(tmp_path):
    entries = [{"id": "1", "label": "x", "template": "Dropping [something]", "placeholders": []},
               {"id": "../../x", "label": "x", "template": "Dropping [something]", "placeholders": []},
               {"id": "2", "label": "x", "template": "Juggling [something]", "placeholders": []},
               {"label": "no id"},
               {"id": "3", "label": "x", "template": "Dropping [something]", "placeholders": []}]
    root = make_v2(tmp_path / "v2", entries)
    (root / "20bn-something-something-v2" / "3.webm").unlink()  # a split entry whose video is missing
    ds = open_dataset(root)
    assert [r.id for r in ds.records] == ["1"]
    reasons = " | ".join(f"{w}: {why}" for w, why in ds.problems)
    assert "would leave the dataset root" in reasons
    assert "'Juggling [something]' is not a class" in reasons
    assert "no 'id'" in reasons
    assert "video file is missing" in reasons and "3.webm" in reasons


@pytest.mark.parametrize("content,problem", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "expected an object"),
    ('{"Dropping something": "x"}', "non-integer id"),
])
def test_malformed_labels_json(tmp_path, content, problem):
    root = make_v2(tmp_path / "v2", [], videos=False)
    (root / "labels.json").write_text(content)
    with pytest.raises(DatasetError) as e:
        open_dataset(root)
    assert "labels.json" in str(e.value) and problem in str(e.value)


def test_missing_and_malformed_split_files(tmp_path):
    root = make_v2(tmp_path / "v2", [], videos=False)
    (root / "train.json").write_text('{"id": 1}')
    with pytest.raises(DatasetError, match="train.json.*expected a list"):
        open_dataset(root)
    (root / "train.json").unlink()
    with pytest.raises(DatasetError, match="no train.json"):
        open_dataset(root)
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "nowhere")


def test_v1_and_jester_csv_readers(tmp_path):
    for prefix, classes in (("something-something-v1", ["Holding something", "Pushing something"]),
                            ("jester-v1", ["Swiping Left", "Thumb Up"])):
        root = tmp_path / prefix
        frames_dir = root / f"20bn-{prefix}"
        for vid in ("100", "101", "102"):
            d = frames_dir / vid
            d.mkdir(parents=True)
            for i, f in enumerate(moving_square_frames(14)):
                cv2.imwrite(str(d / f"{i + 1:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        (root / f"{prefix}-labels.csv").write_text("\n".join(classes) + "\n")
        (root / f"{prefix}-train.csv").write_text(f"100;{classes[1]}\n101;{classes[0]}\n103;{classes[0]}\n")
        (root / f"{prefix}-validation.csv").write_text("102;Unknown class\n")
        ds = open_dataset(root)
        assert ds.format == ("jester" if "jester" in prefix else "ssv1")
        assert {r.id: r.label for r in ds.records} == {"100": 1, "101": 0}
        assert any("103" in w for w, _ in ds.problems) and any("Unknown class" in why for _, why in ds.problems)
        clip = load_clip(ds.get("100").path, InputSpec(num_frames=4, size=16))
        assert clip.frames.shape == (4, 64, 64, 3)
    (root / f"{prefix}-labels.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="labels.csv"):
        open_dataset(root)


def test_plain_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    write_video(tmp_path / "a.mp4", moving_square_frames(8), 12.0)
    write_video(tmp_path / "sub" / "b.avi", moving_square_frames(8), 12.0)
    (tmp_path / "notes.txt").write_text("not a video")
    ds = open_dataset(tmp_path)
    assert ds.format == "folder" and [r.id for r in ds.records] == ["a", "sub/b"]
    assert all(r.label is None for r in ds.records)


def test_something_else_boxes_attach(tmp_path, tiny_ds):
    ds = open_dataset(tiny_ds)
    rid = ds.records[0].id
    assert rid in ds.boxes and rid in ds.windows
    roles = {b.role for fr in ds.boxes[rid] for b in fr}
    assert "object" in roles
    raw = json.loads((tiny_ds / synth.BOX_FILE).read_text())
    assert raw[rid][0]["name"] == f"{rid}/0001.jpg" and "box2d" in raw[rid][0]["labels"][0]


def test_synth_layout_and_every_clip_decodes(tiny_ds):
    ds = open_dataset(tiny_ds)
    assert ds.format == "ssv2" and not ds.problems
    assert len(ds.records) == 48 and len(ds.classes) == 12
    assert set(ds.classes) == set(synth.TEMPLATES)
    for r in ds.records:
        info = load_clip(r.path, InputSpec()).info
        assert 36 <= info.num_frames <= 60 and info.height >= 128 and info.fps == 12.0
        a0, a1 = ds.windows[r.id]
        assert 0 <= a0 < a1 < info.num_frames
        cats = {b.category for fr in ds.boxes[r.id] for b in fr if b.role == "object" and b.index == 0}
        assert r.placeholders and cats == {r.placeholders[0]}


def test_synth_splits_are_8_1_1():
    plan = synth.plan(1200, seed=0)
    counts = {s: sum(1 for _, _, sp in plan if sp == s) for s in ("train", "validation", "test")}
    assert counts == {"train": 960, "validation": 120, "test": 120}
    labels = [lab for _, lab, _ in plan]
    assert np.bincount(labels).tolist() == [100] * 12


def test_synth_is_deterministic(tmp_path):
    a = synth.render_clip(5, seed=3, index=7)
    b = synth.render_clip(5, seed=3, index=7)
    c = synth.render_clip(5, seed=4, index=7)
    assert np.array_equal(a.frames, b.frames) and a.boxes == b.boxes and a.window == b.window
    assert not np.array_equal(a.frames[:5], c.frames[:5]) or a.frames.shape != c.frames.shape
    synth.generate(tmp_path / "x", 6, seed=9, workers=2)
    synth.generate(tmp_path / "y", 6, seed=9, workers=1)
    for f in ("train.json", "validation.json", "test.json", "labels.json", synth.BOX_FILE, synth.WINDOW_FILE):
        assert (tmp_path / "x" / f).read_bytes() == (tmp_path / "y" / f).read_bytes()


@pytest.mark.parametrize("label", range(12))
def test_boxes_enclose_the_rendered_object(label):
    clip = synth.render_clip(label, seed=11, index=label, with_masks=True)
    checked = 0
    for f, fb in enumerate(clip.boxes):
        mask = clip.masks[f]
        if mask.sum() < 4:
            continue  # the object is hidden (covered) or out of view
        obj = [b for role, cat, b in fb if role == "object" and cat == clip.placeholders[0]]
        assert obj, f"frame {f}: visible object without a box"
        x1, y1, x2, y2 = obj[0]
        ys, xs = np.nonzero(mask)
        assert xs.min() >= x1 - 1 and xs.max() <= x2 + 1 and ys.min() >= y1 - 1 and ys.max() <= y2 + 1
        checked += 1
    assert checked > 10


def test_difficulty_changes_the_rendering():
    easy = synth.render_clip(0, seed=1, index=1, difficulty=0.0)
    hard = synth.render_clip(0, seed=1, index=1, difficulty=2.0)
    assert easy.frames.shape == hard.frames.shape
    assert np.abs(easy.frames.astype(int) - hard.frames.astype(int)).mean() > 1.0


@pytest.mark.slow
def test_cli_synth_and_bad_inputs_exit_2_with_one_line(tmp_path):
    r = run_cli("synth", "--out", str(tmp_path / "s"), "--clips", "3", "--seed", "1")
    assert r.returncode == 0 and "clips/s" in r.stdout
    bad = tmp_path / "bad"
    make_v2(bad, [], videos=False)
    (bad / "labels.json").write_text("{oops")
    r = run_cli("evaluate", "--data", str(bad), "--checkpoint", str(tmp_path / "none.pt"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "labels.json" in lines[0] and "malformed JSON" in lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_explain_rejects_bad_videos_and_escaping_ids(tmp_path, tiny_ds):
    from vidviz.models import i3d_resnet_tiny, save_checkpoint

    ck = save_checkpoint(tmp_path / "m.pt", i3d_resnet_tiny(list(synth.TEMPLATES)))
    for name, data in (("zero.mp4", b""), ("text.mp4", b"hello" * 50), ("x.txt", b"abc")):
        p = tmp_path / name
        p.write_bytes(data)
        r = run_cli("explain", str(p), "--checkpoint", str(ck), "--out", str(tmp_path / "o"))
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and name in r.stderr and "Traceback" not in r.stderr
    r = run_cli("explain", "../../x", "--data", str(tiny_ds), "--checkpoint", str(ck))
    assert r.returncode == 2 and "no clip with id '../../x'" in r.stderr
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_a_clip_listed_twice_is_an_error_naming_both_entries(tmp_path):
    entries = [{"id": "1", "template": "Dropping [something]", "placeholders": []},
               {"id": "2", "template": "Dropping [something]", "placeholders": []},
               {"id": "1", "template": "Tearing [something]", "placeholders": []}]
    root = make_v2(tmp_path / "v2", entries)
    with pytest.raises(DatasetError, match=r"clip id '1' is listed twice: train.json entry 0 and train.json entry 2"):
        open_dataset(root)


def test_a_huge_class_id_is_a_plain_error(tmp_path):
    root = make_v2(tmp_path / "v2", [{"id": "1", "template": "Dropping [something]"}],
                   labels={"Dropping something": "99999999999"})
    with pytest.raises(DatasetError, match="has id 99999999999; class ids must be below"):
        open_dataset(root)  # (it used to allocate a list of that many classes: MemoryError)


def test_an_image_renamed_as_a_video_is_refused(tmp_path):
    img = tmp_path / "still.mp4"
    ok, buf = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))
    img.write_bytes(buf.tobytes())
    r = run_cli("explain", str(img), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and f"{img}: an image file, not a video" in r.stderr


def test_a_dataset_of_an_older_generator_is_not_current(tiny_ds, tmp_path):
    import shutil

    assert synth.is_current(tiny_ds)
    old = tmp_path / "old"
    shutil.copytree(tiny_ds, old, ignore=shutil.ignore_patterns("*.webm"))
    meta = json.loads((old / "synth.json").read_text())
    (old / "synth.json").write_text(json.dumps({**meta, "version": synth.GENERATOR_VERSION - 1}))
    assert not synth.is_current(old)
    (old / "synth.json").write_text("{not json")
    assert not synth.is_current(old)
    assert not synth.is_current(tmp_path / "missing")
