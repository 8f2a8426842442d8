"""Server-side time of a viewer class switch and of opening an uncached clip (``vidviz bench app``).

Runs the real app script with ``streamlit.testing.v1.AppTest`` and times each script run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from bench import _time  # the same median timer as the other benchmarks (benchmarks/ is this script's folder)
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def bench_app(a) -> None:
    os.environ.setdefault("VIDVIZ_DATA", str(a.data))
    os.environ.setdefault("VIDVIZ_CHECKPOINT", str(a.checkpoint))
    app = str(ROOT / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    if a.clip:
        at.query_params["clip"] = a.clip
    at.run()
    at.switch_page("pages/viewer.py")
    at.run()
    sel = next(s for s in at.selectbox if s.label.startswith("Target class"))
    switch = []
    for opt in sel.options[1:6]:
        sel = next(s for s in at.selectbox if s.label.startswith("Target class"))
        sel.select(opt)
        t0 = time.perf_counter()
        at.run()
        switch.append((time.perf_counter() - t0) * 1000)
    from vidviz.backend import Backend
    from vidviz.data.datasets import open_dataset

    ids = [r.id for r in open_dataset(a.data).split("test")]
    opens, fwd = [], []
    b = Backend(a.checkpoint, a.data)
    x = b.open(ids[0]).x
    with torch.no_grad():
        f_ms = _time(lambda: b.model(x), repeat=5)
    for cid in ids[-6:-1]:
        at.text_input(key="vw_clip").set_value(cid)
        t0 = time.perf_counter()
        at.run()
        opens.append((time.perf_counter() - t0) * 1000)
        fwd.append(f_ms)
    err = [e.value for e in at.exception] + [e.value for e in at.error]
    print(f"viewer, server-side (AppTest script run), median of {len(switch)} / {len(opens)}:")
    print(f"  class switch:        {statistics.median(switch):7.1f} ms (target <= 100)")
    print(f"  open uncached clip:  {statistics.median(opens):7.1f} ms = forward {f_ms:.1f} ms + "
          f"{statistics.median(opens) - f_ms:.1f} ms (target: forward + <= 300)")
    if err:
        print(f"  page raised: {err[0][:200]}")


if __name__ == "__main__":
    from vidviz import config

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(config.DEFAULT_DATA))
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--clip", default=None)
    bench_app(p.parse_args())
