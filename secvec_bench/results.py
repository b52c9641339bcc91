"""The results store: what a run leaves on disk, and the schema every reader (leaderboard, RM eval) relies on.

A run directory `<out>/<run_id>/` holds:

- `samples.jsonl`: one JSON object per generated response:
  `{id, prompt_id, prompt, response, model, scenario, defense, seed, phase, prompt_set, verdicts: {judge: Verdict}}`
  where `phase` is `aligned` (the aligned model before any attack), `attacked` (after the attack, defense removed) or
  `sv_on` (the security-vector-on model, a control that must itself be harmful), and `prompt_set` names the
  evaluation prompts (e.g. `harmful_eval`, `xstest_safe`).
- `results.json`: `{schema_version, run_id, created, model, rows, provenance}`. `rows` is a tidy list of `Row`
  (one metric value each). Aggregates over seeds have `seed: "all"` and a 95% interval in `ci_low`/`ci_high`.
  `provenance` has the config, data hashes, chat-template hash, package versions, git commit and stage timings.

Every file is written atomically (temp file + rename), so a killed run never leaves a torn file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl

SCHEMA_VERSION = 1


@dataclass
class Row:
    model: str
    scenario: str
    defense: str
    judge: str
    metric: str
    value: float | None
    n: int
    seed: int | str = "all"
    phase: str = "attacked"
    ci_low: float | None = None
    ci_high: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_run(run_dir: Path, samples: list[dict], results: dict[str, Any]) -> None:
    """Samples first, then results: a results.json on disk always has its samples beside it."""
    atomic_write_jsonl(run_dir / "samples.jsonl", samples)
    atomic_write_json(run_dir / "results.json", {"schema_version": SCHEMA_VERSION, **results})


def read_results(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "results.json", "results file")


def read_samples(run_dir: Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "samples.jsonl", "samples file")
