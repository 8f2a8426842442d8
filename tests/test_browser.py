"""End-to-end: `streamlit run app.py` on localhost, driven by Playwright in Debian's Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from support import ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server(default_ds, default_checkpoint, artifacts):
    port = free_port()
    log = open(artifacts / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start; see {artifacts / 'streamlit.log'}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def page():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing in CI (make test installs it)")
        pytest.skip("no /usr/bin/chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


def wait_ready(pg, title: str):
    pg.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    time.sleep(0.5)


def no_exception(pg):
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in pg.content()


@pytest.mark.browser
def test_every_page_renders_and_the_viewer_switches_class(server, page, default_ds, artifacts):
    from vidviz.data.datasets import open_dataset

    ds = open_dataset(default_ds)
    rec = ds.split("test")[2]
    for path, title in (("/", "Dataset browser"), ("/gallery", "Confusion gallery"), ("/quality", "Saliency quality")):
        page.goto(server + path)
        wait_ready(page, title)
        no_exception(page)
        if path == "/":  # the clip table (a canvas grid) has drawn its rows, first clip first
            page.locator('[role="gridcell"]').nth(1).wait_for(state="attached", timeout=60_000)  # a11y mirror
            cells = page.locator('[role="gridcell"]').all_inner_texts()
            assert ds.split("test")[0].id in cells and ds.split("test")[0].template in cells
        page.screenshot(path=str(artifacts / f"page{path.replace('/', '_') or '_browser'}.png"), full_page=True)
    page.goto(f"{server}/viewer?clip={rec.id}&cls=2")
    wait_ready(page, "Grad-CAM viewer")
    page.wait_for_function("() => document.querySelectorAll('main img').length >= 16", timeout=120_000)
    page.get_by_text("Per-frame importance").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "viewer-deep-link.png"), full_page=True)
    no_exception(page)
    assert f"True label: {rec.template}" in page.inner_text("body")
    box = page.get_by_role("combobox", name="Target class (top predictions first)")
    assert box.input_value().startswith("Picking [something] up")  # class 2 from the URL
    box.click()
    page.get_by_role("option").nth(1).click()
    page.wait_for_function("() => location.search.includes('cls=') && !location.search.includes('cls=2')", timeout=60_000)
    wait_ready(page, "Grad-CAM viewer")
    page.wait_for_function("() => document.querySelectorAll('main img').length >= 16", timeout=120_000)
    no_exception(page)
    assert "cls=" in page.url and "cls=2" not in page.url
    assert not box.input_value().startswith("Picking [something] up")
    page.screenshot(path=str(artifacts / "viewer-after-class-switch.png"), full_page=True)


@pytest.mark.browser
def test_a_gallery_card_opens_its_clip_in_the_viewer(server, page, default_store, artifacts):
    page.goto(server + "/gallery")
    wait_ready(page, "Confusion gallery")
    no_exception(page)
    first = page.get_by_text("clip ", exact=False).filter(has_text="true class ranked").first
    first.wait_for(timeout=60_000)
    clip_id = first.inner_text().split()[1]  # "clip 1234 · true class ranked 1 · margin ..."
    row = default_store.table[default_store.table["id"] == clip_id].iloc[0]
    page.get_by_role("button", name="Open in viewer").first.click()
    page.wait_for_function(f"() => location.pathname.endsWith('/viewer') && location.search.includes('clip={clip_id}')",
                           timeout=60_000)
    wait_ready(page, "Grad-CAM viewer")
    page.wait_for_function("() => document.querySelectorAll('main img').length >= 16", timeout=120_000)
    no_exception(page)
    assert f"cls={int(row['pred'])}" in page.url  # the card's predicted class comes preselected
    assert f"True label: {row['true_name']}" in page.inner_text("body")
    page.screenshot(path=str(artifacts / "viewer-from-gallery.png"), full_page=True)
