"""Every page in a real Streamlit run (AppTest) on the default dataset and checkpoint."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT

from vidviz.jobs.store import store_dir

APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def backend(default_backend):
    return default_backend


@pytest.fixture(scope="module")
def test_store(default_store):
    return default_store


def run_page(page: str | None = None, params: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in (params or {}).items():
        at.query_params[k] = str(v)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def images(at: AppTest) -> list:
    return [el for el in at.get("imgs")] if at.get("imgs") else list(at.main.get("image"))


def test_browser_page_lists_and_filters_clips(backend):
    at = run_page()
    assert at.title[0].value == "Dataset browser"
    ds = backend.dataset
    total = len(ds.records)
    n_test = len(ds.split("test"))
    cap = next(c.value for c in at.caption if "split match" in c.value)
    assert cap.startswith(f"{n_test} of the {n_test} clips of the **test** split match ({total} in the dataset)")
    table = at.dataframe[0].value
    assert len(table) == min(50, n_test) and set(table["split"]) == {"test"}
    assert {"id", "label", "placeholders", "frames", "duration_s"} <= set(table.columns)
    at.text_input(key="br_text").set_value("Uncovering").run()
    cap = next(c.value for c in at.caption if "split match" in c.value)
    n_unc = sum(1 for r in ds.split("test") if r.template == "Uncovering [something]")
    assert cap.startswith(f"{n_unc} of the {n_test} clips")
    assert set(at.dataframe[0].value["label"]) == {"Uncovering [something]"}
    counts = at.dataframe[1].value  # clips per class of the filtered rows
    assert counts.to_dict("records") == [{"class": "Uncovering [something]", "clips": n_unc}]


def player_data(at: AppTest) -> dict:
    """The payload the viewer sent to the heatmap player (a components.v2 element)."""
    import json

    players = [el for el in at.get("bidi_component") if el.proto.component_name == "vidviz_player"]
    assert len(players) == 1, "the viewer shows one player"
    return json.loads(players[0].proto.json)


def decoded_maps(data: dict) -> np.ndarray:
    """The payload's maps: (len(available), T', h, w) float16 -> float32."""
    raw = np.frombuffer(base64.b64decode(data["maps"]), dtype="<f2")
    return raw.reshape(len(data["available"]), *data["map_shape"]).astype(np.float32)


def test_viewer_deep_link_selects_clip_and_class(backend):
    rec = backend.dataset.split("test")[3]
    at = run_page("pages/viewer.py", {"clip": rec.id, "cls": 4})
    assert at.text_input(key="vw_clip").value == rec.id
    md = [m.value for m in at.markdown]
    assert f"#### True label: {rec.template}" in md
    top = backend.predict(rec.id)
    assert any(m.startswith(f"1. {backend.classes[top[0][0]]}: {top[0][1]:.2f}") for m in md)
    data = player_data(at)
    assert data["clip"] == rec.id and data["init"]["cls"] == 4  # the URL's class, for this same clip
    assert data["order"] == [c for c, _ in top] and data["available"] == list(range(12))  # every class, one pass
    assert len(data["frames"]) == backend.spec.num_frames and data["map_shape"] == [16, 7, 7]
    expl = backend.explain(rec.id, None)
    assert np.allclose(decoded_maps(data), expl.maps, rtol=2e-3, atol=1e-6)  # the maps the backend computed
    assert data["jet"][-3:] == [128, 0, 0] and data["jet"][:3] == [0, 0, 128]  # OpenCV's jet, as the exports


def test_each_clip_opens_on_its_own_top_class(backend):
    """A class chosen for one clip never carries over: Next, a typed id, or an upload open on their own top-1."""
    ids = [r.id for r in backend.dataset.split("test")]
    at = run_page("pages/viewer.py", {"clip": ids[0], "cls": 7})
    assert player_data(at)["init"]["cls"] == 7
    at.button(key="vw_next").click().run()
    data = player_data(at)
    assert data["clip"] == ids[1]
    assert data["init"]["cls"] == backend.predict(ids[1])[0][0]
    assert "cls" not in at.query_params and at.query_params["clip"] in (ids[1], [ids[1]])
    at.text_input(key="vw_clip").set_value(ids[5]).run()
    data = player_data(at)
    assert data["clip"] == ids[5] and data["init"]["cls"] == backend.predict(ids[5])[0][0]
    at.button(key="vw_prev").click().run()
    assert player_data(at)["init"]["cls"] == backend.predict(ids[4])[0][0]


def test_a_class_outside_the_payload_is_computed_on_request(backend):
    rec = backend.dataset.split("test")[2]
    top = backend.predict(rec.id)
    last = top[-1][0]  # the least probable class: not among the top predictions sent at layer3
    at = run_page("pages/viewer.py", {"clip": rec.id, "layer": "layer3", "cls": last})
    data = player_data(at)
    assert data["layer"] == "layer3" and data["init"]["cls"] == last
    assert set(data["available"]) == {c for c, _ in top[:5]} | {last}  # the top-5, and the class the URL names
    i = data["available"].index(last)
    want = backend.explain(rec.id, [last], "gradcam", "layer3").map_for(last)
    assert np.allclose(decoded_maps(data)[i], want, rtol=2e-3, atol=1e-6)


def test_viewer_compare_and_temporal_modes(backend):
    rec = backend.dataset.split("test")[1]
    at = run_page("pages/viewer.py", {"clip": rec.id})
    at.button_group(key="compare").set_value("classes").run()
    at.toggle(key="temporal").set_value(True).run()
    assert not at.exception
    assert any("Difference A − B" in m.value for m in at.markdown)  # two classes: their difference too
    assert at.multiselect(key="vw_cmp_classes").value[0] == rec.label  # the true label first
    assert at.table, "temporal perturbation table missing"
    for kind, rows in (("methods", 4), ("layers", len(backend.model.layer_names))):
        at.button_group(key="compare").set_value(kind).run()
        assert not at.exception
        cap = next(c.value for c in at.caption if f"{kind} ×" in c.value)
        assert cap.startswith(f"{rows} {kind} × 16 frames") and "own maximum" in cap


def test_viewer_unknown_clip_is_a_plain_error(backend):
    at = run_page("pages/viewer.py", {"clip": "../../etc/passwd"})
    assert at.error and "no clip with id '../../etc/passwd'" in at.error[0].value
    assert "Traceback" not in at.error[0].value


@pytest.mark.slow
def test_gallery_counts_match_the_store(test_store):
    at = run_page("pages/gallery.py")
    counts = test_store.counts()
    k = test_store.meta["k"]
    cap = next(c.value for c in at.caption if "clips:" in c.value)
    assert cap.startswith(f"{len(test_store.table)} of {len(test_store.table)} clips: **{counts['positive']} positive**")
    assert f"**{counts['medium']} medium** (true class ranked 2-{k})" in cap
    assert f"**{counts['negative']} negative** (true class below {k})" in cap
    cards = [m.value for m in at.markdown if m.value.startswith("**True label:")]
    assert cards and all("\n1. " in c and "\n2. " in c for c in cards)


@pytest.mark.slow
def test_quality_page_renders_scores(backend, test_store):
    from vidviz.jobs.quality import run_quality

    out = store_dir(backend.dataset, backend.checkpoint_hash, "test")
    summary, clips = run_quality(backend, "test", out, ["gradcam", "gradcam++"], max_clips=4, sanity_clips=1)
    at = run_page("pages/quality.py")
    assert at.title[0].value == "Saliency quality"
    assert at.dataframe and at.get("plotly_chart")
    table = next(d.value for d in at.dataframe if "better" in d.value.columns)
    assert {"gradcam", "gradcam++", "random", "centre", "motion", "better"} <= set(table.columns)
    defined = next(m.value for m in at.markdown if "Deletion AUC** (lower is better)" in m.value)
    from vidviz.jobs.quality import METRIC_INFO

    assert all(f"**{name}**" in defined for name, _ in METRIC_INFO.values() if name in table.index)
    row = summary[(summary["method"] == "gradcam") & (summary["metric"] == "energy_object")].iloc[0]
    cell = table.loc["Energy in object box", "gradcam"]
    assert cell.startswith(f"{row['mean']:.3f} ± ") and cell.endswith(f"({int(row['n'])})")  # the scored figures
    assert table.loc["Deletion AUC", "better"] == "lower" and table.loc["Insertion AUC", "better"] == "higher"
    assert at.selectbox(key="qa_method").value == "gradcam"
    ranking = next(d.value for d in at.dataframe if "mean rank" in d.value.columns)
    assert set(ranking.index) == {"gradcam", "gradcam++", "random", "centre", "motion"}
    assert list(ranking["mean rank"]) == sorted(ranking["mean rank"]) and "seconds" in ranking.columns


@pytest.fixture()
def tiny_default(tiny_ds, tmp_path, monkeypatch):
    """The app with the tiny dataset as its default and stores in this test's tmp (nothing precomputed)."""
    monkeypatch.setenv("VIDVIZ_DATA", str(tiny_ds))
    monkeypatch.setenv("VIDVIZ_STORES", str(tmp_path / "stores"))
    return tiny_ds


