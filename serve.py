"""vidviz's server: ``streamlit run serve.py`` (what ``make run`` does) serves the app in app.py, and adds:

* **old-style page links**: a request for ``/viewer?clip=..`` (a sub-path, as Streamlit's own page URLs are)
  is redirected to ``/?page=viewer&clip=..``. Loaded at a sub-path, Streamlit's client first probes
  ``/viewer/_stcore/health`` and ``/viewer/_stcore/host-config`` (two 404s in the browser's console) before it
  finds the server at the root;
* **a warm start**: before the server reports itself ready, the modules the first page needs are imported
  and the default dataset's label files read, so the first visitor does not wait for them.

``streamlit run app.py`` still works: it only lacks these two.
"""

from contextlib import asynccontextmanager
from urllib.parse import urlencode

import streamlit as st
from starlette.responses import RedirectResponse
from starlette.routing import Route

PAGES = ("browser", "viewer", "gallery", "quality")  # = app.py's page paths


async def to_root(request):
    """/<page>?a=1 -> /?page=<page>&a=1 (307: the browser repeats the request there)."""
    page = request.url.path.strip("/")
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    return RedirectResponse(url="/?" + urlencode([("page", page), *query]), status_code=307)


def _warm() -> None:
    import pandas  # noqa: F401  (the first page's tables)

    import ui  # noqa: F401  (the pages' shared code: imports the library's light modules)
    from vidviz import config, tables  # noqa: F401
    from vidviz.data.datasets import open_dataset

    if (config.DEFAULT_DATA / "labels.json").is_file():
        open_dataset(config.DEFAULT_DATA).fingerprint()  # reads the label files: the OS keeps them cached


@asynccontextmanager
async def warm_start(_app):
    try:
        _warm()
    except Exception:  # a warm start is an optimisation: the app reports any real problem itself
        pass
    yield


app = st.App("app.py", routes=[Route(path, to_root) for p in PAGES for path in (f"/{p}", f"/{p}/")],
             lifespan=warm_start)
