"""Where things live by default, and the environment variables that move them.

Each location is read from the environment when it is used (``config.STORE_DIR`` is
computed on access), so a test or a server can point vidviz elsewhere at any time:

==================== =============================================== ==========================
variable             what                                            default
==================== =============================================== ==========================
``VIDVIZ_HOME``      the project folder                              the source checkout
``VIDVIZ_DATA``      the embedded default dataset                    ``$VIDVIZ_HOME/data/ssv2-synth``
``VIDVIZ_CHECKPOINT`` the default checkpoint                         ``$VIDVIZ_HOME/checkpoints/default.pt``
``VIDVIZ_STORES``    precomputed stores (predictions, maps, quality) ``$VIDVIZ_HOME/stores``
``VIDVIZ_DATA_ROOTS`` extra dataset roots the app offers (``:``-sep.) none
``VIDVIZ_CHECKPOINTS`` extra checkpoint folders the app offers (``:``-sep.) none
``VIDVIZ_CACHE_MB``  the backend's cache budget (opened clips, maps)  768
``VIDVIZ_MAX_FRAMES`` longest video decoded (frames; read at start)    18000
``VIDVIZ_MAX_PIXELS`` largest frame decoded (pixels; read at start)     16777216 (4096 x 4096)
``VIDVIZ_DEBUG``     the CLI re-raises unexpected errors with a traceback off
``VIDVIZ_MALLOC_TUNING`` ``0`` turns the glibc allocator tuning off  on
==================== =============================================== ==========================
"""

from __future__ import annotations

import os
from pathlib import Path

#: torchvision's nine video classifiers -> the name of each one's weights enum (light to import, for the CLI's
#: choices; :mod:`vidviz.models.torchvision_video` builds them).
TORCHVISION_ARCHS = {
    "r3d_18": "R3D_18_Weights", "mc3_18": "MC3_18_Weights", "r2plus1d_18": "R2Plus1D_18_Weights",
    "s3d": "S3D_Weights", "mvit_v1_b": "MViT_V1_B_Weights", "mvit_v2_s": "MViT_V2_S_Weights",
    "swin3d_t": "Swin3D_T_Weights", "swin3d_s": "Swin3D_S_Weights", "swin3d_b": "Swin3D_B_Weights",
}

#: Settings of the embedded default dataset (``vidviz synth`` defaults; light to import, unlike the generator).
DEFAULT_CLIPS, DEFAULT_SEED, DEFAULT_DIFFICULTY, DEFAULT_HARD = 1500, 0, 1.0, 0.1


def _home() -> Path:
    return Path(os.environ.get("VIDVIZ_HOME", Path(__file__).resolve().parents[1]))


def positive_int(name: str, default: int) -> int:
    """A whole number of at least 1 from the environment variable ``name`` (``default`` when unset); a bad value
    is one clear error naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        from vidviz.errors import UsageError

        raise UsageError(f"{name}={raw!r}: expected a whole number of at least 1")
    return int(raw)


_LOCATIONS = {
    "PROJECT_ROOT": _home,
    "DEFAULT_DATA": lambda: Path(os.environ.get("VIDVIZ_DATA", _home() / "data" / "ssv2-synth")),
    "CHECKPOINT_DIR": lambda: _home() / "checkpoints",
    "DEFAULT_CHECKPOINT": lambda: Path(os.environ.get("VIDVIZ_CHECKPOINT", _home() / "checkpoints" / "default.pt")),
    "STORE_DIR": lambda: Path(os.environ.get("VIDVIZ_STORES", _home() / "stores")),
    "EXTRA_DATA_ROOTS": lambda: [Path(p) for p in os.environ.get("VIDVIZ_DATA_ROOTS", "").split(os.pathsep) if p],
    "CACHE_MB": lambda: positive_int("VIDVIZ_CACHE_MB", 768),
    "EXTRA_CHECKPOINT_DIRS": lambda: [Path(p) for p in os.environ.get("VIDVIZ_CHECKPOINTS", "").split(os.pathsep) if p],
}


def __getattr__(name: str):
    try:
        return _LOCATIONS[name]()
    except KeyError:
        raise AttributeError(f"module 'vidviz.config' has no attribute {name!r}") from None
