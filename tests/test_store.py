"""Precomputed stores: cases, round trip, resume after a crash, torchrun sharding, staleness."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT, assert_same_store, run_cli

from vidviz import tables
from vidviz.data.datasets import open_dataset
from vidviz.errors import StoreError
from vidviz.jobs import store
from vidviz.jobs.store import assign_cases, open_store, precompute, prediction_table
from vidviz.models import i3d_resnet_tiny, load_checkpoint, save_checkpoint


def test_cases_on_hand_made_logits():
    logits = np.array([
        [5.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0],  # true 0 ranks 1: positive
        [1.0, 5.0, 0.0, -1.0, -2.0, -3.0, -4.0],  # true 0 ranks 2: medium
        [0.0, 5.0, 4.0, 3.0, 2.0, 1.0, -4.0],  # true 0 ranks 6: negative (k=5)
        [0.0, 5.0, 4.0, 3.0, 2.0, -1.0, -4.0],  # true 0 ranks 5: medium
        [0.0, 5.0, 4.0, 3.0, 2.0, -1.0, -4.0],  # unknown label
    ])
    labels = np.array([0, 0, 0, 0, -1])
    cases, rank = assign_cases(logits, labels, k=5)
    assert list(cases) == ["positive", "medium", "negative", "medium", "unlabelled"]
    assert list(rank) == [1, 2, 6, 5, 0]
    cases3, _ = assign_cases(logits, labels, k=3)
    assert list(cases3) == ["positive", "medium", "negative", "negative", "unlabelled"]
    close = np.array([[1.0, 0.9, 0.8, 0.0, 0.0, 0.0, 0.0]])
    assert assign_cases(close, np.array([0]), 5, min_confidence=0.5)[0][0] == "medium"
    assert assign_cases(close, np.array([0]), 5, min_confidence=0.1)[0][0] == "positive"


def test_prediction_table_and_gallery_selection():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 3.0, 2.9], [0.0, 3.0, 1.0]])
    t = prediction_table(["a", "b", "c"], [0, 2, 0], logits, ["x", "y", "z"], k=2)
    assert list(t["case"]) == ["positive", "medium", "negative"]
    assert list(t["pred_name"]) == ["x", "y", "y"] and t["margin"].iloc[1] < 0.05
    assert [c for c, _ in store.topk_of(t.iloc[1], 2)] == [1, 2]
    # no per-row Python objects: a 220k-clip table must stay small in memory
    assert not [c for c in t.columns if t[c].dtype == object], t.dtypes
    assert list(tables.select(t, "negative", "confidence")["id"]) == ["c"]
    assert tables.select(t, "medium", "margin", true_cls=2, pred_cls=1)["id"].tolist() == ["b"]
    assert tables.select(t, "medium", "margin", true_cls=0).empty
    conf = np.array([[5, 3, 0], [1, 4, 0], [0, 7, 2]])
    pairs = tables.confused_pairs(conf, ["x", "y", "z"])
    assert pairs[["true", "predicted", "clips"]].iloc[0].tolist() == ["z", "y", 7]
    assert len(pairs) == 3


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from support import random_model

    return save_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", random_model(7))


def test_store_round_trip(tiny_ds, ckpt, tmp_path):
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    out = precompute(m, ds, "train", tmp_path / "s", part_size=16, workers=0)
    st = open_store(out, m.checkpoint_hash, ds.fingerprint())
    assert len(st.table) == 48 and st.maps.shape == (48, 6, 16, 7, 7) and st.maps.dtype == np.float16
    assert sum(st.counts().values()) == 48
    row = 5
    rid = st.table["id"].iat[row]
    from vidviz.backend import Backend

    b = Backend(ckpt, tiny_ds)
    e = b.explain(rid)
    pred = int(st.table["pred"].iat[row])
    assert pred == e.top[0][0]
    assert np.allclose(st.map_of(row, pred), e.map_for(pred), rtol=2e-3, atol=1e-4)
    lab = int(st.table["label"].iat[row])
    assert np.allclose(st.map_of(row, lab), e.map_for(lab), rtol=2e-3, atol=1e-4)
    assert st.curves.shape == (48, 16) and np.allclose(st.curves.astype(np.float32).sum(1), 1.0, atol=0.02)
    assert st.confusion().sum() == 48


def test_resume_after_a_crash(tiny_ds, ckpt, tmp_path, reference_store):
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    out = tmp_path / "s"
    precompute(m, ds, "train", out, part_size=8, workers=0, max_parts=2)  # "killed" after 2 of 6 parts
    with pytest.raises(StoreError, match="no store here|incomplete"):
        open_store(out)
    (out / "parts" / ".part-00002.json.garbage.tmp").write_text("{half")  # what a kill mid-write leaves
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("part-*.json")}
    assert len(stamps) == 2
    calls = []
    precompute(m, ds, "train", out, part_size=8, workers=0, progress=lambda d, t: calls.append(d))
    assert calls[0] == 16  # two parts were already done
    for name, ns in stamps.items():
        assert (out / "parts" / name).stat().st_mtime_ns == ns  # not redone
    st = open_store(out)
    assert len(st.table) == 48
    assert_same_store(st, reference_store)  # equal to an uninterrupted run


@pytest.mark.slow
def test_torchrun_sharding_equals_single_process(tiny_ds, ckpt, tmp_path):
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    single = open_store(precompute(m, ds, "train", tmp_path / "single", part_size=8, workers=0))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "vidviz.cli", "precompute", "--data", str(tiny_ds), "--checkpoint", str(ckpt),
                        "--split", "train", "--out", str(tmp_path / "ddp"), "--part-size", "8", "--workers", "0",
                        "--device", "cpu"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "ddp" / "parts").glob("part-*.json"))]
    assert len(metas) == 6
    assert_same_store(single, open_store(tmp_path / "ddp"))


def test_stale_store_is_refused(tiny_ds, ckpt, tmp_path, reference_store):
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    out = shutil.copytree(reference_store.path, tmp_path / "s")  # a finished store of this checkpoint and data
    with pytest.raises(StoreError, match="made with checkpoint"):
        open_store(out, "0123456789abcdef", ds.fingerprint())
    with pytest.raises(StoreError, match="different version of the dataset"):
        open_store(out, m.checkpoint_hash, "feedfacefeedface")
    other = save_checkpoint(tmp_path / "other.pt", i3d_resnet_tiny(ds.classes))
    from vidviz.backend import Backend
    from vidviz.jobs.store import open_store_for

    b = Backend(other, tiny_ds)
    assert open_store_for(b, "train", root=tmp_path / "nowhere") is None
    # a store in an older format is refused with the way out, and rebuilt from its finished parts
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(StoreError, match="rerun `vidviz precompute`"):
        open_store(out)
    calls = []
    precompute(m, ds, "train", out, part_size=8, workers=0, progress=lambda d, t: calls.append(d))
    assert calls and calls[0] == len(ds.split("train"))  # every part was kept: none computed again
    assert len(open_store(out).table) == len(ds.split("train"))


@pytest.mark.slow
def test_cli_precompute_prints_counts(tiny_ds, ckpt, tmp_path):
    r = run_cli("precompute", "--data", str(tiny_ds), "--checkpoint", str(ckpt), "--split", "train",
                "--out", str(tmp_path / "s"), "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "48 clips:" in r.stdout and "positive" in r.stdout and "negative" in r.stdout


@pytest.mark.slow
def test_parts_straddling_batches_with_a_corrupt_clip(tiny_ds, ckpt, tmp_path):
    """One decoding pipeline feeds every part: batches of 8 cross parts of 5, and a bad clip lands in one part."""
    import shutil

    root = shutil.copytree(tiny_ds, tmp_path / "ds")
    ds, m = open_dataset(root), load_checkpoint(ckpt)
    recs = ds.split("train")
    bad = recs[12]
    bad.path.write_bytes(bad.path.read_bytes()[:300])  # truncated mid-stream
    out = precompute(m, ds, "train", tmp_path / "s", part_size=5, batch_size=8, workers=2)
    metas = [json.loads(p.read_text()) for p in sorted((out / "parts").glob("part-*.json"))]
    assert len(metas) == 10
    for i, meta in enumerate(metas):
        expect = [r.id for r in recs[i * 5:(i + 1) * 5]]
        assert sorted(meta["ids"] + [f[0] for f in meta["failures"]]) == sorted(expect)
    assert [f[0] for meta in metas for f in meta["failures"]] == [bad.id]
    st = open_store(out)
    assert len(st.table) == len(recs) - 1 and bad.id not in set(st.table["id"])
    assert_same_store(st, open_store(precompute(m, ds, "train", tmp_path / "one", part_size=64, workers=0)))


@pytest.fixture(scope="module")
def reference_store(tiny_ds, ckpt, tmp_path_factory):
    """An uninterrupted run: what every resumed or repaired run must equal."""
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    return open_store(precompute(m, ds, "train", tmp_path_factory.mktemp("ref") / "s", part_size=8, workers=0))


def test_a_rerun_with_other_settings_refuses_and_says_what_differs(tiny_ds, ckpt, tmp_path):
    from support import random_model

    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    out = tmp_path / "s"
    precompute(m, ds, "train", out, part_size=8, workers=0, max_parts=2)
    with pytest.raises(StoreError, match=r"part_size 8 \(asked: 16\).*delete it to start over"):
        precompute(m, ds, "train", out, part_size=16, workers=0)
    other = load_checkpoint(save_checkpoint(tmp_path / "other.pt", random_model(8)))
    with pytest.raises(StoreError, match="checkpoint_hash"):
        precompute(other, ds, "train", out, part_size=8, workers=0)
    assert len(list((out / "parts").glob("part-*.json"))) == 2  # nothing was mixed in
    with pytest.raises(StoreError):
        open_store(out)  # and nothing was marked complete


def _flip_a_byte(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


DAMAGE = {
    "truncated npz": (lambda d: d.joinpath("part-00001.npz").write_bytes(d.joinpath("part-00001.npz").read_bytes()[:100]),
                      "fails its checksum"),
    "empty npz": (lambda d: d.joinpath("part-00001.npz").write_bytes(b""), "fails its checksum"),
    "flipped byte": (lambda d: _flip_a_byte(d / "part-00001.npz"), "fails its checksum"),
    "bad json": (lambda d: d.joinpath("part-00001.json").write_text("{half"), "its JSON is damaged"),
    "deleted npz": (lambda d: d.joinpath("part-00001.npz").unlink(), "its .npz file is missing"),
    "reordered ids": (lambda d: d.joinpath("part-00001.json").write_text(json.dumps(
        {**json.loads(d.joinpath("part-00001.json").read_text()),
         "ids": json.loads(d.joinpath("part-00001.json").read_text())["ids"][::-1]})), "other clips"),
    "a part copied over another": (lambda d: [d.joinpath(f"part-00001{s}").write_bytes(d.joinpath(f"part-00000{s}")
                                                                                       .read_bytes())
                                              for s in (".npz", ".json")], "other clips"),
}


@pytest.fixture(scope="module")
def half_store(tiny_ds, ckpt, tmp_path_factory):
    """A run killed after 3 of its 6 parts: each damage test works on its own copy."""
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    out = tmp_path_factory.mktemp("half") / "s"
    precompute(m, ds, "train", out, part_size=8, workers=0, max_parts=3)
    return out


#: the damage kinds the fast loop runs; the others run in the whole suite
FAST_DAMAGE = ("truncated npz", "bad json", "a part copied over another")


@pytest.mark.parametrize("damage", [d if d in FAST_DAMAGE else pytest.param(d, marks=pytest.mark.slow) for d in DAMAGE])
def test_a_damaged_part_is_named_and_computed_again(tiny_ds, ckpt, tmp_path, half_store, reference_store, damage):
    ds, m = open_dataset(tiny_ds), load_checkpoint(ckpt)
    out = tmp_path / "s"
    shutil.copytree(half_store, out)
    hurt, words = DAMAGE[damage]
    hurt(out / "parts")
    said = []
    precompute(m, ds, "train", out, part_size=8, workers=0, log=said.append)
    assert len(said) == 1 and "part-00001" in said[0] and words in said[0] and "computed again" in said[0]
    assert_same_store(open_store(out), reference_store)  # complete, and equal to an uninterrupted run
