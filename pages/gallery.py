"""Confusion gallery: positive, medium and negative cases of a whole split, like the seed's examples."""

import numpy as np
import streamlit as st

import ui
from vidviz import render, tables
from vidviz.jobs import store

ui.run_through_app()  # first: a page always runs inside app.py (navigation, title, sidebar)
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

    classes = st_.classes
    opts = [None, *range(len(classes))]
    FILTERS = ("ga_true", "ga_pred", "ga_sort", "ga_per_page", "ga_case", "ga_page")
    ui.remember(*FILTERS)
    k = st_.meta["k"]

    def _drill(true_idx: int, pred_idx: int) -> None:  # a pair or a matrix cell: show exactly those clips
        st.session_state.ga_true, st.session_state.ga_pred = int(true_idx), int(pred_idx)
        n = tables.case_counts(st_.table, int(true_idx), int(pred_idx))
        st.session_state.ga_case = next((c for c in store.CASES if n[c]), "positive")
        st.session_state.ga_page = 1

    c1, c2, c3, c4 = st.columns([3, 3, 2, 1])
    true_cls = c1.selectbox("True class", opts, key="ga_true", bind="query-params",
                            format_func=lambda c: "any" if c is None else classes[c])
    pred_cls = c2.selectbox("Predicted class", opts, key="ga_pred", bind="query-params",
                            format_func=lambda c: "any" if c is None else classes[c])
    sort = c3.selectbox("Sort by", list(tables.SORTS), key="ga_sort", bind="query-params",
                        help="confidence: most confident first; margin: closest calls first; entropy: most uncertain first")
    per_page = c4.selectbox("Per page", [6, 12, 24], index=1, key="ga_per_page", bind="query-params")
    counts = tables.case_counts(st_.table, true_cls, pred_cls)  # the cases of the clips these filters keep
    names = {"positive": "Positive", "medium": "Medium", "negative": "Negative"}
    filtered = " with these filters" if true_cls is not None or pred_cls is not None else ""
    case = st.segmented_control("Case", list(store.CASES), default="positive", key="ga_case", bind="query-params",
                                format_func=names.get, required=True)
    st.caption(f"{sum(counts.values())} of {len(st_.table)} clips{filtered}: **{counts['positive']} positive** "
               f"(top-1 correct), **{counts['medium']} medium** (true class ranked 2-{k}), "
               f"**{counts['negative']} negative** (true class below {k}).")

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
            st.caption(f"clip {row.id} · heatmap: {classes[int(row.pred)]} (the prediction) · "
                       f"true class ranked {row.true_rank} · margin {row.margin:.2f}")
            if st.button("Open in viewer", key=f"ga_open_{row.id}"):
                ui.open_in_viewer(str(row.id), int(row.pred))

    rows = tables.select(st_.table, case, sort, true_cls, pred_cls)
    if rows.empty:
        st.info("No clip in this case with these filters.")
    else:
        pages = tables.page_count(len(rows), per_page)
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="ga_page", bind="query-params")
        cols = st.columns(3)
        for i, row in enumerate(tables.page_of(rows, page, per_page).itertuples()):
            with cols[i % 3]:
                card(row)

    st.subheader("Where the model confuses classes")
    conf = st_.confusion()
    st.caption("Select a cell of the confusion matrix, or a row of the most confused pairs, to show exactly "
               "those clips above. Column numbers are predicted classes; hover a header for its name.")
    pairs = tables.confused_pairs(conf, classes)

    def _cell_selected():
        cells = st.session_state.ga_conf.selection.cells
        if cells:
            _drill(int(cells[0][0]), int(cells[0][1]))

    def _pair_selected():
        rows_ = st.session_state.ga_pairs.selection.rows
        if rows_:
            _drill(*pairs.iloc[rows_[0]][["true_idx", "pred_idx"]])

    st.dataframe(render.confusion_table(conf, classes), key="ga_conf", selection_mode="single-cell",
                 on_select=_cell_selected, height=min(35 * len(classes) + 40, 700),
                 column_config={str(j): st.column_config.NumberColumn(str(j), help=c, width=40)
                                for j, c in enumerate(classes)})
    st.markdown("**Most confused pairs**")
    st.dataframe(pairs.drop(columns=["true_idx", "pred_idx"]), hide_index=True, selection_mode="single-row",
                 key="ga_pairs", width="stretch", on_select=_pair_selected)
    ui.keep(*FILTERS)
