"""The README's main command, cold (fresh stage cache) and warm (same cache), with per-stage times.

    secvec-bench run --defense security_vectors

runs twice in subprocesses with a new temporary --cache-dir and --out: the cold run builds everything (GGUF
conversion, alignment, security vectors, attacks, generations, verdicts), the warm run must find every stage in the
cache. Per-stage seconds come from results.json `provenance.timings.stages` (a cached stage reports the seconds its
build took originally, flagged `cached: true`). The built-in data is used (SECVEC_BENCH_DATA is removed from the
environment) unless --data-dir is given.

    python bench/bench_end_to_end.py                                  # full
    python bench/bench_end_to_end.py --smoke                          # --max-train 8 --max-eval 4 --sv-samples 8
    python bench/bench_end_to_end.py -- --max-eval 16                 # extra arguments for `secvec-bench run`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # noqa: E402

MAIN_COMMAND = ["run", "--defense", "security_vectors"]
TARGETS = {"cold_seconds": 600, "warm_seconds": 30}


def one_run(extra: list[str], cache: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "secvec_bench", *MAIN_COMMAND, "--cache-dir", str(cache), "--out", str(out),
           "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    results = sorted(out.glob("*/results.json"), key=lambda p: p.stat().st_mtime)[-1]
    doc = json.loads(results.read_text())
    t = doc["provenance"]["timings"]
    stages = {name: {"seconds": v.get("seconds"), "cached": v.get("cached", False)} for name, v in t["stages"].items()}
    return {"wall_seconds": round(wall, 2), "pipeline_seconds": t.get("total_seconds"), "stages": stages,
            "stage_seconds_built": round(sum(v["seconds"] or 0 for v in stages.values() if not v["cached"]), 2),
            "generated_tokens": t.get("generated_tokens"),
            "generation_tokens_per_second": t.get("generation_tokens_per_second"),
            "summary": proc.stdout.strip().splitlines()[:12]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="data directory (default: built-in data)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache and run folders")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("extra", nargs="*", help="extra arguments for `secvec-bench run` (after --)")
    args = ap.parse_args(argv)
    extra = list(args.extra)
    if args.smoke:
        extra += ["--max-train", "8", "--max-eval", "4", "--sv-samples", "8", "--max-new-tokens", "8"]
    if args.data_dir:
        extra += ["--data-dir", args.data_dir]
    env = {k: v for k, v in os.environ.items() if k not in ("SECVEC_BENCH_DATA", "SECVEC_BENCH_CACHE")}

    import torch

    contention = common.Contention()
    common.machine()
    work = Path(tempfile.mkdtemp(prefix="secvec-e2e-"))
    try:
        cold = one_run(extra, work / "cache", work / "runs", env)
        warm = one_run(extra, work / "cache", work / "runs", env)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    payload = {
        "command": "secvec-bench " + " ".join(MAIN_COMMAND + extra),
        "data": args.data_dir or "built-in",
        "smoke": args.smoke,
        "cold": cold,
        "warm": warm,
        "targets": TARGETS,
        "meets_targets": {"cold": cold["wall_seconds"] <= TARGETS["cold_seconds"],
                          "warm": warm["wall_seconds"] <= TARGETS["warm_seconds"]},
        "warm_rebuilt_stages": [k for k, v in warm["stages"].items() if not v["cached"]],
    }
    common.write_result("end_to_end" + ("_smoke" if args.smoke else ""), payload, contention,
                        torch.get_num_threads(), args.out_dir)
    print(f"cold {cold['wall_seconds']} s, warm {warm['wall_seconds']} s")
    for k, v in cold["stages"].items():
        print(f"  {k:<50} {v['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
