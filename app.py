"""vidviz: what does a video classifier look at? Entry point: ``streamlit run app.py``."""

import streamlit as st

import ui
from vidviz import render, runtime

runtime.tune_allocator()  # once per process: reuse CPU tensor memory (see vidviz/runtime.py)

st.set_page_config(page_title="vidviz", page_icon=render.app_icon(), layout="wide")  # a local icon: the app works offline

PAGES = [
    st.Page("pages/browser.py", title="Dataset browser", icon=":material/table_view:", url_path="browser", default=True),
    st.Page("pages/viewer.py", title="Grad-CAM viewer", icon=":material/local_fire_department:", url_path="viewer"),
    st.Page("pages/gallery.py", title="Confusion gallery", icon=":material/grid_view:", url_path="gallery"),
    st.Page("pages/quality.py", title="Saliency quality", icon=":material/verified:", url_path="quality"),
]
page = st.navigation(PAGES)
ui.ensure_default_dataset()
ui.sidebar()
page.run()
