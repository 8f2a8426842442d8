"""Confusion gallery: positive, medium and negative cases of a whole split, like the seed's examples."""

import numpy as np
import streamlit as st

import ui
from vidviz import render, tables
from vidviz.jobs import store

b = ui.backend()
ds = b.dataset
split = ui.split()

with ui.plain_errors():
    st_ = store.open_store_for(b, split)
    if st_ is None:
        st.warning(f"No precomputed predictions for the **{split}** split with this checkpoint yet.")
        st.caption(f"{len(ds.split(split))} clips; the same as `vidviz precompute --split {split}`.")
        if st.button(f"Compute predictions and maps for {split}", type="primary", key="ga_compute"):
            bar = st.progress(0.0, text="Starting...")

            def progress(done, total):
                bar.progress(done / max(total, 1), text=f"{done}/{total} clips")

            store.precompute(b.model, ds, split, store.store_dir(ds, b.checkpoint_hash, split), progress=progress)
            st.rerun()
        st.stop()

    counts = st_.counts()
    k = st_.meta["k"]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Positive (top-1 correct)", counts["positive"])
    m2.metric(f"Medium (true class ranked 2-{k})", counts["medium"])
    m3.metric(f"Negative (true class below {k})", counts["negative"])
    m4.metric("Clips", len(st_.table))

    classes = st_.classes
    opts = [None, *range(len(classes))]
    c1, c2, c3, c4 = st.columns([3, 3, 2, 1])
    sort = c3.selectbox("Sort by", list(tables.SORTS), key="ga_sort",
                        help="confidence: most confident first; margin: closest calls first; entropy: most uncertain first")
    per_page = c4.selectbox("Per page", [6, 12, 24], index=1, key="ga_per_page")
    true_cls = c1.selectbox("True class", opts, key="ga_true", format_func=lambda c: "any" if c is None else classes[c])
    pred_cls = c2.selectbox("Predicted class", opts, key="ga_pred",
                            format_func=lambda c: "any" if c is None else classes[c])

    @st.cache_data(max_entries=512, show_spinner=False)
    def strip(store_path: str, clip_id: str, row: int, cls: int, _maps: np.ndarray | None) -> np.ndarray:
        return render.preview_strip(b.frames(clip_id), _maps, every=4)  # 4 of the 16 frames

    def card(row):
        r = int(row.Index)
        with st.container(border=True):
            try:
                st.image(strip(str(st_.path), str(row.id), r, int(row.pred), st_.map_of(r, int(row.pred))),
                         width="stretch", output_format="JPEG")
            except Exception as e:  # one unreadable clip must not break the gallery
                st.caption(f"(no preview: {e})")
            top = store.topk_of(row, 2)
            st.markdown(f"**True label: {row.true_name}**  \n"
                        + "  \n".join(f"{n}. {classes[c]}: {p:.2f}" for n, (c, p) in enumerate(top, 1)))
            st.caption(f"clip {row.id} · true class ranked {row.true_rank} · margin {row.margin:.2f}")
            if st.button("Open in viewer", key=f"ga_open_{row.id}"):
                ui.open_in_viewer(str(row.id), int(row.pred))

    tabs = st.tabs([f"Positive ({counts['positive']})", f"Medium ({counts['medium']})",
                    f"Negative ({counts['negative']})"])
    for tab, case in zip(tabs, store.CASES, strict=True):
        with tab:
            rows = tables.select(st_.table, case, sort, true_cls, pred_cls)
            if rows.empty:
                st.info("No clip in this case with these filters.")
                continue
            pages = tables.page_count(len(rows), per_page)
            page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"ga_page_{case}")
            chunk = tables.page_of(rows, page, per_page)
            cols = st.columns(3)
            for i, row in enumerate(chunk.itertuples()):
                with cols[i % 3]:
                    card(row)

    st.subheader("Where the model confuses classes")
    conf = st_.confusion()
    left, right = st.columns([3, 2])
    left.plotly_chart(render.confusion_figure(conf, classes), key="ga_conf", width="stretch")
    pairs = tables.confused_pairs(conf, classes)
    with right:
        st.caption("Most confused pairs: select a row to show those clips above.")
        ev = st.dataframe(pairs.drop(columns=["true_idx", "pred_idx"]), hide_index=True, on_select="rerun",
                          selection_mode="single-row", key="ga_pairs", width="stretch")
        if ev is not None and ev.selection.rows:
            sel = pairs.iloc[ev.selection.rows[0]]
            if (st.session_state.get("ga_true"), st.session_state.get("ga_pred")) != (int(sel.true_idx), int(sel.pred_idx)):
                st.session_state.ga_true, st.session_state.ga_pred = int(sel.true_idx), int(sel.pred_idx)
                st.rerun()
