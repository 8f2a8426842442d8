"""Saliency quality: do the maps point at the object, the hand and the action? Do they depend on the model?"""

import pandas as pd
import streamlit as st

import ui
from vidviz import render
from vidviz.jobs import store
from vidviz.jobs.quality import METRICS, run_quality, summary_wide

b = ui.backend()
ds = b.dataset
split = ui.split()
out = store.store_dir(ds, b.checkpoint_hash, split)

with ui.plain_errors():
    summary_path, clips_path = out / "quality.csv", out / "quality_clips.csv"
    if not summary_path.is_file():
        if not ds.has_boxes:
            st.info("This dataset has no ground-truth boxes (Something-Else format) to score against; "
                    "the randomisation sanity check still runs.")
        st.warning(f"No saliency-quality scores for the **{split}** split with this checkpoint yet.")
        n = st.number_input("Clips to score (0 = all)", 0, len(ds.split(split)), min(24, len(ds.split(split))),
                            key="qa_n", help="Each clip costs a few dozen forward passes (deletion/insertion).")
        if st.button("Score Grad-CAM and Grad-CAM++ against the baselines", type="primary", key="qa_run"):
            bar = st.progress(0.0, text="Scoring...")
            run_quality(b, split, out, ["gradcam", "gradcam++"], int(n) or None,
                        progress=lambda d, t: bar.progress(d / max(t, 1), text=f"{d}/{t} clips"))
            st.rerun()
        st.stop()

    summary = pd.read_csv(summary_path)
    clips = pd.read_csv(clips_path)
    st.caption(f"{clips['clip'].nunique()} clips of **{split}**; target: the true class. Mean ± 95% CI. "
               "Higher is better, except deletion AUCs and the randomisation correlation (lower is better).")
    st.dataframe(summary_wide(summary), key="qa_summary", width="stretch")

    metric = st.selectbox("Metric", list(METRICS), key="qa_metric")
    st.plotly_chart(render.quality_figure(summary, metric), key="qa_bar", width="stretch")

    by = st.radio("Break down by", ["case", "label"], horizontal=True, key="qa_by")
    table = clips.pivot_table(index=by, columns="method", values=metric, aggfunc="mean").round(3)
    st.dataframe(table, key="qa_breakdown", width="stretch")

    st.subheader("Per clip")
    method = st.selectbox("Method", sorted(clips["method"].unique()), key="qa_method")
    per = clips[clips["method"] == method][["clip", "label", "case", *METRICS]].reset_index(drop=True)
    ev = st.dataframe(per, hide_index=True, on_select="rerun", selection_mode="single-row", key="qa_clips",
                      width="stretch")
    if ev is not None and ev.selection.rows:
        cid = str(per.iloc[ev.selection.rows[0]]["clip"])
        if st.button(f"Open clip {cid} in the viewer", key="qa_open"):
            ui.open_in_viewer(cid)
