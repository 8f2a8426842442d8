"""Typed errors with plain, one-line messages.

Every error vidviz raises on bad input derives from :class:`VidvizError`. The message
names the file (when there is one) and the problem, so the CLI can print it as one
line and the app can show it with ``st.error`` without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class VidvizError(Exception):
    """Base class: ``str(err)`` is a complete, one-line, user-facing message."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        text = " ".join(str(message).split())  # one line, always
        super().__init__(f"{self.path}: {text}" if self.path else text)


class VideoError(VidvizError):
    """A video file (or frame folder) cannot be decoded or is unusable."""


class InputTooLargeError(VideoError):
    """A video is too long or its frames too large to process safely."""


class DatasetError(VidvizError):
    """A dataset's label or split files are missing or malformed."""


class UnsafePathError(DatasetError):
    """A path or id would leave the root it must stay inside."""


class CheckpointError(VidvizError):
    """A checkpoint file is corrupt, unsafe, or does not match the model."""


class StoreError(VidvizError):
    """A precomputed store is missing, incomplete or stale."""


class ExplainError(VidvizError):
    """An explanation cannot be made as asked: unknown layer, method or class."""


class UsageError(VidvizError):
    """A setting or argument is out of range (a device, a count, a class name)."""