def test_sidebar_switches_dataset_and_checkpoint(default_backend, tiny_ds, tmp_path, monkeypatch):
    """A click on each sidebar picker switches what the page shows, and the URL follows.

    (AppTest drops the sidebar's elements after a rerun under st.navigation, so each picker
    gets its own first click and the effect is read off the main area.)
    """
    from support import random_model

    from vidviz.backend import Backend
    from vidviz.jobs.store import precompute, store_dir
    from vidviz.models import save_checkpoint

    (tmp_path / "cks").mkdir()
    other = save_checkpoint(tmp_path / "cks" / "other.pt", random_model(5))
    monkeypatch.setenv("VIDVIZ_DATA_ROOTS", str(tiny_ds))
    monkeypatch.setenv("VIDVIZ_CHECKPOINTS", str(tmp_path / "cks"))
    at = run_page()
    total = len(default_backend.dataset.records)
    assert any(c.value.startswith(f"{total} clips, 12 classes") for c in at.sidebar.caption)
    at.sidebar.selectbox(key="vv_dataset").select(tiny_ds.name).run()
    assert not at.exception
    assert any("(48 in the dataset)" in c.value for c in at.caption)  # the tiny dataset's table
    assert at.query_params["dataset"] in (tiny_ds.name, [tiny_ds.name])

    b = Backend(other, tiny_ds)
    precompute(b.model, b.dataset, "train", store_dir(b.dataset, b.checkpoint_hash, "train"), workers=0)
    at = run_page(params={"dataset": tiny_ds.name, "split": "train"})
    assert "prediction" not in at.dataframe[0].value.columns  # no store for the shipped checkpoint here
    at.sidebar.selectbox(key="vv_checkpoint").select("other.pt").run()
    assert not at.exception
    assert at.query_params["checkpoint"] in ("other.pt", ["other.pt"])
    table = at.dataframe[0].value
    first = str(table["id"].iloc[0])
    assert table["prediction"].iloc[0] == b.classes[b.predict(first)[0][0]]  # predictions of the chosen checkpoint


