"""Tables for the dataset browser: one row per clip, fast filters and paging (pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vidviz.data.datasets import VideoDataset
from vidviz.data.video import probe
from vidviz.errors import VidvizError


def clip_table(ds: VideoDataset, classes: list[str] | None = None) -> pd.DataFrame:
    """id, label (class name), template, placeholders, split, label_index for every clip."""
    names = classes or ds.classes
    recs = ds.records
    label_idx = np.array([-1 if r.label is None else r.label for r in recs], dtype=np.int64)
    names_arr = np.array(list(names) + [""], dtype=object)
    df = pd.DataFrame({
        "id": pd.array([r.id for r in recs], dtype="string"),
        "label": names_arr[label_idx] if len(recs) else [],
        "placeholders": pd.array([", ".join(r.placeholders) for r in recs], dtype="string"),
        "split": pd.Categorical([r.split for r in recs]),
        "label_index": label_idx,
    })
    df["label"] = df["label"].astype("string")
    return df


def filter_table(df: pd.DataFrame, classes: list[str] | None = None, split: str | None = None,
                 text: str | None = None) -> pd.DataFrame:
    """Rows of ``classes`` (names), ``split`` ('all' or None for every split), containing ``text``."""
    mask = np.ones(len(df), dtype=bool)
    if split and split != "all":
        mask &= (df["split"] == split).to_numpy()
    if classes:
        mask &= df["label"].isin(classes).to_numpy()
    if text:
        t = text.strip().lower()
        if t:
            hay = df["id"].str.lower() + " " + df["label"].fillna("").str.lower() + " " + df["placeholders"].str.lower()
            mask &= hay.str.contains(t, regex=False).fillna(False).to_numpy()
    return df[mask]


def page_of(df: pd.DataFrame, page: int, size: int) -> pd.DataFrame:
    """Rows of 1-based page ``page`` of ``size`` rows (clamped to the last page)."""
    pages = max(1, -(-len(df) // size))
    page = min(max(1, int(page)), pages)
    return df.iloc[(page - 1) * size: page * size]


def with_video_info(page: pd.DataFrame, ds: VideoDataset, fps_default: float = 12.0) -> pd.DataFrame:
    """Add frame count and duration (decoded, cached per file) to a page of rows."""
    frames, secs = [], []
    for cid in page["id"]:
        try:
            info = probe(ds.get(str(cid)).path, fps_default)
            frames.append(info.num_frames)
            secs.append(round(info.duration, 2))
        except VidvizError:
            frames.append(None)
            secs.append(None)
    out = page.copy()
    out["frames"] = pd.array(frames, dtype="Int64")
    out["duration_s"] = pd.array(secs, dtype="Float64")
    return out


def class_counts(df: pd.DataFrame) -> dict[str, int]:
    vc = df["label"].fillna("(no label)").value_counts()
    return {str(k): int(v) for k, v in vc.items()}
