"""UI glue shared by the pages: the cached backend, the sidebar, errors and query params.

It lives outside ``pages/`` so that it never shows as a page. No computation here beyond
calling :mod:`vidviz`; the library never imports streamlit.
"""

from __future__ import annotations

import logging
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from vidviz import config
from vidviz.errors import VidvizError
from vidviz.player import player_assets

if TYPE_CHECKING:
    from vidviz.backend import Backend

# Nothing here imports torch at module level: app.py paints the page's title while the first
# page imports the model code (about 1.5 s on a 2-core machine).

log = logging.getLogger("vidviz.app")
DEFAULT_LABEL = "Embedded default (generated Something-Something-like)"


def dataset_roots() -> dict[str, Path]:
    """Dataset choices: the default plus configured roots. Users choose; they never type paths."""
    roots = {DEFAULT_LABEL: config.DEFAULT_DATA}
    for p in config.EXTRA_DATA_ROOTS:
        roots[p.name or str(p)] = p
    return roots


def checkpoints() -> dict[str, Path]:
    """Checkpoint choices: the shipped default, then under checkpoints/ and ``VIDVIZ_CHECKPOINTS`` every vidviz
    checkpoint (``*.pt``: trained, or torchvision weights imported) and every Hugging Face model folder (a folder
    with a ``config.json``, shown with a trailing ``/``)."""
    found = {"default.pt (shipped)": config.DEFAULT_CHECKPOINT}
    for folder in [config.CHECKPOINT_DIR, *config.EXTRA_CHECKPOINT_DIRS]:
        if not folder.is_dir():
            continue
        files = [p for p in folder.glob("*.pt") if not p.name.endswith(".resume.pt")]
        hf = [p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()]
        for p in sorted(files + hf):
            if p.resolve() != config.DEFAULT_CHECKPOINT.resolve():
                name = p.name + ("/" if p.is_dir() else "")
                found[name if name not in found else str(p)] = p
    return found


def ensure_default_dataset() -> None:
    """Generate the embedded default dataset on first run (or when an older generator made it), with a progress bar."""
    from vidviz.data import synth

    if synth.is_current(config.DEFAULT_DATA):
        return
    st.info("Generating the embedded default dataset "
            f"({config.DEFAULT_CLIPS} clips, seed {config.DEFAULT_SEED}, generator version {synth.GENERATOR_VERSION}). "
            "This happens once.")
    bar = st.progress(0.0, text="Generating clips...")

    def progress(done, total):
        bar.progress(done / total, text=f"Generating clips... {done}/{total}")

    try:
        synth.generate(config.DEFAULT_DATA, config.DEFAULT_CLIPS, config.DEFAULT_SEED, config.DEFAULT_DIFFICULTY,
                       progress=progress, hard=config.DEFAULT_HARD)
    except Exception as e:  # disk full, permissions...
        log.exception("default dataset generation failed")
        st.error(f"Could not generate the default dataset in {config.DEFAULT_DATA}: {e}")
        st.stop()
    bar.empty()
    st.rerun()


@st.cache_resource(show_spinner="Opening the dataset...")
def get_dataset(data_root: str):
    """One opened dataset per root, shared by every session and by the backends over it (no torch needed)."""
    from vidviz.data.datasets import open_dataset

    return open_dataset(data_root)


@st.cache_resource(show_spinner="Loading the model...")
def get_backend(checkpoint: str, data_root: str, cache_mb: int | None = None) -> Backend:
    """One backend per checkpoint + dataset (+ cache budget, ``VIDVIZ_CACHE_MB``), shared by every session."""
    from vidviz.backend import Backend

    return Backend(checkpoint, data_root, dataset=get_dataset(data_root), cache_mb=cache_mb)


def chosen() -> tuple[Path, Path]:
    """(dataset root, checkpoint path) picked in the sidebar (or named by the URL on a first visit)."""
    roots, ckpts = dataset_roots(), checkpoints()
    root = roots.get(st.session_state.get("vv_dataset") or st.query_params.get("dataset", ""), config.DEFAULT_DATA)
    ckpt = ckpts.get(st.session_state.get("vv_checkpoint") or st.query_params.get("checkpoint", ""),
                     config.DEFAULT_CHECKPOINT)
    return root, ckpt


