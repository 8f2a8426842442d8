"""Batches of decoded clips for training, evaluation and precomputation.

DataLoader workers overlap decoding with compute. A clip that fails to decode does not
stop the run: its error comes back beside the batch, so callers report it and go on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from vidviz.data.datasets import ClipRecord
from vidviz.data.video import Geometry, InputSpec, load_clip, resize_frames, to_tensor
from vidviz.errors import VidvizError


class ClipTensors(Dataset):
    """Item i: (i, tensor or None, error). ``uint8_size`` returns raw frames (T, S, S, 3) at that size."""

    def __init__(self, records: Sequence[ClipRecord], spec: InputSpec, uint8_size: int | None = None):
        self.records, self.spec, self.uint8_size = list(records), spec, uint8_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        try:
            clip = load_clip(self.records[i].path, self.spec)
            geometry = clip.geometry
            if self.uint8_size:
                return i, torch.from_numpy(resize_frames(clip.frames, self.uint8_size).copy()), "", geometry  # (T, S, S, 3)
            return i, to_tensor(clip.frames, self.spec), "", geometry  # (3, T, S, S)
        except VidvizError as e:
            return i, None, str(e), None


def _collate(batch):
    idx = [b[0] for b in batch if b[1] is not None]
    xs = [b[1] for b in batch if b[1] is not None]
    errors = [(b[0], b[2]) for b in batch if b[1] is None]
    geometry = [b[3] for b in batch if b[1] is not None]
    return idx, (torch.stack(xs) if xs else None), errors, geometry


def _worker_init(_):
    torch.set_num_threads(1)


@dataclass
class Batch:
    indices: list[int]  # positions in the record list
    x: torch.Tensor | None  # (B, 3, T, S, S) float, or (B, T, S, S, 3) uint8
    errors: list[tuple[int, str]]  # (position, message) of clips that failed
    geometry: list[Geometry] = field(default_factory=list)  # per decoded clip, in the order of ``indices``


def iterate_batches(records: Sequence[ClipRecord], spec: InputSpec, batch_size: int = 8, workers: int = 2,
                    uint8_size: int | None = None, order: Sequence[int] | None = None) -> Iterator[Batch]:
    """Decode ``records`` (optionally in ``order``) in batches, with ``workers`` decoding processes."""
    ds = ClipTensors(records, spec, uint8_size)
    sampler = list(order) if order is not None else None
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=workers,
                        collate_fn=_collate, worker_init_fn=_worker_init if workers else None,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    for idx, x, errors, geometry in loader:
        yield Batch(idx, x, errors, geometry)
