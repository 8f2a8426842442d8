"""The browser-side heatmap player: its payload (built here, in Python) and its HTML/CSS/JS (files beside this one).

The app mounts the files as a Streamlit component (``ui.py``); the library never imports
streamlit. One payload per (clip, layer, method) carries the displayed frames as JPEG and
the raw maps of every available class as float16, so class switch, opacity, normalisation,
scrubbing, playback and hover all happen in the browser without a script run.
"""

from vidviz.player.payload import ASSETS, build_payload, player_assets

__all__ = ["ASSETS", "build_payload", "player_assets"]