@pytest.mark.slow
def test_gallery_compute_button_builds_the_store(tiny_default):
    at = run_page("pages/gallery.py", {"split": "train"})
    assert any("No precomputed predictions for the **train** split" in w.value for w in at.warning)
    at.button(key="ga_compute").click().run()
    assert not at.exception
    import ui
    from vidviz.backend import Backend
    from vidviz.jobs.store import open_store_for

    b = ui.get_backend(str(ui.config.DEFAULT_CHECKPOINT), str(tiny_default), ui.config.CACHE_MB)
    st_ = open_store_for(b, "train")
    assert st_ is not None and len(st_.table) == len(Backend(ui.config.DEFAULT_CHECKPOINT, tiny_default).dataset.split("train"))
    assert any(f"**{st_.counts()['positive']} positive**" in c.value for c in at.caption)


@pytest.mark.slow
def test_quality_score_button_scores_the_chosen_number_of_clips(tiny_default):
    at = run_page("pages/quality.py", {"split": "train"})
    at.number_input(key="qa_n").set_value(2)
    at.button(key="qa_run").click().run()
    assert not at.exception
    assert {"gradcam", "gradcam++", "random", "centre", "motion"} <= set(next(d.value for d in at.dataframe if "better" in d.value.columns).columns)
    assert any(m.value.startswith("**2 of ") and "**train** split scored" in m.value for m in at.markdown)


@pytest.mark.slow
def test_first_run_generates_the_default_dataset(tmp_path, monkeypatch):
    from vidviz import config

    target = tmp_path / "fresh"
    monkeypatch.setenv("VIDVIZ_DATA", str(target))
    monkeypatch.setattr(config, "DEFAULT_CLIPS", 24)
    at = run_page()
    assert (target / "labels.json").is_file()
    assert any(c.value.startswith("24 clips, 12 classes") for c in at.sidebar.caption)
    assert at.title[0].value == "Dataset browser"