def dataset():
    """The chosen dataset, opened without loading the model (the browser's first paint needs no more)."""
    try:
        return get_dataset(str(chosen()[0]))
    except VidvizError as e:
        st.error(f"Cannot open this dataset: {e}")
        st.stop()


def sidebar_pickers(pages: list) -> None:
    """The page links, then the dataset and checkpoint pickers (kept in session state and the URL).

    They need no model, so they come first. The links are drawn here rather than by Streamlit's
    automatic page list, which would first show the files of pages/ for a moment.
    """
    roots, ckpts = dataset_roots(), checkpoints()
    qp = st.query_params
    with st.sidebar:
        for p in pages:
            st.page_link(p)
        st.divider()
        st.markdown("### vidviz")
        names = list(roots)
        want = qp.get("dataset", names[0])
        st.selectbox("Dataset", names, index=names.index(want) if want in names else 0, key="vv_dataset",
                     on_change=lambda: set_param("dataset", st.session_state.vv_dataset))
        cnames = list(ckpts)
        cwant = qp.get("checkpoint", cnames[0])
        st.selectbox("Checkpoint", cnames, index=cnames.index(cwant) if cwant in cnames else 0, key="vv_checkpoint",
                     on_change=lambda: set_param("checkpoint", st.session_state.vv_checkpoint))


def sidebar_status() -> None:
    """The split picker and what is open, drawn after the page (so the page paints first); never raises."""
    try:
        backend = backend_or_none(show_errors=False)
    except Exception:  # the page has shown the error already
        backend = None
    qp = st.query_params
    with st.sidebar:
        if backend is not None and backend.dataset is not None:
            splits = backend.dataset.splits
            swant = qp.get("split", "test" if "test" in splits else splits[0])
            st.selectbox("Split", splits, index=splits.index(swant) if swant in splits else 0, key="vv_split",
                         on_change=lambda: set_param("split", st.session_state.vv_split))
            ds = backend.dataset
            st.caption(f"{len(ds.records)} clips, {len(ds.classes)} classes ({ds.format}); "
                       f"model: {backend.model.arch}, {len(backend.classes)} classes, on {backend.device.type}.")
            if ds.problems:
                with st.expander(f"{len(ds.problems)} clip(s) skipped"):
                    for where, why in ds.problems[:50]:
                        st.text(f"{where}: {why}")
        st.caption("Maps explain class logits (pre-softmax).")
    if backend is not None:
        backend.warm_up()


def landing() -> None:
    """What vidviz shows and the three steps through it (on the first page)."""
    with st.container(border=True):
        st.markdown("**vidviz shows what a video classifier looks at**, frame by frame: Grad-CAM maps of any "
                    "target class over every frame of a clip, and where the model fails across a whole split.")
        c1, c2, c3 = st.columns(3)
        c1.page_link("pages/browser.py", label="1. Pick a clip below (filter by class or text, then open it)",
                     icon=":material/table_view:")
        c2.page_link("pages/viewer.py", label="2. See its per-frame maps, class by class",
                     icon=":material/local_fire_department:")
        c3.page_link("pages/gallery.py", label="3. Find where the model fails: the confusion gallery",
                     icon=":material/grid_view:")


def remember(*keys: str) -> None:
    """Keep these widgets' values when the user leaves the page and comes back (Streamlit drops the state of
    widgets a run does not draw): call before drawing them; their values are restored, then kept again."""
    for k in keys:
        shadow = f"_kept_{k}"
        if k not in st.session_state and shadow in st.session_state:
            st.session_state[k] = st.session_state[shadow]


def keep(*keys: str) -> None:
    """Record the values of widgets drawn in this run (see :func:`remember`)."""
    for k in keys:
        if k in st.session_state:
            st.session_state[f"_kept_{k}"] = st.session_state[k]


def home_page(names: list[str]) -> str:
    """The page the app's root path shows: the one the URL's ``page`` parameter names, else the first."""
    want = st.query_params.get("page")
    return want if want in names else names[0]


