"""End-to-end: `streamlit run serve.py` (what `make run` runs) on localhost, driven by Playwright in Debian's Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from support import ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
PLAYER = '[data-testid="vv-player"]'


@contextmanager
def streamlit_server(log_path, env: dict | None = None):
    """`streamlit run serve.py` on a free localhost port (extra environment ``env``): its URL once healthy."""
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start; see {log_path}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(default_ds, default_checkpoint, artifacts):
    with streamlit_server(artifacts / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing in CI (make test installs it)")
        pytest.skip("no /usr/bin/chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A fresh Chromium page that records console errors, failed requests and messages sent to the server."""

    def __init__(self, browser):
        self.pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        self.errors: list[str] = []
        self.sent: list = []
        self.pg.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.pg.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        # a request the page itself dropped when it moved on (net::ERR_ABORTED) is no failure; any other is
        self.pg.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")
                   else self.errors.append(f"request failed: {r.url} ({r.failure})"))
        self.pg.on("websocket", lambda ws: ws.on("framesent", lambda f: self.sent.append(f)))


@pytest.fixture()
def page(browser):
    p = Page(browser)
    yield p
    p.pg.close()


def wait_ready(pg, title: str):
    """The page has run and its images have loaded (a click that leaves a page with images still loading makes
    Streamlit drop them, and the browser logs their 404s)."""
    pg.get_by_role("heading", name=title).first.wait_for(timeout=120_000)  # drawn by the run now going on
    pg.wait_for_function("() => document.querySelector('[data-testid=stApp]').dataset.testScriptState === 'notRunning'",
                         timeout=120_000)
    pg.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=60_000)
    time.sleep(0.3)


def no_exception(pg):
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in pg.content()


def wait_player(pg, cls: int | None = None, frame: int | None = None):
    cond = [f"r.dataset.class === '{cls}'" if cls is not None else "r.dataset.class !== ''"]
    if frame is not None:
        cond.append(f"r.dataset.frame === '{frame}'")
    pg.wait_for_function(f"() => {{ const r = document.querySelector('{PLAYER}'); return r && {' && '.join(cond)}; }}",
                         timeout=120_000)
    pg.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")  # the change has been painted


def player_attr(pg, name: str) -> str:
    return pg.get_attribute(PLAYER, f"data-{name}")


@pytest.mark.browser
def test_every_page_renders_offline_without_a_console_error(server, page, default_ds, artifacts):
    """A walk through the four pages (the first one at the root path, the viewer from a link the player wrote)."""
    from vidviz.data.datasets import open_dataset

    pg = page.pg
    ds = open_dataset(default_ds)
    pg.goto(server + "/")
    wait_ready(pg, "Dataset browser")
    pg.locator('[role="gridcell"]').nth(1).wait_for(state="attached", timeout=60_000)  # the table's a11y mirror
    cells = pg.locator('[role="gridcell"]').all_inner_texts()
    assert ds.split("test")[0].id in cells and ds.split("test")[0].template in cells
    for title in ("Confusion gallery", "Saliency quality", "Grad-CAM viewer"):
        pg.get_by_role("link", name=title).first.click()
        wait_ready(pg, title)
        no_exception(pg)
        pg.screenshot(path=str(artifacts / f"page-{title.split()[-1].lower()}.png"), full_page=True)
    wait_player(pg)
    link = pg.url
    assert "page=viewer" in link and "clip=" in link  # the player keeps a shareable link in the address bar
    pg.goto(link)  # open it as a new visit
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg)
    no_exception(pg)
    assert page.errors == []


def expected_colours(backend, clip: str, cls: int, frame: int, side: int) -> np.ndarray:
    """The jet colours (side, side, 3) the player should paint at opacity 1, from the maps computed here."""
    from vidviz.player.payload import jet_table

    maps = backend.explain(clip, [cls]).map_for(cls).astype(np.float16).astype(np.float32)  # (T', h, w), as sent
    t = frame - 1  # T' = T for the default model
    up = torch.nn.functional.interpolate(torch.from_numpy(maps[t])[None, None], size=(side, side), mode="bilinear",
                                         align_corners=False)[0, 0].numpy()  # (side, side)
    idx = np.clip(np.floor(up / maps.max() * 255), 0, 255).astype(int)
    return np.asarray(jet_table()).reshape(256, 3)[idx]


