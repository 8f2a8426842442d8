"""Weight files: safe loading (``weights_only=True``), strict state-dict matching, file hashes.

Every weights file vidviz reads (its own checkpoints, torchvision state dicts, 2D ResNet-50
weights to inflate) goes through :func:`torch_load`; every state dict is matched against its
model with the one report of :func:`mismatch_error` (missing, unexpected and mis-shaped keys).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from vidviz.errors import CheckpointError


def torch_load(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    if path.stat().st_size == 0:
        raise CheckpointError("checkpoint file is empty", path)
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):  # zip and pickle files are binary
        raise CheckpointError("a text file, not a PyTorch checkpoint", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError("file carries pickled Python objects; vidviz only loads plain tensors and metadata",
                                  path) from None
        raise CheckpointError("not a PyTorch checkpoint (corrupt or wrong file type)", path) from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError, KeyError, IndexError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"corrupt or not a PyTorch checkpoint ({reason})", path) from None


def _listed(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def mismatch_error(what: str, source: str | Path, missing: list[str], unexpected: list[str],
                   shaped: list[str]) -> CheckpointError | None:
    """The one report of a state dict that does not fit its model (None when it fits)."""
    if not (missing or unexpected or shaped):
        return None
    parts = []
    if shaped:
        parts.append("mis-shaped: " + _listed(shaped))
    if missing:
        parts.append(f"missing {len(missing)}: " + _listed(missing))
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: " + _listed(unexpected))
    return CheckpointError(f"{what} do not match the model; " + "; ".join(parts), source)


def load_state_strict(model: torch.nn.Module, state: dict, source: str | Path, what: str = "weights") -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error listing them."""
    own = model.state_dict()
    shaped = sorted(f"{k} {tuple(getattr(state[k], 'shape', ()))} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                    if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(own[k].shape))
    err = mismatch_error(what, source, sorted(set(own) - set(state)), sorted(set(state) - set(own)), shaped)
    if err is not None:
        raise err
    model.load_state_dict(state, strict=True)
