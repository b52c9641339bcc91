"""Apply a judge to stored records without regenerating anything.

Two shapes of input share this code: a plain JSONL of `{prompt, response, ...}` records (each gets a `verdict`), and a
run directory whose `samples.jsonl` gets `verdicts[judge]` per sample, after which `results.json` rows are recomputed
from all verdicts. Re-judging a run is therefore cheap and never touches the generations.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from .agreement import pairwise_judge_agreement
from .base import Judge, Verdict

Progress = Callable[[int, int], None]


def check_records(records: Sequence[dict[str, Any]], source: str) -> None:
    """Every record needs string `prompt` and `response`; the error names the file, line and field."""
    for i, rec in enumerate(records, 1):
        for field in ("prompt", "response"):
            if field not in rec:
                raise UserError(f"{source} record {i} has no field {field!r}")
            if not isinstance(rec[field], str):
                raise UserError(f"{source} record {i} field {field!r} must be a string")


def score_records(
    judge: Judge, records: Sequence[dict[str, Any]], batch_size: int = 16, progress: Progress | None = None
) -> list[Verdict]:
    """Verdicts for records in order, scored in batches so model-backed judges can batch their forward passes."""
    out: list[Verdict] = []
    n = len(records)
    for start in range(0, n, max(1, batch_size)):
        chunk = records[start : start + batch_size]
        verdicts = judge.score_batch([r["prompt"] for r in chunk], [r["response"] for r in chunk])
        if len(verdicts) != len(chunk):  # a judge bug, not user input
            raise RuntimeError(f"judge {judge.name} returned {len(verdicts)} verdicts for {len(chunk)} records")
        out.extend(verdicts)
        if progress:
            progress(len(out), n)
    return out


def judge_file(
    judge: Judge, input_path: Path, output_path: Path, batch_size: int = 16, progress: Progress | None = None
) -> list[dict[str, Any]]:
    records = read_jsonl(input_path, "input file")
    check_records(records, f"input file {input_path}")
    verdicts = score_records(judge, records, batch_size, progress)
    rows = [{**rec, "verdict": v.as_dict()} for rec, v in zip(records, verdicts)]
    atomic_write_jsonl(output_path, rows)
    return rows


def judge_run(
    judge: Judge, run_dir: Path, batch_size: int = 16, progress: Progress | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Add `verdicts[judge.name]` to every sample of a run and recompute its result rows.

    Keys of results.json other than `rows` are kept; the judge's config is recorded under
    `provenance.judges[name]` so a reader knows which keyword list / weights / rubric produced the verdicts.
    """
    from ..metrics import load_reliability, rows_from_samples  # local: metrics imports judging helpers

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--run {run_dir} is not a directory")
    samples_path = run_dir / "samples.jsonl"
    results_path = run_dir / "results.json"
    samples = read_jsonl(samples_path, "samples file")
    check_records(samples, f"samples file {samples_path}")
    results = read_json(results_path, "results file") if results_path.exists() else {}
    if not isinstance(results, dict):
        raise UserError(f"results file {results_path} is not a JSON object")
    verdicts = score_records(judge, samples, batch_size, progress)
    for s, v in zip(samples, verdicts):
        existing = s.get("verdicts")
        if not isinstance(existing, dict):
            existing = {}
        existing[judge.name] = v.as_dict()
        s["verdicts"] = existing
    required = ("model", "scenario", "defense", "seed", "phase")
    for i, s in enumerate(samples, 1):
        missing = [k for k in required if k not in s]
        if missing:
            raise UserError(f"samples file {samples_path} record {i} lacks {', '.join(missing)}")
    prov = results.get("provenance")
    if not isinstance(prov, dict):
        prov = {}
    judges = prov.get("judges") if isinstance(prov.get("judges"), dict) else {}
    judges[judge.name] = {**judge.config(), "judged_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    prov["judges"] = judges
    results["provenance"] = prov
    reliability = load_reliability(judge_configs={k: v for k, v in judges.items() if isinstance(v, dict)})
    results["rows"] = [r.as_dict() for r in rows_from_samples(samples, reliability=reliability)]
    results["judge_pairwise_agreement"] = pairwise_judge_agreement(samples)
    results.setdefault("schema_version", 1)
    # samples first, then results: results.json never refers to verdicts that are not on disk
    atomic_write_jsonl(samples_path, samples)
    atomic_write_json(results_path, results)
    return samples, results
