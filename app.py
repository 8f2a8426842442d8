"""vidviz: what does a video classifier look at? Entry point: ``streamlit run app.py``.

The page's title and the sidebar's pickers are drawn before anything imports torch, so the first
paint does not wait for the model; the page then loads the shared backend with a spinner.
"""

import streamlit as st

import ui
from vidviz import runtime
from vidviz.player import ICON

runtime.tune_allocator()  # once per process: reuse CPU tensor memory (see vidviz/runtime.py)

st.set_page_config(page_title="vidviz", page_icon=str(ICON), layout="wide")  # a local icon: the app works offline

PAGES = {  # url path: (file, title, icon)
    "browser": ("pages/browser.py", "Dataset browser", ":material/table_view:"),
    "viewer": ("pages/viewer.py", "Grad-CAM viewer", ":material/local_fire_department:"),
    "gallery": ("pages/gallery.py", "Confusion gallery", ":material/grid_view:"),
    "quality": ("pages/quality.py", "Saliency quality", ":material/verified:"),
}
# A shared link names its page in the query (/?page=viewer&clip=...): the app's root path loads
# without the failed probes Streamlit's client makes for a sub-path such as /viewer (404s in the console).
home = ui.home_page(list(PAGES))
pages = [st.Page(f, title=t, icon=i, url_path=name, default=name == home) for name, (f, t, i) in PAGES.items()]
page = st.navigation(pages, position="hidden")  # the sidebar draws its own links (ui.sidebar_pickers)
current = next(name for name, (_, title, _) in PAGES.items() if title == page.title)
with ui.app_run():
    st.title(page.title)
    ui.ensure_default_dataset()
    ui.sidebar_pickers(pages)
    ui.keep_root_url(list(PAGES), current)
    try:
        page.run()
    finally:
        ui.sidebar_status()