def painted_pixels(pg) -> np.ndarray:
    data = pg.evaluate("""() => { const c = document.querySelector('[data-testid=vv-canvas]');
        return {w: c.width, px: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)}; }""")
    return np.asarray(data["px"], dtype=np.int16).reshape(data["w"], data["w"], 4)[..., :3]


@pytest.mark.browser
def test_player_switches_class_and_frame_in_the_browser_without_a_script_run(server, page, default_backend,
                                                                                 artifacts):
    b = default_backend
    clip = b.dataset.split("test")[4].id
    top = b.predict(clip)
    first, other = top[0][0], top[3][0]
    pg = page.pg
    pg.goto(f"{server}/?page=viewer&clip={clip}&cls={first}&alpha=1.00&frame=3")
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg, cls=first, frame=3)
    side = int(pg.evaluate("() => document.querySelector('[data-testid=vv-canvas]').width"))
    shown = painted_pixels(pg)
    assert np.abs(shown - expected_colours(b, clip, first, 3, side)).max() <= 12  # class `first`, frame 3
    time.sleep(0.5)
    sent_before = len(page.sent)

    pg.select_option('[data-testid="vv-class"]', str(other))
    wait_player(pg, cls=other, frame=3)
    shown = painted_pixels(pg)
    want = expected_colours(b, clip, other, 3, side)
    assert np.abs(shown - want).max() <= 12  # the painted overlay is the new class's map
    assert np.abs(shown - expected_colours(b, clip, first, 3, side)).max() > 40  # ... and no longer the old one
    pg.wait_for_function(f"() => location.search.includes('cls={other}')", timeout=10_000)  # the URL follows

    pg.locator('[data-testid="vv-frame"]').fill("9")
    wait_player(pg, cls=other, frame=9)
    assert np.abs(painted_pixels(pg) - expected_colours(b, clip, other, 9, side)).max() <= 12
    pg.wait_for_function("() => location.search.includes('frame=9')", timeout=10_000)
    time.sleep(0.5)
    assert len(page.sent) == sent_before, "a class switch or a frame step sent a message to the server (a script run)"
    assert "page=viewer" in pg.url and f"clip={clip}" in pg.url
    pg.screenshot(path=str(artifacts / "player-after-switch.png"), full_page=True)

    pg.reload()  # the shared state comes back from the URL
    wait_player(pg, cls=other, frame=9)
    assert player_attr(pg, "alpha") == "1"
    assert page.errors == []


@pytest.mark.browser
def test_next_clip_opens_on_its_own_top_class(server, page, default_backend):
    b = default_backend
    ids = [r.id for r in b.dataset.split("test")]
    pg = page.pg
    chosen = b.predict(ids[0])[2][0]
    pg.goto(f"{server}/?page=viewer&clip={ids[0]}&cls={chosen}")  # a class named by the URL, for clip 0
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg, cls=chosen)
    other = b.predict(ids[0])[3][0]
    pg.select_option('[data-testid="vv-class"]', str(other))  # and one chosen in the player
    wait_player(pg, cls=other)
    pg.get_by_role("button", name="Next ▶").click()
    own = b.predict(ids[1])[0][0]
    pg.wait_for_function(f"() => location.search.includes('clip={ids[1]}')", timeout=60_000)
    wait_player(pg, cls=own)  # not the class chosen on the previous clip
    assert f"cls={own}" in pg.url
    title = pg.inner_text('[data-testid="vv-title"]')
    assert title.startswith(f"Target: {b.classes[own]}")  # the header of the maps names the class shown
    assert page.errors == []


