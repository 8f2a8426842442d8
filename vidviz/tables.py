"""The pages' tables: the browser's clip table, the gallery's case selection, paging, confused pairs.

Everything here is plain pandas over a dataset's records or a store's table; the pages only
lay the results out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vidviz.data.datasets import VideoDataset
from vidviz.data.video import header
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


def page_count(n_rows: int, size: int) -> int:
    """Pages of ``size`` rows needed for ``n_rows`` (at least 1)."""
    return max(1, -(-int(n_rows) // int(size)))


def page_of(df: pd.DataFrame, page: int, size: int) -> pd.DataFrame:
    """Rows of 1-based page ``page`` of ``size`` rows (clamped to the last page)."""
    page = min(max(1, int(page)), page_count(len(df), size))
    return df.iloc[(page - 1) * size: page * size]


def with_video_info(page: pd.DataFrame, ds: VideoDataset, fps_default: float = 12.0) -> pd.DataFrame:
    """Add frame count and duration (as each container declares them, no decoding) to a page of rows."""
    frames, secs = [], []
    for cid in page["id"]:
        try:
            info = header(ds.get(str(cid)).path, fps_default)
            frames.append(info.num_frames)
            secs.append(round(info.duration, 2))
        except VidvizError:
            frames.append(None)
            secs.append(None)
    out = page.copy()
    out["frames"] = pd.array(frames, dtype="Int64")
    out["duration_s"] = pd.array(secs, dtype="Float64")
    return out


def with_predictions(page: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """Merge a store's prediction columns into a page of clips, right after the label (so they are in view)."""
    if predictions is None:
        return page
    out = page.merge(predictions, on="id", how="left")
    first = [c for c in ("id", "label", "prediction", "p", "case") if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


def class_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Clips per class of a filtered table, most first: columns ``class``, ``clips``."""
    vc = df["label"].fillna("(no label)").value_counts()
    return pd.DataFrame({"class": [str(k) for k in vc.index], "clips": vc.to_numpy(dtype=np.int64)})


# ---------------------------------------------------------------- the confusion gallery

SORTS = {"confidence": ("prob", False), "margin": ("margin", True), "entropy": ("entropy", False)}


def _pair_mask(table: pd.DataFrame, true_cls: int | None, pred_cls: int | None) -> np.ndarray:
    """Rows of ``true_cls`` and ``pred_cls`` (None: any) of a store's table."""
    mask = np.ones(len(table), dtype=bool)
    if true_cls is not None:
        mask &= (table["label"] == true_cls).to_numpy()
    if pred_cls is not None:
        mask &= (table["pred"] == pred_cls).to_numpy()
    return mask


def select(table: pd.DataFrame, case: str, sort: str = "confidence", true_cls: int | None = None,
           pred_cls: int | None = None) -> pd.DataFrame:
    """Rows of one case, optionally of one true and/or predicted class, sorted.

    confidence: most confident first; margin: smallest top-1/top-2 margin first (the closest calls);
    entropy: most uncertain first.
    """
    rows = table[_pair_mask(table, true_cls, pred_cls) & (table["case"] == case).to_numpy()]
    col, ascending = SORTS[sort]
    return rows.sort_values(col, ascending=ascending, kind="stable")


def confused_pairs(conf: np.ndarray, classes: list[str], top: int = 20) -> pd.DataFrame:
    """The most frequent (true, predicted) pairs off the diagonal."""
    c = conf.copy()
    np.fill_diagonal(c, 0)
    flat = np.argsort(-c, axis=None, kind="stable")[:top]
    t, p = np.unravel_index(flat, c.shape)
    keep = c[t, p] > 0
    row_tot = conf.sum(1)
    return pd.DataFrame({"true": [classes[i] for i in t[keep]], "predicted": [classes[j] for j in p[keep]],
                         "clips": c[t, p][keep],
                         "share of true class": np.round(c[t, p][keep] / np.maximum(row_tot[t[keep]], 1), 3),
                         "true_idx": t[keep], "pred_idx": p[keep]})


def case_counts(table: pd.DataFrame, true_cls: int | None = None, pred_cls: int | None = None) -> dict[str, int]:
    """Clips of each case among those of ``true_cls`` and ``pred_cls`` (None: any)."""
    vc = table["case"][_pair_mask(table, true_cls, pred_cls)].value_counts()
    return {c: int(vc.get(c, 0)) for c in ("positive", "medium", "negative")}
