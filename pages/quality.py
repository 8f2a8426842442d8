"""Saliency quality: do the maps point at the object, the hand and the action? Do they depend on the model?"""

import pandas as pd
import streamlit as st

import ui
from vidviz import render
from vidviz.explain.methods import METHOD_INFO, METHODS
from vidviz.jobs import store
from vidviz.jobs.quality import METRIC_INFO, METRICS, ranked_methods, run_quality, summary_by_metric

ui.run_through_app()  # first: a page always runs inside app.py (navigation, title, sidebar)
b = ui.backend()
ds = b.dataset
split = ui.split()
out = store.store_dir(ds, b.checkpoint_hash, split)

with ui.plain_errors():
    summary_path, clips_path = out / "quality.csv", out / "quality_clips.csv"
    have = summary_path.is_file()
    labelled = len([r for r in ds.split(split) if r.label is not None])
    if not ds.has_boxes:
        st.info("This dataset has no ground-truth boxes (Something-Else format) to score against; "
                "the temporal, deletion/insertion and randomisation checks still run.")
    with st.expander("Score this split" + (" again, or more of it" if have else ""), expanded=not have):
        if not have:
            st.warning(f"No saliency-quality scores for the **{split}** split with this checkpoint yet.")
        n = st.number_input(f"Clips to score (0 = the whole split: {labelled} labelled clips)", 0, labelled, 0,
                            key="qa_n", bind="query-params",
                            help="Each clip costs a few dozen forward passes (deletion/insertion). "
                                 "Clips scored before are kept; the run resumes where it stopped.")
        chosen = st.multiselect("Methods to score (next to the random, centre and motion baselines)", list(METHODS),
                                default=["gradcam", "gradcam++"], key="qa_methods", bind="query-params",
                                format_func=lambda m: METHOD_INFO[m].name,
                                help="Costs per clip: " + "; ".join(f"{i.name}: {i.cost}" for i in METHOD_INFO.values()))
        if st.button("Score the chosen methods against the random, centre and motion baselines", type="primary",
                     key="qa_run", disabled=not chosen):
            bar = st.progress(0.0, text="Scoring...")
            run_quality(b, split, out, list(chosen), int(n) or None,
                        progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Scoring: {d}/{t} clips"))
            st.rerun()
    if not have:
        st.stop()

    summary = pd.read_csv(summary_path)
    clips = pd.read_csv(clips_path)
    scored = clips["clip"].nunique()
    st.markdown(f"**{scored} of {labelled} labelled clips** of the **{split}** split scored; target: the true "
                "class. Each cell: mean ± 95% confidence interval (number of clips it comes from).")
    failed_path = out / "quality_failures.csv"
    failed = pd.read_csv(failed_path) if failed_path.is_file() else None
    if failed is not None and len(failed):
        st.warning(f"{len(failed)} clip(s) could not be scored, e.g. clip {failed['clip'].iloc[0]}: "
                   f"{failed['error'].iloc[0]} (all in quality_failures.csv of the store).")
    st.markdown("**Methods ranked**: mean rank over the quality metrics below (1 = best on every metric, each in its "
                "own direction), and the time each takes per clip.")
    ranking = ranked_methods(summary)
    st.dataframe(ranking[[c for c in ("mean rank", "seconds") if c in ranking.columns]], key="qa_ranked")
    by_metric = summary_by_metric(summary)
    st.dataframe(by_metric.drop(columns="definition"), key="qa_summary", width="stretch")
    with st.container(key="qa_definitions"):  # the definitions below the table: it stays narrow enough to read
        st.markdown("  \n".join(f"**{name}** ({row['better']} is better): {row['definition']}"
                                 for name, row in by_metric.iterrows()))

    metric = st.selectbox("Metric", list(METRICS), key="qa_metric", bind="query-params",
                          format_func=lambda m: METRIC_INFO[m][0])
    st.plotly_chart(render.quality_figure(summary, metric, METRIC_INFO[metric][0]), key="qa_bar", width="stretch")
    st.caption(METRIC_INFO[metric][1])

    by = st.radio("Break down by", ["case", "label"], horizontal=True, key="qa_by", bind="query-params")
    table = clips.pivot_table(index=by, columns="method", values=metric, aggfunc="mean").round(3)
    st.dataframe(table, key="qa_breakdown", width="stretch")

    st.subheader("Per clip")
    methods = sorted(clips["method"].unique())
    method = st.selectbox("Method", methods, index=methods.index("gradcam") if "gradcam" in methods else 0,
                          key="qa_method", bind="query-params")
    per = clips[clips["method"] == method][["clip", "label", "case", *METRICS]].reset_index(drop=True)
    ev = st.dataframe(per, hide_index=True, on_select="rerun", selection_mode="single-row", key="qa_clips",
                      width="stretch")
    if ev is not None and ev.selection.rows:
        cid = str(per.iloc[ev.selection.rows[0]]["clip"])
        if st.button(f"Open clip {cid} in the viewer", key="qa_open"):
            ui.open_in_viewer(cid)