@pytest.mark.browser
def test_a_gallery_card_opens_its_clip_in_the_viewer(server, page, default_store, artifacts):
    pg = page.pg
    pg.goto(server + "/?page=gallery")
    wait_ready(pg, "Confusion gallery")
    no_exception(pg)
    from vidviz import tables

    row = tables.select(default_store.table, "positive", "confidence").iloc[0]  # the first card of the page
    clip_id = str(row["id"])
    button = pg.locator(f".st-key-ga_open_{clip_id} button")
    button.wait_for(timeout=60_000)
    button.click()
    wait_player(pg, cls=int(row["pred"]))  # the card's predicted class comes preselected
    assert f"True label: {row['true_name']}" in pg.inner_text("body")
    pg.wait_for_function(f"() => location.search.includes('clip={clip_id}')", timeout=30_000)
    pg.screenshot(path=str(artifacts / "viewer-from-gallery.png"), full_page=True)
    assert page.errors == []


def eventually(check, timeout: float = 30.0):
    """Wait until ``check()`` holds (a rerun that applies URL-bound values may follow the first run); assert it."""
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.25)
    assert check()


def card_clips(pg) -> set[str]:
    """Clip ids of the gallery cards shown."""
    return {t.split()[1] for t in pg.get_by_text(re.compile(r"^clip \d+ · heatmap")).all_inner_texts()}


@pytest.mark.browser
def test_a_confused_pair_drills_down_to_exactly_its_clips(server, page, default_store):
    t = default_store.table
    pg = page.pg
    pg.goto(server + "/?page=gallery")
    wait_ready(pg, "Confusion gallery")
    pg.get_by_text("Most confused pairs", exact=True).wait_for(timeout=60_000)
    pairs = pg.locator('[data-testid="stDataFrame"]').last
    pairs.scroll_into_view_if_needed()
    box = pairs.bounding_box()
    pg.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
    pg.wait_for_function("() => location.search.includes('ga_true=') && location.search.includes('ga_pred=')",
                         timeout=60_000)
    wait_ready(pg, "Confusion gallery")
    no_exception(pg)
    from urllib.parse import parse_qs, urlparse

    q = parse_qs(urlparse(pg.url).query)
    classes = default_store.classes
    true_idx, pred_idx = classes.index(q["ga_true"][0]), classes.index(q["ga_pred"][0])
    case = q.get("ga_case", ["Positive"])[0].lower()
    want = set(t[(t["label"] == true_idx) & (t["pred"] == pred_idx) & (t["case"] == case)]["id"].astype(str))
    assert want
    eventually(lambda: card_clips(pg) == want)  # exactly that pair's clips, in the case that holds them
    assert page.errors == []


@pytest.mark.browser
def test_a_link_with_every_parameter_restores_every_control(server, page, default_store, default_backend):
    b = default_backend
    pg = page.pg
    # the browser's filters
    pg.goto(server + "/?br_text=Uncovering&br_size=25")
    wait_ready(pg, "Dataset browser")
    eventually(lambda: pg.get_by_label("Search id, label or object").input_value() == "Uncovering")
    # the gallery's filters and case
    classes = default_store.classes
    t = default_store.table
    row = t[t["case"] == "medium"].iloc[0]
    true_name, pred_name = classes[int(row["label"])], classes[int(row["pred"])]
    from urllib.parse import quote_plus

    pg.goto(f"{server}/?page=gallery&ga_true={quote_plus(true_name)}&ga_pred={quote_plus(pred_name)}"
            "&ga_case=Medium&ga_sort=margin")
    wait_ready(pg, "Confusion gallery")
    want = set(t[(t["label"] == row["label"]) & (t["pred"] == row["pred"]) & (t["case"] == "medium")]["id"].astype(str))
    eventually(lambda: card_clips(pg) == want)
    assert pg.get_by_text(true_name).first.is_visible()
    # the viewer: toggles, method and layer, and the player's display settings
    clip = b.dataset.split("test")[6].id
    cls = b.predict(clip)[1][0]
    top = [c for c, _ in b.predict(clip)]  # every class, most probable first
    true = b.dataset.get(clip).label
    # none of them a default (the true label, the top-1, the player's class)
    below, cls_a, cls_b, later = [c for c in top if c not in (true, top[0], top[1])][:4]
    pg.goto(f"{server}/?page=viewer&clip={clip}&cls={cls}&frame=7&alpha=0.30&norm=frame&gt=1&compare=classes"
            f"&temporal=true&layer=layer4&method=gradcam&below={below}&classes={cls_a},{cls_b}")
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg, cls=cls, frame=7)
    assert pg.locator('[data-testid="vv-alpha"]').input_value() == "0.3"
    assert pg.locator('[data-testid="vv-norm"]').input_value() == "frame"
    assert pg.locator('[data-testid="vv-gt"]').is_checked()
    pg.get_by_text("Difference A − B").first.wait_for(timeout=60_000)  # the compare toggle is on
    pg.get_by_text("on the clip as it is").first.wait_for(timeout=60_000)  # the temporal tests are on
    names = b.classes
    assert names[below] in select_text(pg, "Class for the temporal tests")
    chosen = pg.locator(".st-key-vw_cmp_classes").inner_text()
    assert names[cls_a] in chosen and names[cls_b] in chosen and names[true] not in chosen  # the link's, not defaults
    # a class added here goes into the link
    box = pg.locator(".st-key-vw_cmp_classes input").first
    box.click()
    box.fill(names[later])
    pg.locator('[role="listbox"] [role="option"]').filter(has_text=names[later]).first.click()
    want = f"{cls_a},{cls_b},{later}"
    pg.wait_for_function(f"() => new URL(location.href).searchParams.get('classes') === '{want}'", timeout=30_000)
    assert page.errors == []