# Every page's address names its page in the query (/?page=gallery&...) at the app's root path: a link
# to a sub-path (/gallery) makes Streamlit's client probe /gallery/_stcore/... first (two 404s). This
# script moves the address to the root path once Streamlit has settled it after a page switch.
_ROOT_URL_JS = r"""
export default function ({ data }) {
  const move = () => {
    const u = new URL(window.location.href);
    const m = u.pathname.match(/^(.*\/)([^/]+)\/?$/);
    if (!m || m[2] !== data.page || !data.pages.includes(m[2])) return;
    u.pathname = m[1];
    u.searchParams.set("page", m[2]);
    window.history.replaceState(window.history.state, "", u.toString());
  };
  const timers = [0, 300, 1500].map((ms) => setTimeout(move, ms));
  return () => timers.forEach(clearTimeout);
}
"""
_ROOT_URL = st.components.v2.component("vidviz_root_url", js=_ROOT_URL_JS)


def keep_root_url(names: list[str], current: str) -> None:
    """Move the address bar from /<page>?page=<page>&... to /?page=<page>&... (in the browser, no script run)."""
    _ROOT_URL(key="vv_root_url", data={"pages": names, "page": current}, height=0)  # new data per page: runs again


def set_param(name: str, value) -> None:
    st.query_params[name] = str(value)


_APP = threading.local()  # whether app.py is running in this thread's script run


@contextmanager
def app_run():
    """Wraps app.py's page run: marks this script run as one that went through app.py."""
    _APP.running = True
    try:
        yield
    finally:
        _APP.running = False


def run_through_app() -> None:
    """Make sure this page runs inside app.py (its navigation, title and sidebar); every page calls this first.

    Streamlit keeps its legacy multipage mode (run ``pages/<name>.py`` alone) while it believes
    no script calls ``st.navigation``: in a fresh server process until app.py has run once (so for a
    deep link such as ``/viewer?clip=..`` that is the process's first request), and in every run of
    ``streamlit.testing.v1.AppTest``. A page run that way runs app.py here, in the same script run
    (no rerun, so a button's click is kept), and stops its own copy.
    """
    if getattr(_APP, "running", False):
        return
    import runpy

    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    runpy.run_path(str(Path(__file__).resolve().parent / "app.py"), run_name="__main__")
    st.stop()


def backend_or_none(show_errors: bool = True) -> Backend | None:
    """The shared backend of the chosen dataset and checkpoint (loaded once, with a spinner), or None on an error."""
    root, ckpt = chosen()
    try:
        b = get_backend(str(ckpt), str(root), config.CACHE_MB)
        if b.classes_note and show_errors:
            st.caption(b.classes_note)
        return b
    except VidvizError as e:
        if show_errors:
            st.error(f"Cannot open this dataset/checkpoint: {e}")
    except Exception as e:
        log.error("backend failed: %s", traceback.format_exc())
        if show_errors:
            st.error(f"Cannot open this dataset/checkpoint ({type(e).__name__}: {e}). Details are in the server log.")
    return None


def backend_for(checkpoint: str | Path) -> Backend:
    """The shared backend of another checkpoint over the chosen dataset (a compare row)."""
    root, _ = chosen()
    return get_backend(str(checkpoint), str(root), config.CACHE_MB)


def backend() -> Backend:
    b = backend_or_none()
    if b is None:
        st.stop()
    return b


def split() -> str:
    return st.session_state.get("vv_split", st.query_params.get("split", "test"))


@contextmanager
def plain_errors():
    """Show library errors as one-line ``st.error`` messages, never a traceback."""
    try:
        yield
    except VidvizError as e:  # Streamlit's stop/rerun are BaseExceptions and pass through
        st.error(str(e))
    except Exception as e:
        log.error("page error: %s", traceback.format_exc())
        st.error(f"Something went wrong ({type(e).__name__}: {e}). Details are in the server log.")


