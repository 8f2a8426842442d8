"""Small file helpers: atomic writes, safe JSON reads, paths that stay inside a root, file hashes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from vidviz.errors import DatasetError, UnsafePathError

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file follows the umask like any other
        os.replace(tmp, path)
    except OSError as e:  # a full disk names no file: say which one could not be written
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    mask = os.umask(0)  # read once, at import: os.umask can only be read by setting it
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode())


def read_json(path: str | Path):
    """Parse a JSON file or raise :class:`DatasetError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("file not found", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DatasetError("not a text file (expected JSON)", path) from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None


def safe_child(root: str | Path, relative: str) -> Path:
    """``root / relative``, refusing anything that would leave ``root``."""
    root = Path(root).resolve()
    rel = str(relative)
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise UnsafePathError(f"path {rel!r} would leave the dataset root", root)
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(f"path {rel!r} would leave the dataset root", root)
    return target


def check_id(clip_id: str, source: str | Path) -> str:
    """A clip id must be a plain file name: letters, digits, ``_ . -``."""
    cid = str(clip_id)
    if not _SAFE_ID.match(cid) or ".." in cid:
        raise UnsafePathError(f"clip id {cid!r} is not a plain name and would leave the dataset root", source)
    return cid


def file_hash(path: str | Path) -> str:
    """First 16 hex digits of the file's SHA-256 (keys stores to the exact checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def checkpoint_hash(path: str | Path) -> str:
    """What keys stores to a checkpoint: :func:`file_hash` of a checkpoint file; of a Hugging Face model folder, the
    first 16 hex digits of a SHA-256 over its ``config.json`` and weight files (names and contents)."""
    path = Path(path)
    if not path.is_dir():
        return file_hash(path)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.name == "config.json" or f.name.startswith(("model", "pytorch_model"))
                            and f.suffix in (".safetensors", ".bin", ".json")):
            h.update(f"{f.name}|{file_hash(f)}|".encode())
    return h.hexdigest()[:16]