def combo(pg, label: str):
    """A Streamlit selectbox (a combobox input named by its label)."""
    return pg.get_by_role("combobox", name=re.compile("^" + re.escape(label))).first


def select_text(pg, label: str) -> str:
    """The value a Streamlit selectbox shows."""
    return combo(pg, label).input_value()


def choose(pg, label: str, option: str) -> None:
    box = combo(pg, label)
    box.click()
    box.fill(option)  # filters the options; the first match is the one typed
    pg.locator('[role="listbox"] [role="option"]').filter(has_text=option).first.click()


@pytest.mark.browser
def test_the_first_page_explains_vidviz_and_filters_survive_a_visit_elsewhere(server, page):
    pg = page.pg
    pg.goto(server + "/")
    wait_ready(pg, "Dataset browser")
    assert pg.get_by_text("vidviz shows what a video classifier looks at").is_visible()
    for label in ("1. Pick a clip", "2. See its per-frame maps", "3. Find where the model fails"):
        assert pg.get_by_role("link", name=re.compile(re.escape(label))).count() == 1
    box = pg.get_by_label("Search id, label or object")
    box.fill("cube")
    box.press("Enter")
    pg.wait_for_function("() => location.search.includes('br_text=cube')", timeout=30_000)
    wait_ready(pg, "Dataset browser")
    pg.get_by_role("link", name="Confusion gallery").first.click()
    wait_ready(pg, "Confusion gallery")
    pg.get_by_role("link", name="Dataset browser").first.click()
    wait_ready(pg, "Dataset browser")
    assert pg.get_by_label("Search id, label or object").input_value() == "cube"
    pg.get_by_role("link", name=re.compile("2. See its per-frame maps")).click()
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg)
    assert page.errors == []


