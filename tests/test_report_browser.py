"""The HTML report in a real browser: Debian's Chromium, headless, driven by Playwright.

Checks that the heatmaps render, that the selectors change what is shown (and show the right
numbers), that hostile tokens stay text and run nothing, that the page makes no network request,
and saves a screenshot (results/report.png; copied to docs/img/report.png when that is missing or
SELFATTENTION_UPDATE_SCREENSHOTS=1).

Needs /usr/bin/chromium (`make browser`, or `apt-get install chromium`); the tests fail, not
skip, without it unless SELFATTENTION_SKIP_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from selfattention import viz

pytestmark = pytest.mark.browser

if os.environ.get("SELFATTENTION_SKIP_BROWSER") == "1":
    pytest.skip("SELFATTENTION_SKIP_BROWSER=1", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SELFATTENTION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EVIL_IMG = "<img src=x onerror=alert(1)>"
EVIL_SCRIPT = "</script><script>window.__pwned=1</script>"
TRICKY = ["[CLS]", "a", EVIL_IMG, "&amp;", EVIL_SCRIPT, "x\u2028y", "[SEP]"]
SENTENCE = "[CLS] i sat on the bank of the river and watched the water [SEP]".split()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _head_patterns(tokens: list[str], rng: np.random.Generator) -> np.ndarray:
    """(2, 4, n, n) maps with the patterns real heads show: previous / next token, [CLS] sink,
    same word, a few content words, broad mixing; plus noise."""
    n = len(tokens)
    i, j = np.indices((n, n))
    same = np.array([[a == b for b in tokens] for a in tokens], float)
    content = np.array([t in {"bank", "river", "water", "watched", "sat"} for t in tokens], float)
    layer0 = [4.0 * (j == i - 1), 4.0 * (j == i + 1), 4.0 * (j == 0), 3.0 * same]
    layer1 = [
        3.0 * content[None, :] + 0 * i,
        0.3 * (j <= i),
        4.0 * (j == n - 1),
        2.5 * (abs(i - j) <= 2),
    ]
    scores = np.stack([np.stack(layer0), np.stack(layer1)])
    return _softmax(scores + rng.normal(scale=0.4, size=scores.shape))


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = len(SENTENCE)
    return {
        "sentence": _head_patterns(SENTENCE, rng),
        "tricky": _softmax(rng.normal(size=(2, 3, 7, 7)) * 2),
        # the neuron and value-weighted views' inputs (any numbers: the page only re-adds them)
        "queries": rng.normal(size=(2, 4, n, 8)),
        "keys": rng.normal(size=(2, 4, n, 8)),
        "value_norms": rng.uniform(0.1, 3.0, size=(2, 4, n)),
        "tricky_q": rng.normal(size=(2, 3, 7, 4)),
    }


@pytest.fixture(scope="module")
def report_path(tmp_path_factory, weights) -> Path:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:16, 0:16]
    ring = np.exp(-((np.hypot(yy - 7.5, xx - 7.5) - 5) ** 2) / 3)  # a bright ring, 16×16
    bright = np.array([p.mean() for p in viz.patches(ring, (4, 4))])
    img_w = _softmax(
        np.stack([np.stack([np.r_[0, 3 * bright]] * 17) + rng.normal(size=(17, 17))] * 2)[:, None]
    )
    static = rng.normal(size=(len(SENTENCE), 6))
    fig = viz.shift(
        static, static + rng.normal(scale=0.5, size=static.shape), SENTENCE, highlight="bank"
    )
    sequences = [
        {
            "name": "river bank (head patterns)",
            "tokens": SENTENCE,
            "weights": weights["sentence"],
            "queries": weights["queries"],
            "keys": weights["keys"],
            "scale": 0.5,
            "value_norms": weights["value_norms"],
        },
        {
            "name": EVIL_SCRIPT,
            "tokens": TRICKY,
            "weights": weights["tricky"],
            "queries": weights["tricky_q"],
            "keys": weights["tricky_q"],
        },
        {"name": "ring image", "image": ring, "grid": (4, 4), "cls_token": True, "weights": img_w},
    ]
    table = (
        "Cosine similarity of 'bank'",
        ["pair", "static", "contextual"],
        [["a vs b", 1.0, 0.4]],
    )
    return viz.report(
        tmp_path_factory.mktemp("report") / "report.html",
        sequences,
        title="Attention report (browser test)",
        description="Synthetic head patterns; tokens that try to be HTML stay text.",
        tables=[table],
        figures=[("Static → contextual (PCA)", fig)],
    )


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Debian's Chromium is not installed at {CHROMIUM}. Install it with "
            "`make browser` or `apt-get update && apt-get install -y chromium`, "
            "or set SELFATTENTION_SKIP_BROWSER=1 to skip the browser tests."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (python) is missing: pip install playwright (no browser download)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, report_path):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    events = {"dialogs": [], "errors": [], "requests": []}
    pg.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: events["errors"].append(str(e)))
    pg.on("request", lambda r: events["requests"].append(r.url))
    pg.goto(report_path.as_uri())
    try:
        pg.wait_for_selector("body[data-ready='1']", timeout=10_000)
    except Exception as exc:  # playwright's TimeoutError; say what the page reported
        pytest.fail(f"the report never finished drawing ({exc}); page errors: {events['errors']}")
    yield pg, events
    ctx.close()


def _hover_value(pg, row: int, col: int, n: int) -> str:
    box = pg.locator("#overlay").bounding_box()
    cell = box["width"] / n
    pg.mouse.move(box["x"] + (col + 0.5) * cell, box["y"] + (row + 0.5) * cell)
    return pg.locator("#tooltip .value").text_content()


def _canvas_state(pg) -> dict:
    return pg.evaluate(
        """() => {
          const c = document.getElementById('heatmap');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let coloured = 0;
          for (let k = 0; k < d.length; k += 4) if (d[k] < 240 || d[k + 1] < 240) coloured++;
          return {coloured, pixels: d.length / 4, url: c.toDataURL()};
        }"""
    )


def test_heatmap_renders_with_labels(page):
    pg, events = page
    state = _canvas_state(pg)
    assert state["pixels"] > 0 and state["coloured"] > 0.2 * state["pixels"]
    assert pg.locator("#xlabels .tok").all_text_contents() == SENTENCE
    assert pg.locator("#ylabels .tok").all_text_contents() == SENTENCE
    assert "row sums 1.000" in pg.locator("#status").text_content()
    assert pg.locator("#overview canvas").count() == 2 * (4 + 2)  # mean, 4 heads, rollout
    assert not events["errors"]


def test_head_selector_changes_the_values_shown(page, weights):
    pg, events = page
    w, n = weights["sentence"], len(SENTENCE)
    fmt = "{:.4f}".format
    before = _canvas_state(pg)["url"]
    assert _hover_value(pg, 5, 4, n) == fmt(w[0].mean(0)[5, 4])  # default view: mean of heads
    pg.select_option("#head-select", "0")
    assert _hover_value(pg, 5, 4, n) == fmt(w[0, 0, 5, 4])  # previous-token head: bank -> the
    after = _canvas_state(pg)["url"]
    assert after != before
    pg.select_option("#head-select", "2")
    assert _hover_value(pg, 5, 0, n) == fmt(w[0, 2, 5, 0])
    pg.select_option("#layer-select", "1")
    assert _hover_value(pg, 3, 12, n) == fmt(w[1, 2, 3, 12])
    assert pg.locator("body").get_attribute("data-view") == "0/1/2"
    assert pg.locator("#overview canvas.current").get_attribute("data-view") == "1/2"
    assert not events["errors"]


def test_overview_click_and_token_click(page, weights):
    pg, _ = page
    pg.locator("#overview canvas").nth(6 + 2).click()  # layer 1, head 1 (after "mean", head 0)
    assert pg.input_value("#layer-select") == "1" and pg.input_value("#head-select") == "1"
    bank = SENTENCE.index("bank")
    pg.locator("#ylabels .tok").nth(bank).click()
    assert "selected" in pg.locator("#ylabels .tok").nth(bank).get_attribute("class")
    assert "bank" in pg.locator("#row-title").text_content()
    top = int(np.argmax(weights["sentence"][1, 1, bank]))
    first = pg.locator("#row-bars li .name").first.text_content()
    assert first == f"{SENTENCE[top]} ({top})"


def test_hostile_tokens_show_as_text_and_run_nothing(page):
    pg, events = page
    pg.select_option("#seq-select", "1")
    labels = pg.locator("#xlabels .tok").all_text_contents()
    assert labels[2] == EVIL_IMG and labels[4] == EVIL_SCRIPT and labels[3] == "&amp;"
    assert pg.locator("#seq-select option").nth(1).text_content() == EVIL_SCRIPT
    assert pg.locator("img[src='x']").count() == 0
    assert pg.locator("#hm script, #viewer script, #hm img").count() == 0
    _hover_value(pg, 4, 2, 7)
    assert pg.locator("#tooltip .t").all_text_contents() == [EVIL_SCRIPT, EVIL_IMG]
    pg.wait_for_timeout(100)  # give an onerror handler time to fire, were there one
    assert pg.evaluate("window.__pwned") is None
    assert events["dialogs"] == [] and events["errors"] == []


def test_no_network_requests(page):
    pg, events = page
    pg.select_option("#seq-select", "2")
    assert events["requests"] and all(u.startswith(("file:", "data:")) for u in events["requests"])


def test_image_sequence_shows_patches_and_attention_on_the_image(page):
    pg, events = page
    pg.select_option("#seq-select", "2")
    assert pg.locator("#image-panel").is_visible()
    assert pg.locator("#xlabels .tok canvas").count() == 16  # patches where tokens would be
    assert pg.locator("#xlabels .tok").first.text_content() == "[CLS]"
    box = pg.locator("#image-canvas").bounding_box()
    pg.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.3)  # row 1, col 2
    assert "patch 6" in pg.locator("#row-title").text_content()
    assert "patch 6" in pg.locator("#image-caption").text_content()
    pg.select_option("#head-select", "rollout")
    assert "rollout" in pg.locator("#status").text_content()
    assert not events["errors"]


def test_uint16_page_shows_the_same_values(browser, weights, tmp_path):
    w, n = weights["sentence"], len(SENTENCE)
    seq = [{"name": "compact", "tokens": SENTENCE, "weights": w}]
    path = viz.report(tmp_path / "compact.html", seq, precision="uint16")
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    pg.goto(path.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=10_000)
    pg.select_option("#head-select", "3")
    for r, c in [(5, 4), (0, 13), (9, 9)]:
        shown = float(_hover_value(pg, r, c, n))
        assert abs(shown - w[0, 3, r, c]) <= 5e-5 + 1 / 65535  # 4 decimals + one uint16 step
    ctx.close()


def test_screenshot(page):
    pg, _ = page
    pg.set_viewport_size({"width": 1280, "height": 1000})
    pg.select_option("#layer-select", "1")
    pg.select_option("#head-select", "0")
    pg.locator("#ylabels .tok").nth(SENTENCE.index("bank")).click()
    _hover_value(pg, SENTENCE.index("river"), SENTENCE.index("the"), len(SENTENCE))
    out = ROOT / "results" / "report.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(out))
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 20_000
    docs = ROOT / "docs" / "img" / "report.png"
    if not docs.exists() or os.environ.get("SELFATTENTION_UPDATE_SCREENSHOTS") == "1":
        docs.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, docs)


def test_hostile_title_description_and_tables_show_as_text(browser, weights, tmp_path):
    """What ``selfattention explain`` puts in the page's text parts (title, the sentences as
    description, table captions and cells, figure captions) is shown exactly as typed."""
    title = "How self-attention moves '[/]' <i>x</i>"
    sentences = "1. bank [on Monday] " + EVIL_IMG + "   2. the [/] bank " + EVIL_SCRIPT
    cell = "[bold]river[/bold] 0.66, " + EVIL_IMG
    fig = viz.heatmap(weights["tricky"][0, 0], TRICKY)
    path = viz.report(
        tmp_path / "report.html",
        [{"name": "s", "tokens": TRICKY, "weights": weights["tricky"]}],
        title=title,
        description=sentences,
        tables=[(f"Cosine of {EVIL_SCRIPT}", ["layer", "head 0"], [["0", cell]])],
        figures=[("Static → contextual " + EVIL_IMG, fig)],
    )
    ctx = browser.new_context()
    pg = ctx.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto(path.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=10_000)
    assert pg.locator("h1").text_content() == title
    assert pg.title() == title
    assert pg.locator("header .sub").text_content() == sentences
    assert pg.locator("table.data caption").text_content() == f"Cosine of {EVIL_SCRIPT}"
    assert pg.locator("table.data td").nth(1).text_content() == cell
    assert pg.locator("figcaption").text_content() == "Static → contextual " + EVIL_IMG
    assert pg.locator("img[src='x'], header i, td b").count() == 0
    pg.wait_for_timeout(100)  # give an onerror handler time to fire, were there one
    assert pg.evaluate("window.__pwned") is None and dialogs == []
    ctx.close()


# ---------------------------------------------------------------- the "why" views


def _click_cell(pg, row: int, col: int, n: int, modifiers: list[str] | None = None) -> None:
    box = pg.locator("#overlay").bounding_box()
    cell = box["width"] / n
    pg.mouse.move(box["x"] + (col + 0.5) * cell, box["y"] + (row + 0.5) * cell)
    for m in modifiers or []:
        pg.keyboard.down(m)
    pg.mouse.click(box["x"] + (col + 0.5) * cell, box["y"] + (row + 0.5) * cell)
    for m in modifiers or []:
        pg.keyboard.up(m)


def test_neuron_view_terms_add_up_to_the_score(page, weights):
    pg, events = page
    n = len(SENTENCE)
    q, k = weights["queries"], weights["keys"]
    _click_cell(pg, 5, 4, n)  # bank -> the, layer 0, mean of heads: every head listed
    heads = pg.locator("#neuron .nhead")
    assert heads.count() == 4
    for h in range(4):
        score = float(heads.nth(h).get_attribute("data-score"))
        assert score == pytest.approx(0.5 * q[0, h, 5] @ k[0, h, 4], abs=1e-4)
    assert "bank" in pg.locator("#neuron-title").text_content()
    pg.select_option("#head-select", "2")
    assert pg.locator("#neuron .nhead").count() == 1
    terms = pg.locator("#neuron .nterm .val").all_text_contents()
    want = sorted(0.5 * q[0, 2, 5] * k[0, 2, 4], key=abs, reverse=True)
    assert [float(t) for t in terms] == pytest.approx(want, abs=1e-3)
    _click_cell(pg, 5, 7, n)  # another key: other numbers
    assert float(pg.locator("#neuron .nhead").get_attribute("data-score")) == pytest.approx(
        0.5 * q[0, 2, 5] @ k[0, 2, 7], abs=1e-4
    )
    assert not events["errors"]


def test_value_weighted_measure_shows_alpha_times_the_value_norm(page, weights):
    pg, events = page
    w, norms, n = weights["sentence"], weights["value_norms"], len(SENTENCE)
    pg.select_option("#head-select", "1")
    raw = _hover_value(pg, 3, 6, n)
    assert raw == f"{w[0, 1, 3, 6]:.4f}"
    pg.select_option("#measure-select", "value")
    assert _hover_value(pg, 3, 6, n) == f"{w[0, 1, 3, 6] * norms[0, 1, 6]:.4f}"
    assert "value-weighted" in pg.locator("#status").text_content()
    pg.select_option("#head-select", "mean")
    mean = (w[0] * norms[0][:, None, :]).mean(0)
    assert _hover_value(pg, 3, 6, n) == f"{mean[3, 6]:.4f}"
    assert not events["errors"]


def test_attention_flow_view_shows_the_max_flow(page, weights):
    pg, events = page
    w, n = weights["sentence"], len(SENTENCE)
    pg.select_option("#head-select", "flow")
    flow = viz.attention_flow(w, [2, 9])
    assert _hover_value(pg, 2, 0, n) == f"{flow[0, 0]:.4f}"
    assert _hover_value(pg, 9, 11, n) == f"{flow[1, 11]:.4f}"
    assert "attention flow" in pg.locator("#status").text_content()
    pg.select_option("#head-select", "rollout")
    assert _hover_value(pg, 2, 0, n) == f"{viz.rollout(w[:1])[2, 0]:.4f}"  # through layer 0
    assert not events["errors"]


def test_multi_token_selection_sums_or_averages_rows(page, weights):
    pg, events = page
    w, n = weights["sentence"], len(SENTENCE)
    pg.select_option("#head-select", "0")
    _click_cell(pg, 5, 4, n)
    one = [float(v) for v in pg.locator("#row-bars .val").all_text_contents()]
    _click_cell(pg, 8, 4, n, ["Control"])
    _click_cell(pg, 10, 4, n, ["Shift"])
    rows = w[0, 0, [5, 8, 10]]
    names = pg.locator("#row-bars .name").all_text_contents()
    summed = [float(v) for v in pg.locator("#row-bars .val").all_text_contents()]
    order = sorted(range(n), key=lambda j: -rows.sum(0)[j])[:12]
    assert names == [f"{SENTENCE[j]} ({j})" for j in order]
    assert summed == pytest.approx(rows.sum(0)[order], abs=1e-3) and summed != one[: len(summed)]
    assert "sum of 3 queries" in pg.locator("#row-title").text_content()
    assert pg.locator("#ylabels .tok.selected").count() == 3
    pg.select_option("#combine-select", "mean")
    mean = [float(v) for v in pg.locator("#row-bars .val").all_text_contents()]
    assert mean == pytest.approx(rows.mean(0)[order], abs=1e-3)
    _click_cell(pg, 8, 4, n, ["Control"])  # ctrl-click again: row 8 leaves the selection
    assert pg.locator("#ylabels .tok.selected").count() == 2
    assert not events["errors"]


def test_hostile_tokens_stay_text_in_the_neuron_view(page):
    pg, events = page
    pg.select_option("#seq-select", "1")
    pg.wait_for_selector("body[data-ready='1']")
    _click_cell(pg, 4, 2, 7)  # EVIL_SCRIPT -> EVIL_IMG
    assert pg.locator("#neuron-title b").all_text_contents() == [EVIL_SCRIPT, EVIL_IMG]
    pg.select_option("#combine-select", "mean")
    _click_cell(pg, 2, 4, 7, ["Control"])
    assert EVIL_IMG in pg.locator("#row-title").text_content()
    assert pg.locator("img[src='x'], #neuron script, #row-title img").count() == 0
    pg.wait_for_timeout(100)
    assert pg.evaluate("window.__pwned") is None
    assert events["dialogs"] == [] and events["errors"] == []
    assert all(u.startswith(("file:", "data:")) for u in events["requests"])


def test_long_input_stored_in_8_bits_renders_the_right_values_offline(browser, tmp_path):
    """A 200-token, 2 × 3-head input stored as deflated 8-bit rows: the page inflates it with the
    browser's DecompressionStream (no request), says which precision it shows, and every value
    shown is within that precision."""
    from selfattention.viz import _compact

    rng = np.random.default_rng(5)
    n = 200
    w = _softmax(rng.normal(size=(2, 3, n, n)) * 3)
    tokens = [f"t{k}" for k in range(n)]
    path = viz.report(
        tmp_path / "long.html",
        [{"name": "long", "tokens": tokens, "weights": w}],
        precision="uint8",
    )
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    requests, errors = [], []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    assert "8 bits per row" in pg.locator("#precision").text_content()
    tol = _compact.tolerance(w, "uint8")
    pg.select_option("#head-select", "2")
    pg.select_option("#layer-select", "1")
    for r, c in [(0, 0), (17, 3), (40, 41)]:
        pg.locator("#hm-scroll").evaluate(f"e => {{ e.scrollTop = {r} * 15; e.scrollLeft = 0; }}")
        box = pg.locator("#overlay").bounding_box()
        cell = box["width"] / n
        pg.mouse.move(box["x"] + (c + 0.5) * cell, box["y"] + (r + 0.5) * cell)
        shown = float(pg.locator("#tooltip .value").text_content())
        assert abs(shown - w[1, 2, r, c]) <= tol[1, 2, r, 0] + 5e-5
    assert not errors
    assert requests and all(u.startswith(("file:", "data:")) for u in requests)
    ctx.close()
