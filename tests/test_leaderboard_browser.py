"""Acceptance test for issue 7: the site in a real headless Chromium.

A site is built from a run whose prompts, responses, rationales, model and scenario names carry `<script>`,
`<img onerror>`, `javascript:` links, an svg onload break-out and template syntax. Each payload, if it ran, would
change `document.title` or set `data-pwned` on the root element; Chromium's `--dump-dom` serialises the DOM after
the page's scripts ran, so the checks see the page as a reader would. Our own script marks `data-js="ready"`, which
proves scripts were enabled (a payload not running is then meaningful). Sorting and filtering are driven through
the URL (`?filter=...`, `?sort=...&dir=...`), which the page's script applies on load. Skipped without Chromium.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from leaderboard_dom import parse
from leaderboard_synth import HOSTILE_MODEL, HOSTILE_SCENARIO, PAYLOADS, TEMPLATE, hostile_results
from secvec_bench.leaderboard import build_site
from secvec_bench.leaderboard.browser import dump_dom, file_url, find_chromium, screenshot
from secvec_bench.leaderboard.load import load_runs

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (Debian package `chromium`)")

TITLE = "Acceptance board"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    build_site(load_runs([hostile_results(root / "runs")]), root / "site", title=TITLE)
    return root / "site"


def board_rows(dom):
    table = dom.find("table", id="board")
    return [tr for tr in table.find("tbody").find_all("tr")]


def assert_untouched(dom, title: str) -> None:
    html = dom.find("html")
    assert html.attrs.get("data-js") == "ready", "the page's own script did not run"
    assert "data-pwned" not in html.attrs and not [el for el in dom.iter() if "data-pwned" in el.attrs]
    assert dom.find("title").text() == title
    scripts = dom.find_all("script")
    assert len(scripts) == 1 and scripts[0].attrs["src"].endswith("static/leaderboard.js")
    assert not dom.find_all("img")
    for el in dom.iter():
        assert not [a for a in el.attrs if a.startswith("on")], el.tag
        assert not (el.attrs.get("href") or "").lower().startswith("javascript:")


def test_index_in_chromium_runs_no_injected_script_and_shows_the_rows(site, tmp_path):
    dom = parse(dump_dom(file_url(site / "index.html")))
    assert_untouched(dom, TITLE)
    rows = board_rows(dom)
    assert len(rows) == 3 and not any("hidden" in r.attrs for r in rows)
    cells = [[c.text().strip() for c in cells_of(r)] for r in rows]
    assert [c[0] for c in cells] == [HOSTILE_MODEL] * 3
    assert [c[1] for c in cells] == [HOSTILE_SCENARIO] * 3
    assert [(c[2], c[3]) for c in cells] == [("none", "aligned (pre-attack)"), ("none", "attacked"),
                                             ("security_vector", "attacked")]
    # The scenario name's `{{ 7*7 }}` is shown as written, never evaluated to 49.
    assert all("{{ 7*7 }}" in c[1] and "49" not in c[1] for c in cells)
    assert dom.find("span", **{"data-count-for": "board"}).text() == "3 rows"
    png = screenshot(file_url(site / "index.html"), tmp_path / "index.png", 1280, 800)
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1280, 800)


def cells_of(row):
    return [c for c in row.children if not isinstance(c, str)]


def col_index(dom, col: str) -> int:
    heads = dom.find("table", id="board").find("thead").find_all("th")
    return [h.attrs.get("data-col") for h in heads].index(col)


def test_filter_from_the_url_hides_the_other_rows(site):
    dom = parse(dump_dom(file_url(site / "index.html", "?filter=security_vector")))
    rows = board_rows(dom)
    visible = [r for r in rows if "hidden" not in r.attrs]
    assert len(rows) == 3 and len(visible) == 1 and "security_vector" in visible[0].text()
    assert dom.find("span", **{"data-count-for": "board"}).text() == "1 of 3 rows"


def test_sort_and_two_term_filter_from_the_url_fragment(site):
    """`#filter=aligned none&sort=asr&dir=desc`: rows ordered by ASR, highest first (hidden rows keep their place in
    the order), and only rows matching both terms stay visible."""
    dom = parse(dump_dom(file_url(site / "index.html", "#filter=aligned%20none&sort=asr&dir=desc")))
    i = col_index(dom, "asr")
    rows = board_rows(dom)
    asr = [float(cells_of(r)[i].attrs["data-sort"]) for r in rows]
    assert asr == pytest.approx([0.8, 0.3, 0.1])
    assert [r.attrs["data-phase"] for r in rows] == ["attacked", "attacked", "aligned"]
    assert "security_vector" in rows[1].text()
    assert dom.find("th", **{"data-col": "asr"}).attrs.get("aria-sort") == "descending"
    visible = [r for r in rows if "hidden" not in r.attrs]
    assert len(visible) == 1 and visible[0].attrs["data-phase"] == "aligned"


def test_entry_page_in_chromium_keeps_payloads_as_text(site):
    entry = sorted((site / "entries").iterdir())[0]
    dom = parse(dump_dom(file_url(entry)))
    html_title = dom.find("title").text()
    assert html_title.endswith(TITLE) and HOSTILE_MODEL in html_title
    assert_untouched(dom, html_title)
    pres = [p.text() for p in dom.find_all("pre")]
    for payload in PAYLOADS:
        assert any(payload in p for p in pres), payload
    assert any(TEMPLATE in p for p in pres) and not any("49" in p for p in pres)
    for d in dom.find_all("details"):
        if d.find_all("pre", **{"class": "untrusted"}):
            assert "open" not in d.attrs  # collapsed behind the content warning
    assert len([r for r in dom.find("table", id="samples").find("tbody").find_all("tr")]) == 28


def test_csp_would_stop_inline_script_even_if_escaping_failed(site, tmp_path):
    """Second line of defence: a page with the site's own <head> (its Content-Security-Policy) and *unescaped*
    payloads in the body. Our script file still runs; the inline script and event handlers do not."""
    html = (site / "index.html").read_text()
    head = html[: html.index("</head>") + len("</head>")]
    page = site / "csp-probe.html"
    page.write_text(head + "<body><p>probe</p>" + "".join(p for p in PAYLOADS) + "</body></html>")
    try:
        dom = parse(dump_dom(file_url(page)))
    finally:
        page.unlink()
    root = dom.find("html")
    assert root.attrs.get("data-js") == "ready"
    assert "data-pwned" not in root.attrs and dom.find("title").text() == TITLE
    assert dom.find_all("img")  # the markup is there (unescaped on purpose); it just cannot run