@pytest.mark.browser
def test_the_quality_page_scores_from_the_page_and_explains_every_figure(server, page, default_backend):
    pg = page.pg
    default_ds = default_backend.dataset
    split = "validation"  # a split no other test scores: the page starts with no result
    n_labelled = sum(1 for r in default_ds.split(split) if r.label is not None)
    pg.goto(f"{server}/?page=quality&split={split}")
    wait_ready(pg, "Saliency quality")
    assert pg.get_by_text(f"No saliency-quality scores for the {split} split").is_visible()
    box = pg.get_by_role("spinbutton", name=re.compile("^Clips to score"))
    box.fill("2")
    box.press("Enter")
    pg.wait_for_function("() => location.search.includes('qa_n=2')", timeout=30_000)
    wait_ready(pg, "Saliency quality")
    pg.get_by_role("button", name=re.compile("Score the chosen methods")).click()
    pg.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)  # progress while it scores
    pg.get_by_text(f"2 of {n_labelled} labelled clips").wait_for(timeout=180_000)
    wait_ready(pg, "Saliency quality")
    table = pg.locator('[data-testid="stDataFrame"]').filter(
        has=pg.locator('[role="columnheader"]', has_text="better"))
    table.locator('[role="gridcell"]').first.wait_for(state="attached", timeout=60_000)
    cells = table.locator('[role="gridcell"]').all_inner_texts()
    heads = table.locator('[role="columnheader"]').all_inner_texts()
    assert {"better", "gradcam", "gradcam++", "random", "centre", "motion"} <= {h.strip() for h in heads}
    assert any(c.endswith("(2)") for c in cells)  # every figure says how many clips it comes from
    assert {"higher", "lower"} <= set(cells)  # and which direction is better
    from vidviz.jobs.quality import METRIC_INFO

    defined = pg.locator(".st-key-qa_definitions").inner_text()
    for name, definition in METRIC_INFO.values():  # every metric defined in a sentence, with its direction
        if name in cells:
            assert f"{name} (" in defined and definition in defined
    # readable without sideways scrolling: the table is no wider than its frame
    wide = table.evaluate("el => { const s = el.querySelector('.dvn-scroller'); return s ? s.scrollWidth - s.clientWidth : 0; }")
    assert wide <= 1
    assert select_text(pg, "Method").strip() == "gradcam"  # the per-clip view starts on Grad-CAM
    assert page.errors == []


@pytest.mark.browser
def test_the_smaller_points(server, page, default_store, default_backend):
    pg = page.pg
    default_ds = default_backend.dataset
    test = default_ds.split("test")
    # the browser's caption keeps the split and the dataset apart; the stored predictions are in view
    pg.goto(server + "/")
    wait_ready(pg, "Dataset browser")
    pg.get_by_text(f"{len(test)} of the {len(test)} clips of the test split match "
                   f"({len(default_ds.records)} in the dataset)").wait_for(timeout=30_000)
    grid = pg.locator(".st-key-br_table")
    grid.locator('[role="columnheader"]').first.wait_for(state="attached", timeout=60_000)
    heads = [h.strip() for h in grid.locator('[role="columnheader"]').all_inner_texts()]
    assert heads[:4] == ["id", "label", "prediction", "p"]
    # a gallery card says which class its heatmap explains
    pg.goto(server + "/?page=gallery")
    wait_ready(pg, "Confusion gallery")
    card = pg.get_by_text(re.compile(r"^clip \d+ · heatmap")).first.inner_text()
    cid = card.split()[1]
    row = default_store.table[default_store.table["id"].astype(str) == cid].iloc[0]
    assert default_store.classes[int(row["pred"])] in card
    # the method box shows its whole value
    clip = test[3].id
    pg.goto(f"{server}/?page=viewer&clip={clip}&method=gradcam%2B%2B")
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg)
    assert select_text(pg, "Method") == "gradcam++"
    assert combo(pg, "Method").evaluate("el => el.scrollWidth <= el.clientWidth + 1")  # not cut off
    # the frame-grid download names its class and numbers its frames
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Frame grid (.png)").click()
    import cv2

    png = cv2.imread(dl.value.path())
    cls = default_backend.predict(clip)[0][0]  # the downloads explain the clip's top-1 class
    assert dl.value.suggested_filename.startswith(f"{clip}_{cls}_gradcampp_")
    w = (png.shape[1] + 2) // 8 - 2  # 8 tiles a row, 2 px apart
    assert png.shape[0] == 18 + 2 * (w + 2) - 2  # a title band above two rows of frames
    assert (png[:18] < 100).any()  # the title's dark text
    # a clip id that is not in the dataset: a plain error without the server's paths
    box = pg.get_by_role("textbox", name="Clip id")
    box.fill("no-such-clip")
    box.press("Enter")
    err = pg.locator('[data-testid="stAlertContentError"]').first
    err.wait_for(timeout=60_000)
    assert "no-such-clip" in err.inner_text() and str(default_ds.root) not in err.inner_text()
    no_exception(pg)
    assert page.errors == []


