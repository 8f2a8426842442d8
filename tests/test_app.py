"""Every page in a real Streamlit run (AppTest) on the default dataset and checkpoint."""

from __future__ import annotations

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
    cap = next(c.value for c in at.caption if "clips match" in c.value)
    assert cap.startswith(f"{n_test} of {total} clips match")
    table = at.dataframe[0].value
    assert len(table) == min(50, n_test) and set(table["split"]) == {"test"}
    assert {"id", "label", "placeholders", "frames", "duration_s"} <= set(table.columns)
    at.text_input(key="br_text").set_value("Uncovering").run()
    cap = next(c.value for c in at.caption if "clips match" in c.value)
    n_unc = sum(1 for r in ds.split("test") if r.template == "Uncovering [something]")
    assert cap.startswith(f"{n_unc} of {total}")
    assert at.get("plotly_chart")
    assert set(at.dataframe[0].value["label"]) == {"Uncovering [something]"}


def test_viewer_deep_link_selects_clip_and_class(backend):
    rec = backend.dataset.split("test")[3]
    at = run_page("pages/viewer.py", {"clip": rec.id, "cls": 4})
    assert at.text_input(key="vw_clip").value == rec.id
    sel = next(s for s in at.selectbox if s.label.startswith("Target class"))
    assert sel.value == 4
    md = [m.value for m in at.markdown]
    assert f"#### True label: {rec.template}" in md
    top = backend.predict(rec.id)
    assert any(m.startswith(f"1. {backend.classes[top[0][0]]}: {top[0][1]:.2f}") for m in md)
    grid = [el for el in at.get("image") if len(el.proto.imgs) == backend.spec.num_frames]
    assert grid, "no grid with one overlay per frame"


def test_viewer_class_switch_changes_the_map(backend):
    rec = backend.dataset.split("test")[0]
    at = run_page("pages/viewer.py", {"clip": rec.id})

    def grid_captions():
        g = next(el for el in at.get("image") if len(el.proto.imgs) == backend.spec.num_frames)
        return [i.caption for i in g.proto.imgs]

    sel = next(s for s in at.selectbox if s.label.startswith("Target class"))
    first = sel.value
    before = grid_captions()
    other = next(o for o in sel.options if not o.startswith(backend.classes[first]))
    sel.select(other).run()
    assert not at.exception
    sel = next(s for s in at.selectbox if s.label.startswith("Target class"))
    assert sel.value != first
    assert grid_captions() != before  # the per-frame shares of the map changed
    assert at.query_params["cls"] == [str(sel.value)] or at.query_params["cls"] == str(sel.value)


def test_viewer_compare_and_temporal_modes(backend):
    rec = backend.dataset.split("test")[1]
    at = run_page("pages/viewer.py", {"clip": rec.id})
    at.toggle(key="vw_compare").set_value(True).run()
    at.toggle(key="vw_temporal").set_value(True).run()
    assert not at.exception
    assert any("Difference A − B" in m.value for m in at.markdown)
    assert any(s.label.startswith("Class A") for s in at.selectbox)
    assert at.table, "temporal perturbation table missing"


def test_viewer_unknown_clip_is_a_plain_error(backend):
    at = run_page("pages/viewer.py", {"clip": "../../etc/passwd"})
    assert at.error and "no clip with id '../../etc/passwd'" in at.error[0].value
    assert "Traceback" not in at.error[0].value


@pytest.mark.slow
def test_gallery_counts_match_the_store(test_store):
    at = run_page("pages/gallery.py")
    counts = test_store.counts()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Positive (top-1 correct)"] == str(counts["positive"])
    assert metrics[f"Medium (true class ranked 2-{test_store.meta['k']})"] == str(counts["medium"])
    assert metrics[f"Negative (true class below {test_store.meta['k']})"] == str(counts["negative"])
    assert len(at.tabs) == 3
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
    table = at.dataframe[0].value
    assert {"gradcam", "gradcam++", "random", "centre", "motion"} <= set(table.index)
    row = summary[(summary["method"] == "gradcam") & (summary["metric"] == "energy_object")].iloc[0]
    assert table.loc["gradcam", "energy_object"].startswith(f"{row['mean']:.3f}")  # the page shows the scored figures
