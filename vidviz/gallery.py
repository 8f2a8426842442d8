"""The confusion gallery's data: sort, filter and page a store's table; confused pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

SORTS = {"confidence": ("prob", False), "margin": ("margin", True), "entropy": ("entropy", False)}


def select(table: pd.DataFrame, case: str, sort: str = "confidence", true_cls: int | None = None,
           pred_cls: int | None = None) -> pd.DataFrame:
    """Rows of one case, optionally of one true and/or predicted class, sorted.

    confidence: most confident first; margin: smallest top-1/top-2 margin first (the closest calls);
    entropy: most uncertain first.
    """
    mask = (table["case"] == case).to_numpy().copy()
    if true_cls is not None:
        mask &= (table["label"] == true_cls).to_numpy()
    if pred_cls is not None:
        mask &= (table["pred"] == pred_cls).to_numpy()
    rows = table[mask]
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
