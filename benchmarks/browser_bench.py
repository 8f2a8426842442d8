"""``vidviz bench browser``: the viewer as a person feels it, in Chromium, for the whole process.

Starts ``streamlit run serve.py`` (what ``make run`` runs) on a free local port, drives Debian's Chromium with Playwright
and prints the median and maximum of:

* opening the app's first page in an open browser, from the server answering its health check (a fresh
  server) until its title, and until its clip table;
* opening the viewer from a shared link (``/?page=viewer&clip=...``, the form the player writes into the
  address bar; a warm server) until the player has painted;
* a class switch in the player: from the ``change`` event until ``data-class`` holds the new class
  and the browser has painted it (one animation frame later);
* a frame step: from the ``input`` event of the frame slider until ``data-frame`` is painted;
* playback: frames painted per second against the clip's rate, and frames dropped
  (an interval longer than 1.5 frame periods);
* the Streamlit script runs that the switches and steps caused (messages the page sent to the server).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
PAINTED = "() => { const r = document.querySelector('[data-testid=vv-player]'); return r && r.dataset.class !== ''; }"

SWITCH_JS = """async ([kind, n]) => {
  const root = document.querySelector('[data-testid=vv-player]');
  const input = root.querySelector(kind === 'class' ? '[data-testid=vv-class]' : '[data-testid=vv-frame]');
  const values = kind === 'class'
      ? Array.from(input.options).filter(o => !o.textContent.includes('on request')).map(o => o.value)
      : Array.from({length: Number(input.max)}, (_, i) => String(i + 1));
  const attr = kind === 'class' ? 'class' : 'frame';
  const times = [];
  for (let i = 0; i < n; i++) {
    const target = values[(values.indexOf(root.dataset[attr]) + 1 + (i % 3)) % values.length];
    if (target === root.dataset[attr]) continue;
    const done = new Promise((resolve) => {
      const ob = new MutationObserver(() => {
        if (root.dataset[attr] === target) { ob.disconnect(); requestAnimationFrame(() => resolve(performance.now())); }
      });
      ob.observe(root, {attributes: true});
    });
    const ev = new Event(kind === 'class' ? 'change' : 'input');
    input.value = target;
    input.dispatchEvent(ev);
    times.push((await done) - ev.timeStamp);
    await new Promise((r) => setTimeout(r, 40));
  }
  return times;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, env: dict | None = None) -> tuple[subprocess.Popen, float]:
    """``streamlit run serve.py`` on 127.0.0.1:port; returns the process and when its health check first answered."""
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    for _ in range(1200):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status == 200:
                return proc, time.perf_counter()
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("streamlit did not start")


def stats(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f}  max {max(values):7.1f}  (n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from vidviz import config
    from vidviz.data.datasets import open_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(config.DEFAULT_DATA))
    p.add_argument("--checkpoint", default=str(config.DEFAULT_CHECKPOINT))
    p.add_argument("--repeat", type=int, default=30, help="class switches and frame steps to time")
    a = p.parse_args(argv)
    ids = [r.id for r in open_dataset(a.data).split("test")][:8]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = None
    try:
        with sync_playwright() as pw:
            # The browser is open before the server starts, as a user's is: the clock starts when the page is
            # requested, right after the server answers its health check, not while Chromium launches.
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            proc, _ = start_app(port, {"VIDVIZ_DATA": a.data, "VIDVIZ_CHECKPOINT": a.checkpoint})
            ready = time.perf_counter()
            page.goto(url + "/")
            page.get_by_role("heading", name="Dataset browser").wait_for(timeout=120_000)
            first = time.perf_counter() - ready
            page.locator('[role="gridcell"]').nth(1).wait_for(state="attached", timeout=120_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=120_000)
            complete = time.perf_counter() - ready
            page.goto(f"{url}/?page=viewer&clip={ids[-1]}")  # the first viewer of a process decodes, builds caches
            page.wait_for_function(PAINTED, timeout=120_000)
            deep = []
            for cid in ids[:6]:
                t0 = time.perf_counter()
                page.goto(f"{url}/?page=viewer&clip={cid}")
                page.wait_for_function(PAINTED, timeout=120_000)
                deep.append(time.perf_counter() - t0)
            sent = []
            page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(f)))
            page.goto(f"{url}/?page=viewer&clip={ids[0]}")
            page.wait_for_function(PAINTED, timeout=120_000)
            time.sleep(1.0)
            before = len(sent)
            switch = page.evaluate(SWITCH_JS, ["class", a.repeat])
            step = page.evaluate(SWITCH_JS, ["frame", a.repeat])
            time.sleep(0.5)
            runs = len(sent) - before
            fps = page.evaluate("() => JSON.parse(document.querySelector('[data-testid=vv-player]').dataset.fps || '0')")
            page.click('[data-testid="vv-play"]')
            time.sleep(4.0)
            page.click('[data-testid="vv-play"]')
            paints = page.evaluate("() => document.querySelector('[data-testid=vv-player]').__vvPaints.slice()")
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    gaps = [b - a for a, b in zip(paints, paints[1:], strict=False)]
    rate = 1000 * (len(paints) - 1) / (paints[-1] - paints[0]) if len(paints) > 1 else 0.0
    dropped = sum(1 for g in gaps if fps and g > 1.5 * 1000 / fps)
    print(f"vidviz bench browser: Chromium {CHROMIUM}, streamlit on 127.0.0.1:{port}, {os.cpu_count()} CPUs")
    print(f"  first page after the server is ready:   {first:7.2f} s to its title, {complete:.2f} s to its clip table "
          "(fresh server; target <= 2 s)")
    print(f"  viewer deep link until painted (s):     {stats(deep)} (target <= 2 s)")
    print(f"  class switch until painted (ms):        {stats(switch)} (target median <= 50)")
    print(f"  frame step until painted (ms):          {stats(step)} (target median <= 16)")
    print(f"  playback: {rate:.2f} frames painted per second at a clip rate of {fps:g}; "
          f"{dropped} of {len(gaps)} intervals dropped a frame")
    print(f"  messages to the server during {len(switch)} switches and {len(step)} steps: {runs} (0 = no script run)")
    print(f"  console errors: {len(errors)}" + (f" (first: {errors[0][:120]})" if errors else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
