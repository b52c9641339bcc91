"""Run every bench on a quiet machine and write bench/results/*.json plus bench/results/summary.md.

    python bench/run_all.py            # full (~15-20 min on the 2-core reference machine)
    python bench/run_all.py --smoke    # tiny sizes, results in bench/results/smoke/ (a few minutes)

Each bench runs in its own process (one model in memory at a time; a crash in one does not lose the others). The
machine should be otherwise idle: every JSON records the load average and is flagged `contended` when it was not.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("bench_autocast_cache.py", "bench_generation.py", "bench_training.py", "bench_end_to_end.py")


def settle(max_wait: float = 240.0, poll: float = 10.0) -> float:
    """Wait until the 1-minute load average falls to a quarter of a core per CPU (the `contended` threshold), at
    most `max_wait` seconds; returns the seconds waited.

    Why: benches run back to back, and the load average still carries the previous bench's own load for a minute or
    two, so without this wait every bench but the first was flagged `contended` on an otherwise idle machine.
    """
    import os

    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        try:
            if os.getloadavg()[0] <= 0.25 * cores:
                break
        except OSError:
            break
        time.sleep(poll)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated subset, e.g. generation,training")
    args = ap.parse_args(argv)
    out_dir = HERE / "results" / ("smoke" if args.smoke else "")
    chosen = [b for b in BENCHES if not args.only or b[len("bench_"):-3] in args.only.split(",")]
    failed = []
    for script in chosen:
        cmd = [sys.executable, str(HERE / script), "--out-dir", str(out_dir)] + (["--smoke"] if args.smoke else [])
        waited = 0.0 if args.smoke else settle()
        print(f"== {' '.join(cmd[1:])} (after {waited:.0f} s waiting for the load to settle)", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        print(f"== {script}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script)
    subprocess.run([sys.executable, str(HERE / "report.py"), "--results", str(out_dir)])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
