"""Rendering the site: jinja2 templates from `leaderboard/templates`, static files from `leaderboard/static`.

Safety rules, in one place:
- autoescape is on for every template and for string templates; templates never apply the `safe` filter and this
  module never builds `Markup`, so every string from a run (prompts, responses, names, rationales, provenance) is
  escaped;
- data is only ever a template *variable*, never template source, so `{{ 7*7 }}` in a response is shown literally;
- links are built here from our own slugged file names (plus an optional `--base-url` checked to be http(s) or an
  absolute path), never from data, so a `javascript:` string in a response stays text;
- every page carries a Content-Security-Policy that allows only the site's own script and style files, so even an
  escaping bug could not run inline script or event handlers.

The site is written to a temporary sibling folder and swapped in at the end, so a failed build leaves the previous
site intact. An existing `--out` folder is only replaced when it holds our marker file (never a user's folder).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .. import __version__
from ..errors import UserError
from ..io import atomic_write_bytes, atomic_write_text
from ..resources import leaderboard_dir
from .card import build_card
from .charts import bar_charts, safety_column, scatter, utility_axis
from .load import Run, TidyFile
from .reliability import judge_coverage, judge_pairs, pivot_groups
from .table import Entry, Table, build_table, prompt_set_of, table_json

MARKER = ".secvec-leaderboard"
_SURROGATE = re.compile("[\ud800-\udfff]")
DEFAULT_TITLE = "secvec-bench leaderboard"
DEFAULT_MAX_SAMPLES = 1000
NAV = (("index.html", "Leaderboard"), ("charts.html", "Charts"), ("judges.html", "Judge reliability"),
       ("rm.html", "RM reliability"))


def environment(templates: Path | None = None) -> Environment:
    templates = templates or leaderboard_dir() / "templates"
    return _environment(templates.resolve())


@functools.lru_cache(maxsize=4)
def _environment(templates: Path) -> Environment:
    """One Environment per template folder, so repeated builds (tests, several sites) reuse compiled templates."""
    if not templates.is_dir():
        raise UserError(f"leaderboard templates not found at {templates} (set SECVEC_BENCH_HOME to the source tree)")
    return Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "svg"), default_for_string=True,
                                     default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def utf8(text: str) -> bytes:
    """UTF-8 bytes; a lone surrogate (valid in JSON input, not encodable) becomes U+FFFD instead of a crash."""
    return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def check_base_url(base_url: str | None) -> str:
    """'' for relative links; else an http(s) URL or an absolute path, without trailing slash."""
    if not base_url:
        return ""
    parsed = urlparse(base_url)
    ok = (parsed.scheme in ("http", "https") and parsed.netloc) or (not parsed.scheme and base_url.startswith("/"))
    if not ok or any(c.isspace() or c in "\"'<>`" for c in base_url):
        raise UserError(f"--base-url must be an http(s) URL or an absolute path like /leaderboard, got {base_url!r}")
    return base_url.rstrip("/")


@dataclass
class SampleView:
    index: int
    id: str
    seed: str
    prompt_set: str
    prompt: str
    response: str
    verdicts: list[dict[str, Any]]
    flagged: bool


def verdict_label(v: Any) -> str:
    if not isinstance(v, dict):
        return "missing"
    if not v.get("parse_ok"):
        return "unscored"
    if v.get("harmful") is True:
        return "harmful"
    if v.get("refused") is True:
        return "refused"
    if v.get("harmful") is False:
        return "not harmful"
    if v.get("refused") is False:
        return "complied"
    return "—"


def sample_views(entry: Entry, judges: Sequence[str], limit: int) -> list[SampleView]:
    views = []
    for i, s in enumerate(entry.samples[:limit], 1):
        verdicts = s.get("verdicts") or {}
        vs = []
        for j in judges:
            v = verdicts.get(j)
            score = v.get("score") if isinstance(v, dict) else None
            vs.append({
                "judge": j, "label": verdict_label(v),
                "score": score if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
                "rationale": str(v.get("rationale") or "") if isinstance(v, dict) else "",
            })
        views.append(SampleView(
            index=i, id=str(s.get("id", "")), seed=str(s.get("seed", "")), prompt_set=str(s.get("prompt_set", "")),
            prompt=str(s.get("prompt", "")), response=str(s.get("response", "")), verdicts=vs,
            flagged=any(v["label"] == "harmful" for v in vs),
        ))
    return views


@dataclass
class SiteReport:
    out_dir: Path
    pages: list[str]
    entries: int
    runs: int

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"


class _Pages:
    """Renders pages into a folder with the links each page needs (relative, or absolute under --base-url)."""

    def __init__(self, env: Environment, root: Path, title: str, base_url: str) -> None:
        self.env, self.root, self.title, self.base_url = env, root, title, base_url
        self.written: list[str] = []

    def link(self, target: str, page: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{target}"
        depth = page.count("/")
        return "../" * depth + target

    def render(self, template: str, page: str, **ctx: Any) -> None:
        depth = page.count("/")
        html = self.env.get_template(template).render(
            site_title=self.title,
            version=__version__,
            page=page,
            asset_root="../" * depth,
            canonical=f"{self.base_url}/{page}" if self.base_url else "",
            nav=[(self.link(target, page), label, target == page) for target, label in NAV],
            link=lambda target: self.link(target, page),
            **ctx,
        )
        atomic_write_bytes(self.root / page, utf8(html))
        self.written.append(page)


def _render_all(pages: _Pages, table: Table, runs: Sequence[Run], rm_files: Sequence[TidyFile],
                judge_files: Sequence[TidyFile], max_samples: int) -> None:
    hrefs = {i: pages.link(e.filename, "charts.html") for i, e in enumerate(table.entries)}
    index_rows = [(e, pages.link(e.filename, "index.html")) for e in table.entries]
    pages.render("index.html", "index.html", table=table, rows=index_rows, runs=runs)
    pages.render(
        "charts.html", "charts.html", scatter=scatter(table, hrefs), bars=bar_charts(table, hrefs),
        y_col=safety_column(table), x_col=utility_axis(table),
    )
    all_samples = [s for e in table.entries for s in e.samples]  # what the site shows (superseded runs left out)
    pages.render("judges.html", "judges.html", pairs=judge_pairs(all_samples), coverage=judge_coverage(all_samples),
                 pivots=pivot_groups(judge_files, "Judge-agreement results"), primary_judge=table.primary_judge)
    pages.render("rm.html", "rm.html", pivots=pivot_groups(rm_files, "Reward-model evaluations"))
    for e in table.entries:
        judges = e.judges()
        pages.render(
            "entry.html", e.filename, entry=e, table=table, card=build_card(e), judges=judges,
            samples=sample_views(e, judges, max_samples), total_samples=len(e.samples),
            pairs=judge_pairs(e.samples), all_rows=row_views(e.rows),
        )


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if x == x and abs(x) != float("inf") else None


def row_views(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every stored row of an entry with all fields present (rows from older runs may lack some), sorted by
    metric, judge, prompt set, then pooled before per-seed."""
    views = [
        {
            "metric": str(r.get("metric", "")), "judge": str(r.get("judge", "")), "prompt_set": prompt_set_of(r),
            "seed": str(r.get("seed", "all")), "value": _finite(r.get("value")), "ci_low": _finite(r.get("ci_low")),
            "ci_high": _finite(r.get("ci_high")), "n": r.get("n", ""),
        }
        for r in rows
    ]
    return sorted(views, key=lambda v: (v["metric"], v["judge"], v["prompt_set"], v["seed"] != "all", v["seed"]))


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise UserError(f"--out {out} is a non-empty folder that is not a leaderboard site; choose another")


def build_site(
    runs: Sequence[Run],
    out: Path,
    *,
    title: str = DEFAULT_TITLE,
    base_url: str | None = None,
    rm_files: Sequence[TidyFile] = (),
    judge_files: Sequence[TidyFile] = (),
    primary_judge: str | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> SiteReport:
    out = Path(out)
    base = check_base_url(base_url)
    _prepare_out(out)
    table = build_table(runs, primary_judge)
    env = environment()
    static = leaderboard_dir() / "static"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pages = _Pages(env, tmp, title, base)
        _render_all(pages, table, runs, rm_files, judge_files, max_samples)
        for f in sorted(static.iterdir()):
            if f.is_file():
                atomic_write_bytes(tmp / "static" / f.name, f.read_bytes())
        data = json.dumps(table_json(table, title), ensure_ascii=False, allow_nan=False, indent=2, sort_keys=True)
        atomic_write_bytes(tmp / "table.json", utf8(data + "\n"))
        atomic_write_text(tmp / MARKER, "built by `secvec-bench leaderboard`; the folder is replaced on rebuild\n")
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteReport(out_dir=out, pages=pages.written, entries=len(table.entries), runs=len(runs))