@pytest.mark.browser
def test_a_confusion_matrix_cell_drills_down_to_its_clips(server, page, default_store):
    t = default_store.table
    classes = default_store.classes
    k = len(classes)
    pg = page.pg
    pg.goto(server + "/?page=gallery")
    wait_ready(pg, "Confusion gallery")
    grid = pg.locator(".st-key-ga_conf")
    grid.locator('[role="gridcell"]').first.wait_for(state="attached", timeout=60_000)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    # the last row's last cell (the diagonal: that class's positives), cells 40 px wide and 35 px high
    width = grid.evaluate("el => el.querySelector('.dvn-scroller').scrollWidth")
    pg.mouse.click(box["x"] + width - 20, box["y"] + 35 + 35 * (k - 1) + 17)
    name = classes[k - 1]
    from urllib.parse import parse_qs, urlparse

    pg.wait_for_function("() => location.search.includes('ga_true=') && location.search.includes('ga_pred=')",
                         timeout=60_000)
    wait_ready(pg, "Confusion gallery")
    q = parse_qs(urlparse(pg.url).query)
    assert q["ga_true"] == [name] and q["ga_pred"] == [name]
    want = set(t[(t["label"] == k - 1) & (t["pred"] == k - 1) & (t["case"] == "positive")]["id"].astype(str))
    assert want
    eventually(lambda: bool(card_clips(pg)) and card_clips(pg) <= want)  # only that cell's clips (a page of them)
    no_exception(pg)
    assert page.errors == []


@pytest.mark.browser
def test_the_compare_view_shows_four_methods_by_sixteen_frames_on_one_scale(server, page, default_backend):
    from vidviz.render import COMPARE_BAR_W, COMPARE_HEAD_H, COMPARE_LABEL_W, jet

    pg = page.pg
    clip = default_backend.dataset.split("test")[2].id
    from urllib.parse import quote

    names = ["Grad-CAM", "Grad-CAM++", "Eigen-CAM", "Ablation-CAM"]  # not the default rows; the link names them
    pg.goto(f"{server}/?page=viewer&clip={clip}&compare=methods&" + "&".join(f"cmp_methods={quote(n)}" for n in names))
    wait_ready(pg, "Grad-CAM viewer")
    box = pg.locator(".st-key-vw_compare")
    box.get_by_text("4 methods × 16 frames").wait_for(timeout=120_000)
    chips = pg.locator(".st-key-cmp_methods").inner_text()
    assert all(n in chips for n in names) and "XGrad-CAM" not in chips
    img = box.locator("img").first
    img.wait_for(timeout=60_000)
    pg.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=60_000)
    w, h = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
    full_w, full_h = COMPARE_LABEL_W + 16 * 80 + COMPARE_BAR_W, COMPARE_HEAD_H + 4 * 80  # as drawn, 80 px tiles
    assert abs(w / h - full_w / full_h) < 0.02  # four rows of sixteen frames (the app may scale the image)
    k = w / full_w
    # the colour bar: the jet colour map from 1 (top) to 0 (bottom), read back from the painted image
    x, y_top, y_bottom = int((COMPARE_LABEL_W + 16 * 80 + 13) * k), int((COMPARE_HEAD_H + 3) * k), h - 3
    js = """([el, x, y0, y1]) => { const c = document.createElement('canvas'); c.width = el.naturalWidth;
        c.height = el.naturalHeight; const g = c.getContext('2d'); g.drawImage(el, 0, 0);
        return [Array.from(g.getImageData(x, y0, 1, 1).data), Array.from(g.getImageData(x, y1, 1, 1).data)]; }"""
    top, bottom = (np.array(p[:3], dtype=int) for p in pg.evaluate(js, [img.element_handle(), x, y_top, y_bottom]))
    assert np.abs(top - jet(np.array([[1.0]]))[0, 0]).max() <= 40  # red at the top
    assert np.abs(bottom - jet(np.array([[0.0]]))[0, 0]).max() <= 40  # blue at the bottom
    # the four rows' per-frame importance curves in one plot
    traces = box.locator(".js-plotly-plot .scatterlayer .trace")
    traces.first.wait_for(state="attached", timeout=60_000)
    assert traces.count() == 4
    assert page.errors == []


