"""``vidviz bench memory``: the app process's memory over many distinct clips, against its cache budget.

Runs the real viewer script (``streamlit.testing.v1.AppTest``, in this process, with the app's shared
caches) on ``--clips`` distinct clips of the dataset, one after another as a user clicking Next would, with
``VIDVIZ_CACHE_MB`` set to ``--cache-mb``, and prints the process's resident memory (VmRSS) as it goes, the
bytes the backend's caches hold, and the bound: the memory after the first clip (Python, Streamlit, torch, the
model) plus the cache budget.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    import sys

    sys.path.insert(0, str(ROOT))
    from vidviz import config

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(config.DEFAULT_DATA))
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--cache-mb", type=int, default=64)
    a = p.parse_args(argv)
    os.environ.update({"VIDVIZ_DATA": a.data, "VIDVIZ_CHECKPOINT": a.checkpoint, "VIDVIZ_CACHE_MB": str(a.cache_mb)})
    from streamlit.testing.v1 import AppTest

    from vidviz import runtime
    from vidviz.data.datasets import open_dataset

    runtime.tune_allocator()  # as app.py does
    ds = open_dataset(a.data)
    ids = [r.id for r in ds.records][: a.clips]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["page"] = "viewer"
    at.query_params["clip"] = ids[0]
    start = rss_mb()
    at.run()
    import ui

    backend = ui.get_backend(str(Path(a.checkpoint)), str(Path(a.data)), a.cache_mb)
    model_mb = sum(t.numel() * t.element_size() for t in backend.model.state_dict().values()) / 2**20
    if backend.dataset.has_boxes:
        _ = backend.dataset.boxes  # the annotations, parsed once in the background by the app: part of the baseline
    import gc

    gc.collect()
    first = rss_mb()
    print(f"vidviz bench memory: {len(ids)} distinct clips in the viewer (AppTest), VIDVIZ_CACHE_MB={a.cache_mb}, "
          f"model weights {model_mb:.0f} MB, {os.cpu_count()} CPUs")
    print(f"  before the first run: {start:7.0f} MB;  after the first clip (app, torch, model, the dataset's "
          f"annotations): {first:7.0f} MB")
    t0, peak, seen = time.perf_counter(), first, {}
    for i, cid in enumerate(ids[1:], start=2):
        at.text_input(key="vw_clip").set_value(cid)
        at.run()
        peak = max(peak, rss_mb())
        if i % 50 == 0 or i == len(ids):
            held = (backend._clips.total_bytes + backend._explained.total_bytes) / 2**20
            seen[i] = rss_mb()
            print(f"  after {i:4d} clips: {seen[i]:7.0f} MB resident, caches hold {held:6.1f} MB "
                  f"({len(backend._clips)} clips)")
    errors = [e.value for e in at.exception] + [e.value for e in at.error]
    last, start50 = seen[max(seen)], seen[min(seen)]
    print(f"  growth from clip {min(seen)} to clip {max(seen)}: {last - start50:+.0f} MB (a leak of one clip's "
          f"{backend._clips.total_bytes / max(1, len(backend._clips)) / 2**20:.1f} MB would add "
          f"{(max(seen) - min(seen)) * backend._clips.total_bytes / max(1, len(backend._clips)) / 2**20:.0f} MB)")
    print(f"  peak {peak:.0f} MB = the first clip's {first:.0f} MB + {peak - first:.0f} MB: the caches (at most the "
          f"{a.cache_mb} MB budget) and the allocator's per-thread arenas; {(time.perf_counter() - t0) / max(1, len(ids) - 1):.2f} s per clip")
    if errors:
        print(f"  page errors: {errors[0][:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
