"""The README's main command, cold (fresh stage cache) and warm (same cache), with per-stage times.

    secvec-bench run --defense security_vectors

runs twice in subprocesses with a new temporary --cache-dir and --out: the cold run builds everything (GGUF
conversion, alignment, security vectors, attacks, generations, verdicts), the warm run must find every stage in the
cache. Per-stage seconds come from results.json `provenance.timings.stages` (a cached stage reports the seconds its
build took originally, flagged `cached: true`). The built-in data is used (SECVEC_BENCH_DATA is removed from the
environment) unless --data-dir is given. On a CPU with native bf16 a third run, cold with `--bf16` in its own cache,
measures what bf16 buys end to end and whether it changes the headline refusal rates beyond sampling noise.

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
            "refusal": refusal_rows(doc["rows"]),
            "summary": proc.stdout.strip().splitlines()[:12]}


def refusal_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline numbers of a run: keyword-judge refusal rate per model state, pooled over seeds."""
    keep = ("phase", "scenario", "defense", "value", "n", "ci_low", "ci_high")
    return [{k: r.get(k) for k in keep} for r in rows
            if r["metric"] == "refusal_rate" and r["judge"] == "keyword" and r["seed"] == "all"]


def within_noise(p1: float, p2: float, n1: int, n2: int, z: float = 1.96) -> bool:
    """Two-proportion z-test at 95%: is |p1 - p2| within what sampling n1 and n2 prompts explains?

    Why not the rows' own bootstrap intervals: at 0/64 or 64/64 a percentile bootstrap collapses to a point, so
    any change from 100% would look significant. The pooled standard error does not collapse unless both are.
    """
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
    return abs(p1 - p2) <= z * se + 1e-12


def compare_refusal(fp32: list[dict[str, Any]], bf16: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """fp32 vs --bf16 refusal rate of each model state both runs have."""
    key = ("phase", "scenario", "defense")
    other = {tuple(r[k] for k in key): r for r in bf16}
    out = []
    for r in fp32:
        b = other.get(tuple(r[k] for k in key))
        if b is None or r["value"] is None or b["value"] is None:
            continue
        out.append({**{k: r[k] for k in key}, "fp32": r["value"], "bf16": b["value"], "n": r["n"],
                    "within_noise": within_noise(r["value"], b["value"], r["n"], b["n"])})
    order = {"aligned": 0, "attacked": 1}
    return sorted(out, key=lambda c: order.get(c["phase"], 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="data directory (default: built-in data)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache and run folders")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-bf16", action="store_true",
                    help="skip the cold --bf16 run (it is skipped anyway on a CPU without native bf16)")
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
        # --bf16 cold, in its own cache so its time compares with the fp32 cold run (GGUF conversion included)
        bf16 = None if args.no_bf16 or not common.bf16_supported() else one_run(
            extra + ["--bf16"], work / "cache-bf16", work / "runs-bf16", env)
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
    if bf16 is not None:
        payload["bf16_cold"] = bf16
        payload["fp32_vs_bf16_refusal"] = compare_refusal(cold["refusal"], bf16["refusal"])
    else:
        payload["bf16_cold"] = {"skipped": "--no-bf16" if args.no_bf16 else "no native bf16 on this CPU"}
    common.write_result("end_to_end" + ("_smoke" if args.smoke else ""), payload, contention,
                        torch.get_num_threads(), args.out_dir)
    print(f"cold {cold['wall_seconds']} s, warm {warm['wall_seconds']} s"
          + (f", --bf16 cold {bf16['wall_seconds']} s" if bf16 else ""))
    for c in payload.get("fp32_vs_bf16_refusal", []):
        print(f"  refusal {c['phase']}/{c['defense']}: fp32 {c['fp32']} vs bf16 {c['bf16']} "
              f"({'within' if c['within_noise'] else 'outside'} noise, n={c['n']})")
    for k, v in cold["stages"].items():
        print(f"  {k:<50} {v['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