@pytest.mark.browser
def test_an_old_style_page_link_opens_without_a_404(server, page, default_backend):
    """/viewer?clip=.. (Streamlit's own page URL) is redirected to /?page=viewer&clip=..: Streamlit's client,
    loaded at a sub-path, would first probe /viewer/_stcore/health and /viewer/_stcore/host-config (two 404s)."""
    pg = page.pg
    clip = default_backend.dataset.split("test")[5].id
    cls = default_backend.predict(clip)[2][0]
    failed = []
    pg.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    pg.goto(f"{server}/viewer?clip={clip}&cls={cls}&frame=3")
    wait_ready(pg, "Grad-CAM viewer")
    wait_player(pg, cls=cls, frame=3)  # the link's state, kept through the redirect
    from urllib.parse import parse_qs, urlparse

    u = urlparse(pg.url)
    assert u.path == "/" and parse_qs(u.query)["page"] == ["viewer"] and parse_qs(u.query)["clip"] == [clip]
    pg.goto(f"{server}/gallery/")
    wait_ready(pg, "Confusion gallery")
    assert failed == [] and page.errors == []


@pytest.fixture(scope="module")
def byom_server(default_ds, default_checkpoint, artifacts, tmp_path_factory):
    """The app with a checkpoint folder (``VIDVIZ_CHECKPOINTS``) holding a VideoMAE saved by Hugging Face's
    ``save_pretrained`` and a swin3d_t imported from a torchvision weights file (random weights, small inputs)."""
    from dataclasses import replace

    from support import hf_folder

    from vidviz.models import save_checkpoint
    from vidviz.models.torchvision_video import kinetics_meta, load_torchvision_weights

    folder = tmp_path_factory.mktemp("byom")
    hf_folder(folder, "videomae")
    torch.manual_seed(0)
    from torchvision.models.video import swin3d_t

    torch.save(swin3d_t(weights=None).state_dict(), folder / "swin.pth")
    spec = replace(kinetics_meta("swin3d_t")[1], num_frames=8, size=64)
    save_checkpoint(folder / "swin3d_t.pt", load_torchvision_weights(folder / "swin.pth", "swin3d_t", spec))
    (folder / "swin.pth").unlink()
    with streamlit_server(artifacts / "streamlit-byom.log", {"VIDVIZ_CHECKPOINTS": str(folder)}) as url:
        yield url


@pytest.mark.browser
@pytest.mark.slow
def test_the_picker_offers_a_videomae_and_a_swin_and_the_viewer_renders_their_maps(byom_server, page, default_ds,
                                                                                    artifacts):
    """#13: a Hugging Face folder and an imported torchvision checkpoint are in the checkpoint picker; the viewer
    paints their per-frame maps at their own layers (VideoMAE: tubelets of 2 frames, said in a caption)."""
    from vidviz.data.datasets import open_dataset

    pg = page.pg
    clip = open_dataset(default_ds).split("validation")[0].id
    pg.goto(byom_server + "/?page=viewer&clip=" + clip)
    wait_ready(pg, "Grad-CAM viewer")
    pg.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Checkpoint").click()
    options = pg.locator('[role="option"]').all_inner_texts()
    assert "videomae/" in options and "swin3d_t.pt" in options, options
    pg.keyboard.press("Escape")
    for name, layer, steps in (("videomae/", "videomae.encoder.layer.2", 4), ("swin3d_t.pt", "norm", 4)):
        pg.goto(f"{byom_server}/?page=viewer&checkpoint={urllib.parse.quote(name)}&clip={clip}")
        wait_ready(pg, "Grad-CAM viewer")
        wait_player(pg)
        no_exception(pg)
        title = pg.locator(f'{PLAYER} [data-testid="vv-title"]').inner_text()
        assert layer in title, title
        assert f"This layer has {steps} maps in time for the 8 frames" in pg.content()
        # the heatmap is painted: the canvas is not one colour
        spread = pg.evaluate(f"""() => {{ const c = document.querySelector('{PLAYER} [data-testid="vv-canvas"]');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) {{ lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }}
            return hi - lo; }}""")
        assert spread > 30, (name, spread)
        pg.screenshot(path=str(artifacts / f"byom-{name.strip('/').replace('.', '_')}.png"))
    assert not page.errors, page.errors
