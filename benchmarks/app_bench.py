"""Server-side time of the viewer's script runs (``vidviz bench app``).

Runs the real app script with ``streamlit.testing.v1.AppTest`` and times each script run: opening
an uncached clip (decode, forward, the player's payload), and a run of the viewer on a clip whose
payload is cached (what any other control of the page costs). A class switch in the player runs
no script at all (``vidviz bench browser`` times it in Chromium).
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
    rerun = []
    for i in range(6):  # a control outside the player: the whole page script runs, the payload comes from cache
        at.toggle(key="temporal").set_value(i % 2 == 1)
        t0 = time.perf_counter()
        at.run()
        rerun.append((time.perf_counter() - t0) * 1000)
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
    print(f"viewer, server-side (AppTest script run), median of {len(rerun)} / {len(opens)}:")
    print(f"  script run, cached payload (temporal tests on/off): {statistics.median(rerun):7.1f} ms")
    print(f"  open uncached clip (with the player's payload): {statistics.median(opens):7.1f} ms = forward {f_ms:.1f} ms + "
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
