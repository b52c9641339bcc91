"""The leaderboard site built from synthetic run directories: content, escaping, links, file names, CLI errors.

The browser-level checks (scripts do not run, sorting and filtering work) are in test_leaderboard_browser.py; these
run without Chromium and check the HTML we write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaderboard_dom import parse
from leaderboard_synth import HOSTILE_MODEL, HOSTILE_SCENARIO, PAYLOADS, TEMPLATE, hostile_results, make_run
from secvec_bench.cli import main
from secvec_bench.errors import UserError
from secvec_bench.leaderboard import build_site
from secvec_bench.leaderboard.load import load_runs, load_tidy_file
from secvec_bench.resources import leaderboard_dir

OUR_SCRIPT = re.compile(r"^(\.\./)*static/leaderboard\.js$")


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """Built once per module: tests only read it."""
    return hostile_results(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def site(hostile_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(load_runs([hostile_run]), out, title="Test board")
    return out


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_site_has_every_page_and_the_json_export(site):
    names = {p.relative_to(site).as_posix() for p in pages(site)}
    assert {"index.html", "charts.html", "judges.html", "rm.html"} <= names
    entries = [n for n in names if n.startswith("entries/")]
    assert len(entries) == 3
    assert (site / "static" / "leaderboard.js").is_file() and (site / "static" / "style.css").is_file()
    data = json.loads((site / "table.json").read_text())
    assert len(data["entries"]) == 3
    by = {(e["defense"], e["phase"]): e for e in data["entries"]}
    # llm judge: 8 of 10 harmful per seed for the undefended attacked model; keyword refusals over 9 scored.
    assert by[("none", "attacked")]["cells"]["asr"]["value"] == pytest.approx(0.8)
    assert by[("none", "attacked")]["cells"]["asr"]["judge"] == "llm"
    assert by[("security_vector", "attacked")]["cells"]["asr"]["value"] == pytest.approx(0.3)
    assert by[("none", "aligned")]["cells"]["refusal"]["value"] == pytest.approx(8 / 9)
    assert by[("none", "aligned")]["cells"]["refusal"]["judge"] == "keyword"
    assert by[("none", "attacked")]["cells"]["over_refusal"]["value"] == pytest.approx(0.25)
    assert by[("none", "attacked")]["cells"]["over_refusal"]["prompt_set"] == "xstest_safe"
    assert by[("none", "attacked")]["cells"]["util-task-accuracy"]["value"] == pytest.approx(0.60)
    assert by[("none", "attacked")]["seeds"] == ["0", "1"]
    assert all(e["page"] in entries for e in data["entries"])
    assert {c["id"]: c["judge"] for c in data["columns"]}["asr"] == "llm"


def test_no_markup_from_data_survives(site):
    """Structural check on every page: the only script is ours, no event handler attribute, no javascript: URL, no
    image or svg from the data; the payload text is present as text."""
    for page in pages(site):
        html = page.read_text()
        dom = parse(html)
        scripts = dom.find_all("script")
        assert len(scripts) == 1 and OUR_SCRIPT.match(scripts[0].attrs.get("src") or ""), page
        for el in dom.iter():
            for name, value in el.attrs.items():
                assert not name.startswith("on"), (page, el.tag, name)
                if name in ("href", "src", "action", "xlink:href"):
                    assert not (value or "").strip().lower().startswith(("javascript:", "data:")), (page, value)
        assert not dom.find_all("img"), page
        assert "data-pwned" not in {a for el in dom.iter() for a in el.attrs}, page
        assert html.count("TEMPLATE-RAN") == html.count("{% if true %}TEMPLATE-RAN{% endif %}")  # never evaluated
    index = parse((site / "index.html").read_text())
    assert HOSTILE_MODEL in index.text() and HOSTILE_SCENARIO in index.text()
    entry_text = "".join(parse(p.read_text()).text() for p in (site / "entries").iterdir())
    for payload in PAYLOADS:
        assert payload in entry_text  # shown verbatim, as text
    assert TEMPLATE in entry_text and "{{ 7*7 }}" in index.text()


def test_harmful_text_is_collapsed_behind_a_content_warning(site):
    for page in (site / "entries").iterdir():
        dom = parse(page.read_text())
        for pre in dom.find_all("pre"):
            assert pre.attrs.get("class") in ("untrusted", "rationale")
        details = dom.find_all("details")
        untrusted = [p for d in details for p in d.find_all("pre", **{"class": "untrusted"})]
        assert len(untrusted) == len(dom.find_all("pre", **{"class": "untrusted"})) > 0
        assert all("Content warning" in d.find("summary").text() for d in details if d.find_all("pre"))


def test_links_stay_inside_the_site(site):
    for page in pages(site):
        dom = parse(page.read_text())
        for el in dom.iter():
            for attr in ("href", "src"):
                url = el.attrs.get(attr)
                if not url or el.tag == "svg":
                    continue
                parsed = urlparse(url)
                assert not parsed.scheme and not parsed.netloc, (page, url)
                target = (page.parent / parsed.path).resolve()
                assert target.is_file(), (page, url)
                assert site.resolve() in target.parents, (page, url)


def test_entry_file_names_are_slugs_plus_hash_even_for_traversal_names(tmp_path):
    run = make_run(tmp_path / "runs", "r1", [
        {"model": "../../../../etc/passwd", "scenario": "..", "defense": "/abs", "phase": "attacked", "n_harmful": 2},
        {"model": "a/b", "scenario": "s", "defense": "d", "phase": "attacked", "n_harmful": 2},
        {"model": "a_b", "scenario": "s", "defense": "d", "phase": "attacked", "n_harmful": 2},
    ])
    build_site(load_runs([run]), tmp_path / "site")
    names = sorted(p.name for p in (tmp_path / "site" / "entries").iterdir())
    assert len(names) == 3  # a/b and a_b slug alike but hash apart
    assert all(re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{10}\.html", n) for n in names), names
    assert not (tmp_path / "etc").exists()


def test_templates_and_package_never_mark_data_safe():
    texts = [p.read_text() for p in (leaderboard_dir() / "templates").glob("*.html")]
    texts += [p.read_text() for p in (Path(__file__).parents[1] / "secvec_bench" / "leaderboard").glob("*.py")]
    for t in texts:
        assert "|safe" not in t.replace(" ", "") and "Markup(" not in t and "autoescape false" not in t


def test_base_url_makes_links_absolute_and_is_validated(tmp_path, hostile_run):
    runs = load_runs([hostile_run])
    build_site(runs, tmp_path / "site", base_url="https://example.org/board/")
    dom = parse((tmp_path / "site" / "index.html").read_text())
    links = [a.attrs["href"] for a in dom.find_all("a")]
    assert any(h.startswith("https://example.org/board/entries/") for h in links)
    assert dom.find("link", rel="canonical").attrs["href"] == "https://example.org/board/index.html"
    for bad in ("javascript:alert(1)", "example.org", "https://x.org/\"><script>"):
        with pytest.raises(UserError, match="--base-url"):
            build_site(runs, tmp_path / "site2", base_url=bad)


def test_out_folder_is_replaced_only_when_it_is_a_site(tmp_path, hostile_run):
    runs = load_runs([hostile_run])
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a leaderboard site"):
        build_site(runs, user_dir)
    assert (user_dir / "thesis.tex").read_text() == "precious"
    out = tmp_path / "site"
    build_site(runs, out)
    stale = out / "entries" / "stale.html"
    stale.write_text("old")
    build_site(runs, out)
    assert not stale.exists() and (out / "index.html").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site")]  # no temp folders left


def test_newest_run_wins_for_the_same_entry(tmp_path):
    e = {"model": "m", "scenario": "s", "defense": "none", "phase": "attacked"}
    old = make_run(tmp_path / "runs", "old", [{**e, "n_harmful": 9}], created="2026-01-01T00:00:00Z")
    new = make_run(tmp_path / "runs", "new", [{**e, "n_harmful": 2}], created="2026-02-01T00:00:00Z")
    build_site(load_runs([tmp_path / "runs"]), tmp_path / "site")
    data = json.loads((tmp_path / "site" / "table.json").read_text())
    assert len(data["entries"]) == 1
    assert data["entries"][0]["run_id"] == "new" and data["entries"][0]["superseded_runs"] == ["old"]
    assert data["entries"][0]["cells"]["asr"]["value"] == pytest.approx(0.2)
    assert old.exists() and new.exists()


def test_keyword_only_run_shows_refusal_and_charts_it(tmp_path):
    run = make_run(tmp_path / "runs", "kw", [
        {"model": "m", "scenario": "s", "defense": "none", "phase": "attacked", "n_harmful": 4},
    ], judges=("keyword",), with_utility=False)
    build_site(load_runs([run]), tmp_path / "site")
    data = json.loads((tmp_path / "site" / "table.json").read_text())
    ids = [c["id"] for c in data["columns"]]
    assert "refusal" in ids and "asr" not in ids  # the keyword judge gives no harmfulness verdict
    charts = parse((tmp_path / "site" / "charts.html").read_text())
    assert charts.find_all("rect") and "Refusal per scenario" in charts.text()


def test_rm_and_judge_report_files_are_pivoted(tmp_path, hostile_run):
    rm = tmp_path / "rm.json"
    rm.write_text(json.dumps({"kind": "rm-eval", "rows": [
        {"rm": "bt <b>x</b>", "dataset": "hh", "metric": "pairwise_accuracy", "value": 0.71, "ci_low": 0.6,
         "ci_high": 0.8, "n": 100, "category": "all", "split": "eval", "extra": {}},
        {"rm": "bt <b>x</b>", "dataset": "hh", "metric": "ece", "value": 0.05, "n": 100},
    ]}))
    judge = tmp_path / "keyword.json"
    judge.write_text(json.dumps({"judge": "keyword", "dataset": {"name": "harmbench_val", "n": 602},
                                 "metrics": {"kappa": {"value": 0.44, "low": 0.38, "high": 0.5, "n": 602}},
                                 "created": "2026-11-23"}))
    t = load_tidy_file(judge, "judge file", strict=True)
    assert t.rows == [{"judge": "keyword", "dataset": "harmbench_val", "metric": "kappa", "value": 0.44,
                       "ci_low": 0.38, "ci_high": 0.5, "n": 602}]
    code = main(["leaderboard", "--results", str(hostile_run), "--out", str(tmp_path / "s"),
                 "--rm-results", str(rm), "--judge-results", str(judge)])
    assert code == 0
    rm_page = parse((tmp_path / "s" / "rm.html").read_text())
    assert "pairwise_accuracy" in rm_page.text() and "bt <b>x</b>" in rm_page.text() and not rm_page.find_all("b")
    assert "[0.6–0.8]" in rm_page.text()
    judges_page = parse((tmp_path / "s" / "judges.html").read_text())
    assert "harmbench_val" in judges_page.text() and "0.44" in judges_page.text()
    assert "llm vs keyword" in judges_page.text() or "keyword vs llm" in judges_page.text()


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "no results.json"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text("{oops")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text('{"rows": [{"model": 1}]}')), "field 'model'"),
])
def test_bad_results_give_one_line_errors(tmp_path, capsys, setup, message):
    d = tmp_path / "r"
    setup(d)
    code = main(["leaderboard", "--results", str(d), "--out", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_explicit_bad_rm_file_is_an_error_but_discovered_one_is_skipped(tmp_path, capsys, monkeypatch, hostile_run):
    run = hostile_run
    bad = tmp_path / "results" / "rm" / "notes.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('"just a string"')
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--results", str(run), "--out", str(tmp_path / "s")]) == 0
    assert "skipped" in capsys.readouterr().err
    assert main(["leaderboard", "--results", str(run), "--out", str(tmp_path / "s"), "--rm-results", str(bad)]) == 2


HOSTILE_BITS = list("<>&\"'`/=;:{}%# \n\t") + ["javascript:", "<script>", "onerror=", "{{", "}}", "\u202e", "\u0000",
                                                 "é", "😀", "-->"]
# Including a lone surrogate: valid in a JSON file (as an escape), not encodable as UTF-8.
name_text = st.lists(st.one_of(st.sampled_from(HOSTILE_BITS + ["\ud800"]), st.text(max_size=3)), max_size=12).map(
    "".join)
response_text = st.lists(st.sampled_from(HOSTILE_BITS + ["\ud800"]), max_size=12).map("".join)


def _fffd(text: str) -> str:
    return text.replace("\ud800", "\ufffd")


def _rename(d: dict, model: str, scenario: str, defense: str) -> dict:
    return {**d, "model": model, "scenario": scenario, "defense": f"{defense}|{d['defense']}"}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=name_text, scenario=name_text, defense=name_text, response=response_text)
def test_any_names_and_text_build_a_safe_site(hostile_run, tmp_path_factory, model, scenario, defense, response):
    """The hostile run with its names and one response replaced by generated text (JSON written ASCII-escaped, as
    any run file may be), rebuilt into a site: still one script, no handlers, no images, text shown as given."""
    root = tmp_path_factory.mktemp("prop")
    results = json.loads((hostile_run / "results.json").read_text())
    results["rows"] = [_rename(r, model, scenario, defense) for r in results["rows"]]
    samples = [_rename(json.loads(line), model, scenario, defense)
               for line in (hostile_run / "samples.jsonl").read_text().splitlines()]
    samples[0]["response"] = response
    run = root / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))
    (run / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
    site = root / "site"
    build_site(load_runs([run]), site)
    data = json.loads((site / "table.json").read_text(encoding="utf-8"))
    assert len(data["entries"]) == 3 and {e["model"] for e in data["entries"]} == {_fffd(model)}
    pages = [site / "index.html", *sorted((site / "entries").iterdir())]
    assert len(pages) == 4
    shown = []
    for page in pages:
        dom = parse(page.read_text(encoding="utf-8"))
        assert len(dom.find_all("script")) == 1
        assert not [a for el in dom.iter() for a in el.attrs if a.startswith("on")]
        assert not dom.find_all("img")
        shown += [pre.text() for pre in dom.find_all("pre", **{"class": "untrusted"})]
    assert _fffd(response) in shown