def open_in_viewer(clip_id: str, cls: int | None = None) -> None:
    """Jump to the viewer with ``clip_id`` (and ``cls``) selected."""
    params = {k: v for k, v in st.query_params.to_dict().items() if k in ("dataset", "checkpoint", "split")}
    params["page"] = "viewer"
    params["clip"] = str(clip_id)
    if cls is not None:
        params["cls"] = str(int(cls))
    st.switch_page("pages/viewer.py", query_params=params)


@st.cache_data(max_entries=16, show_spinner=False)
def _checkpoint_hash(path: str, mtime_ns: int) -> str:
    from vidviz.data.io import checkpoint_hash

    return checkpoint_hash(path)


def stored_predictions(ds, split_name: str):
    """Predictions of a precomputed store for the chosen checkpoint + this dataset + split, when one exists.

    Needs no model: a store is keyed by the checkpoint file's hash and the dataset's fingerprint.
    """
    from vidviz.jobs import store as vstore

    ckpt = chosen()[1]
    try:
        st_ = vstore.find_store(ds, _checkpoint_hash(str(ckpt), ckpt.stat().st_mtime_ns), split_name)
    except (VidvizError, OSError):
        return None
    return None if st_ is None else st_.prediction_columns()


# ---------------------------------------------------------------- the heatmap player (a components.v2 component)

_PLAYER = st.components.v2.component("vidviz_player", isolate_styles=False, **player_assets())
PLAYER_PARAMS = ("cls", "frame", "alpha", "norm", "gt")  # kept in the URL by the player itself


@st.cache_data(max_entries=48, show_spinner=False)
def _payload(checkpoint_hash: str, data_root: str, key: str, method: str, layer: str, extra: tuple[int, ...],
             settings: tuple, _b: Backend) -> dict:
    """One payload per (checkpoint, clip, method, layer, classes asked for, settings): built once, then served here."""
    from vidviz.player.payload import build_payload

    return build_payload(_b, key, method, layer, extra, dict(settings))


def player_init(key: str, clip_id: str | None, top1: int, n_classes: int, n_frames: int, default_frame: int) -> dict:
    """The player's state when a view opens: the URL's, if the URL names this same clip; else the clip's own top-1."""
    qp = st.query_params
    same = clip_id is not None and qp.get("clip") == clip_id

    def num(name, lo, hi, cast, fallback):
        try:
            v = cast(qp.get(name))
            return v if lo <= v <= hi else fallback
        except (TypeError, ValueError):
            return fallback

    if not same:
        return {"cls": top1, "frame": default_frame, "alpha": 0.5, "norm": "clip", "gt": False}
    return {"cls": num("cls", 0, n_classes - 1, int, top1), "frame": num("frame", 1, n_frames, int, default_frame),
            "alpha": num("alpha", 0.0, 1.0, float, 0.5), "norm": qp.get("norm") if qp.get("norm") in ("clip", "frame")
            else "clip", "gt": qp.get("gt") == "1"}


def player(b: Backend, key: str, method: str, layer: str, init: dict, view: int,
           settings: dict | None = None) -> int | None:
    """Mount the player for one clip; returns a class the user asked for whose map is not in the payload yet."""
    fixed = tuple(sorted((settings or {}).items()))
    extra_key = f"vw_extra:{key}:{method}:{layer}:{fixed}"
    extra = tuple(st.session_state.get(extra_key, ()))
    root = str(b.dataset.root) if b.dataset else ""
    payload = _payload(b.checkpoint_hash, root, key, method, layer, extra, fixed, b)
    if init["cls"] not in payload["available"]:  # e.g. a deep link to a class outside the top predictions
        st.session_state[extra_key] = (*extra, init["cls"])
        payload = _payload(b.checkpoint_hash, root, key, method, layer, (*extra, init["cls"]), fixed, b)
    result = _PLAYER(key="vw_player", data={**payload, "init": init, "view": view}, on_request_change=lambda: None)
    asked = result.get("request") if hasattr(result, "get") else getattr(result, "request", None)
    if asked is not None and int(asked) not in payload["available"]:
        st.session_state[extra_key] = (*extra, int(asked))
        return int(asked)
    return None