@pytest.mark.slow
def test_the_viewer_over_200_clips_stays_within_its_cache_budget_and_does_not_grow(default_ds, monkeypatch):
    """Each script run leaves reference cycles (a page's namespace and its functions) that hold the clip it showed;
    the backend collects them as it evicts clips, so memory stays bounded even if Python's collector never ran."""
    import gc
    import weakref

    from vidviz.data.datasets import open_dataset

    def rss_mb() -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024

    monkeypatch.setenv("VIDVIZ_CACHE_MB", "24")  # a new budget: a new backend (the cache key holds the budget)
    ids = [r.id for r in open_dataset(default_ds).records][:200]
    at = run_page(params={"page": "viewer", "clip": ids[0]})
    import ui

    b = ui.get_backend(str(ui.config.DEFAULT_CHECKPOINT), str(default_ds), 24)
    assert b.cache_bytes == 24 * 2**20
    gc.collect()
    gc.disable()  # the worst case: Python's own collector does not run
    try:
        shown, rss = [], {}
        for i, cid in enumerate(ids[1:], start=2):
            at.text_input(key="vw_clip").set_value(cid).run()
            shown.append(weakref.ref(b._clips.get(cid)))
            assert b._clips.total_bytes + b._explained.total_bytes <= b.cache_bytes
            if i in (50, 200):
                rss[i] = rss_mb()
        alive = sum(r() is not None for r in shown)
    finally:
        gc.enable()
    assert not at.exception and not at.error
    assert len(b._clips) < 20  # clips were pushed out: the budget is what bounds the cache
    assert alive <= len(b._clips) + 8, alive  # the evicted clips are gone (a few since the last collection)
    assert rss[200] - rss[50] < 48, rss  # flat: 150 more clips (about 3 MB each) leave nothing behind


@pytest.mark.slow
@pytest.mark.parametrize("method", ["integrated-gradients", "ablationcam"])
def test_the_player_shows_any_method(backend, method):
    """An input attribution (28x28 cells a frame) and a perturbation method, top-5 in the player's payload."""
    rec = backend.dataset.split("test")[4]
    at = run_page("pages/viewer.py", {"clip": rec.id, "method": method})
    assert not at.exception and not at.error
    data = player_data(at)
    assert data["layer"] == ("input" if method == "integrated-gradients" else "layer4")  # what the title says
    top5 = [c for c, _ in backend.predict(rec.id)[:5]]
    assert sorted(data["available"]) == sorted(top5)
    layer = None if method == "ablationcam" else "layer4"
    want = backend.explain(rec.id, top5, method, layer)
    assert tuple(data["map_shape"]) == want.maps.shape[1:] == ((16, 28, 28) if method != "ablationcam" else (16, 7, 7))
    maps = decoded_maps(data)
    for i, c in enumerate(data["available"]):
        assert np.allclose(maps[i], want.map_for(c), rtol=2e-3, atol=1e-6)


def test_a_broken_model_folder_is_an_error_and_a_hugging_face_folder_opens(default_backend, tmp_path, monkeypatch):
    """#13: the picker lists Hugging Face folders; a folder whose weights are missing is one `st.error` and the app
    keeps working; a VideoMAE opens in the viewer with its own classes and layers."""
    from support import hf_folder

    cks = tmp_path / "cks"
    hf_folder(cks, "videomae")
    broken = cks / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((cks / "videomae" / "config.json").read_text())  # no weights next to it
    monkeypatch.setenv("VIDVIZ_CHECKPOINTS", str(cks))
    clip = default_backend.dataset.split("validation")[0].id
    at = run_page("pages/viewer.py", {"clip": clip, "checkpoint": "broken/"})
    assert not at.exception
    assert any("broken: no weights file" in e.value for e in at.error), [e.value for e in at.error]
    at.sidebar.selectbox(key="vv_checkpoint").select("videomae/").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="layer").value == "videomae.encoder.layer.2"
    assert at.selectbox(key="layer").options[0] == "videomae.encoder.layer.2"
    assert any("class names match 0 of the dataset's 12" in c.value for c in at.caption)
    assert any(m.value.startswith("#### True label:") for m in at.markdown)  # the dataset's label, by name
