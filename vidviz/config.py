"""Where things live by default (override with environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("VIDVIZ_HOME", Path(__file__).resolve().parents[1]))
#: The embedded default dataset, generated on first use by ``vidviz synth`` (see README).
DEFAULT_DATA = Path(os.environ.get("VIDVIZ_DATA", PROJECT_ROOT / "data" / "ssv2-synth"))
#: Settings of the embedded default dataset (``vidviz synth`` defaults; light to import, unlike the generator).
DEFAULT_CLIPS, DEFAULT_SEED, DEFAULT_DIFFICULTY, DEFAULT_HARD = 1500, 0, 1.0, 0.1
#: The shipped default checkpoint.
CHECKPOINT_DIR = PROJECT_ROOT / "checkpoints"
DEFAULT_CHECKPOINT = Path(os.environ.get("VIDVIZ_CHECKPOINT", CHECKPOINT_DIR / "default.pt"))
#: Precomputed stores (predictions + maps per split), keyed by checkpoint and dataset.
STORE_DIR = Path(os.environ.get("VIDVIZ_STORES", PROJECT_ROOT / "stores"))
#: Extra dataset roots the app may open (``os.pathsep``-separated); users pick among them, never type paths.
EXTRA_DATA_ROOTS = [Path(p) for p in os.environ.get("VIDVIZ_DATA_ROOTS", "").split(os.pathsep) if p]
