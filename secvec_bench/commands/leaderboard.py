"""`secvec-bench leaderboard`: build the static leaderboard site from stored run results.

RM and judge-agreement results are included from the files named by `--rm-results` / `--judge-results`, or, when a
flag is not given, from `results/rm/*.json` and `results/judge_agreement/*.json` found next to the current folder
and the `--results` folders, plus each run's own `rm_eval.json` (give the flag with no file to include none).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..leaderboard.browser import file_url, screenshot
from ..leaderboard.load import load_runs, load_tidy_files
from ..leaderboard.render import DEFAULT_MAX_SAMPLES, DEFAULT_TITLE, build_site

RUN_RM_FILE = "rm_eval.json"  # written into a run directory by `secvec-bench rm-eval --run`


def add_to(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="build a static HTML leaderboard from run results",
        description="Build a self-contained static leaderboard site (no CDN, no network) from run directories.",
    )
    p.add_argument("--results", nargs="+", type=Path, required=True, metavar="DIR",
                   help="run directories (holding results.json) or folders containing run directories")
    p.add_argument("--out", type=Path, required=True, metavar="SITE_DIR", help="folder to write the site into")
    p.add_argument("--title", default=DEFAULT_TITLE, help="site title")
    p.add_argument("--base-url", default=None, metavar="URL",
                   help="absolute URL or path the site will be served from, for absolute links (default: relative)")
    p.add_argument("--rm-results", nargs="*", type=Path, default=None, metavar="FILE",
                   help="RM result files (default: results/rm/**/*.json found near --results and the current folder)")
    p.add_argument("--judge-results", nargs="*", type=Path, default=None, metavar="FILE",
                   help="judge-agreement result files (default: results/judge_agreement/**/*.json found likewise)")
    p.add_argument("--judge", default=None, metavar="NAME",
                   help="judge preferred for judge-based columns (default: keyword; a column this judge does not "
                        "measure is read from the judge that measured it for the most entries)")
    p.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES, metavar="N",
                   help=f"samples shown per entry page (default {DEFAULT_MAX_SAMPLES})")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                   help="also screenshot index.html with headless Chromium into this PNG")
    p.set_defaults(func=run)


def discovery_roots(results: list[Path]) -> list[Path]:
    """`results/` folders: under the current folder, and at or under each --results folder and its two parents."""
    roots = [Path.cwd() / "results"]
    for r in results:
        r = Path(r).resolve()
        for d in (r, *list(r.parents)[:2]):
            roots.append(d if d.name == "results" else d / "results")
    return roots


def run(args: argparse.Namespace) -> int:
    if args.max_samples < 0:
        raise UserError("--max-samples must be >= 0")
    runs = load_runs(args.results)
    roots = discovery_roots(args.results)
    in_runs = [r.path / RUN_RM_FILE for r in runs]
    rm = load_tidy_files(args.rm_results, roots, "rm", "RM results file", in_runs) if args.rm_results != [] else []
    judges = (load_tidy_files(args.judge_results, roots, "judge_agreement", "judge-agreement results file")
              if args.judge_results != [] else [])
    report = build_site(
        runs, args.out, title=args.title, base_url=args.base_url, rm_files=rm, judge_files=judges,
        primary_judge=args.judge, max_samples=args.max_samples,
    )
    print(f"leaderboard: {report.entries} entries from {report.runs} runs, {len(rm)} RM and {len(judges)} "
          f"judge-agreement files -> {report.index}")
    if args.screenshot:
        screenshot(file_url(report.index), args.screenshot)
        print(f"screenshot: {args.screenshot}")
    return 0
