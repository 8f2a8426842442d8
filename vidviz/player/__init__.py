"""The browser-side heatmap player: its payload (:mod:`vidviz.player.payload`) and its HTML/CSS/JS (files here).

The app mounts the files as a Streamlit component (``ui.py``); the library never imports
streamlit. One payload per (clip, layer, method) carries the displayed frames as JPEG and
the raw maps of every available class as float16, so class switch, opacity, normalisation,
scrubbing, playback and hover all happen in the browser without a script run. Reading the
assets imports nothing heavy (the app registers the component before torch is loaded).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
ICON = ASSETS / "icon.png"  # the app's page icon (a jet heatmap blob), served by the app itself


@cache
def player_assets() -> dict[str, str]:
    """The player's HTML, CSS and JavaScript (files in this folder), read once."""
    return {kind: (ASSETS / f"player.{kind}").read_text(encoding="utf-8") for kind in ("html", "css", "js")}
