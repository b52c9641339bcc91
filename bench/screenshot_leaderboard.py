"""Rebuild the README screenshot of the leaderboard index from real run directories.

    python bench/screenshot_leaderboard.py --results runs/ --out docs/img/leaderboard_index.png

Builds the site (same code as `secvec-bench leaderboard`) into a temporary folder, or into --site, and takes a
headless-Chromium screenshot of index.html. The viewport height follows the number of table rows unless --height is
given, so the whole table fits. Needs Debian's `chromium` (or SECVEC_BENCH_CHROMIUM). Only point it at runs produced
by the pipeline: the screenshot is published as what the benchmark measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from secvec_bench.errors import UserError
from secvec_bench.leaderboard import build_site
from secvec_bench.leaderboard.browser import file_url, screenshot
from secvec_bench.leaderboard.load import load_runs, load_tidy_files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", nargs="+", type=Path, required=True, metavar="DIR")
    p.add_argument("--out", type=Path, required=True, metavar="PNG")
    p.add_argument("--site", type=Path, default=None, help="keep the built site here (default: a temporary folder)")
    p.add_argument("--title", default="secvec-bench leaderboard")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=None)
    args = p.parse_args(argv)
    try:
        runs = load_runs(args.results)
        judge_files = load_tidy_files(None, [Path.cwd() / "results"], "judge_agreement", "judge-agreement file")
        with tempfile.TemporaryDirectory(prefix="secvec-site-") as tmp:
            site = args.site or Path(tmp) / "site"
            report = build_site(runs, site, title=args.title, judge_files=judge_files)
            height = args.height or min(2400, 420 + 64 * report.entries)
            screenshot(file_url(report.index), args.out, args.width, height)
    except UserError as exc:
        print(f"screenshot_leaderboard: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: index of {report.entries} entries from {report.runs} runs ({args.width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
