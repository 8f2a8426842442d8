"""Dataset browser: filter and page through clips, preview one, open it in the viewer."""

import streamlit as st

import ui
from vidviz import tables

ui.run_through_app()  # first: a page always runs inside app.py (navigation, title, sidebar)
ui.landing()
ds = ui.dataset()  # the table needs no model: the page paints before the model has loaded
FILTERS = ("br_classes", "br_text", "br_size", "br_page")
ui.remember(*FILTERS)


@st.cache_data(show_spinner="Indexing clips...", max_entries=8)
def clip_table(root: str, fingerprint: str):
    return tables.clip_table(ds)


with ui.plain_errors():
    df = clip_table(str(ds.root), ds.fingerprint())
    store_preds = ui.stored_predictions(ds, ui.split())
    c1, c2, c3 = st.columns([3, 2, 1])
    chosen = c1.multiselect("Classes", ds.classes, key="br_classes", placeholder="All classes", bind="query-params")
    text = c2.text_input("Search id, label or object", key="br_text", placeholder="e.g. red cube", bind="query-params")
    size = c3.selectbox("Rows per page", [25, 50, 100], index=1, key="br_size", bind="query-params")
    rows = tables.filter_table(df, chosen, ui.split(), text)
    pages = tables.page_count(len(rows), size)
    page_no = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key="br_page",
                              bind="query-params")
    page = tables.with_video_info(tables.page_of(rows, page_no, size), ds)
    page = tables.with_predictions(page, store_preds)
    n_split = int((df["split"] == ui.split()).sum()) if ui.split() != "all" else len(df)
    st.caption(f"{len(rows)} of the {n_split} clips of the **{ui.split()}** split match ({len(df)} in the dataset). "
               "Click a row to preview it.")
    event = st.dataframe(page.drop(columns=["label_index"]), hide_index=True, on_select="rerun",
                         selection_mode="single-row", key="br_table", width="stretch")
    selected = event.selection.rows if event is not None else []

    left, right = st.columns([3, 2])
    with left:
        if selected:
            row = page.iloc[selected[0]]
            rec = ds.get(str(row["id"]))
            st.subheader(f"Clip {rec.id}")
            st.markdown(f"**True label:** {rec.template or '(unknown)'}  \n"
                        f"**Objects:** {', '.join(rec.placeholders) or '-'}  \n**Split:** {rec.split}")
            if rec.path.is_file():
                st.video(rec.path.read_bytes(), format=f"video/{rec.path.suffix.lstrip('.').lower() or 'webm'}")
            else:  # a folder of JPEG frames (v1 / Jester): show the sampled frames
                st.image(list(ui.backend().frames(rec.id)[::2]), width=96)
            if st.button("Open in Grad-CAM viewer", type="primary", key="br_open"):
                ui.open_in_viewer(rec.id)
        else:
            st.info("Select a clip in the table to preview it and open it in the viewer.")
    with right:
        counts = tables.class_counts(rows)  # a table, not a chart: no plotting library to load on the first page
        st.dataframe(counts, hide_index=True, key="br_hist", width="stretch", height=min(420, 35 * len(counts) + 38),
                     column_config={"class": st.column_config.TextColumn("Class", width="large"),
                                    "clips": st.column_config.ProgressColumn(
                                        "Clips", format="%d", min_value=0, max_value=int(counts["clips"].max() or 1))})

ui.keep(*FILTERS)
