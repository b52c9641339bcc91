"""Finding and reading what the leaderboard shows: run directories, RM results and judge-agreement results.

`--results` takes run directories (they hold `results.json`) or folders that contain run directories at any depth,
so pointing it at `runs/` picks up every run. RM and judge-agreement files are tidy JSON rows written by other
commands while this one evolves, so they are read generically: a file is either a list of row objects or an object
with a `rows` list, and every other top-level key is kept as metadata. Files named explicitly must be valid
(UserError otherwise); files found by auto-discovery that do not fit are skipped with a warning, because a results
folder may hold other JSON too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import UserError
from ..io import read_json, read_jsonl

RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
ROW_KEYS = ("model", "scenario", "defense", "metric")


@dataclass
class Run:
    """One run directory as read from disk."""

    path: Path
    run_id: str
    created: str
    model: str
    rows: list[dict[str, Any]]
    provenance: dict[str, Any]
    samples: list[dict[str, Any]]
    has_samples: bool


@dataclass
class TidyFile:
    """A file of tidy rows (RM or judge-agreement results) plus its other top-level fields."""

    path: Path
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run directories named by `--results`, in a stable order, each once."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise UserError(f"--results: {p} does not exist")
        if p.is_file():
            if p.name == RESULTS_FILE:
                found.append(p.parent)
                continue
            raise UserError(f"--results: {p} is a file; give a run directory or a folder of run directories")
        if (p / RESULTS_FILE).is_file():
            found.append(p)
            continue
        nested = sorted(
            f.parent for f in p.rglob(RESULTS_FILE) if not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        if not nested:
            raise UserError(f"--results: no {RESULTS_FILE} found in {p} or below")
        found.extend(nested)
    seen: set[Path] = set()
    unique = []
    for d in found:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def _check_rows(rows: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise UserError(f"{source}: field 'rows' must be a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{source}: rows[{i}] is not an object")
        for key in ROW_KEYS:
            if not isinstance(row.get(key), str):
                raise UserError(f"{source}: rows[{i}] field {key!r} must be a string")
        value = row.get("value")
        if value is not None and not isinstance(value, (int, float)):
            raise UserError(f"{source}: rows[{i}] field 'value' must be a number or null")
        if not isinstance(row.get("extra", {}), dict):
            raise UserError(f"{source}: rows[{i}] field 'extra' must be an object")
    return rows


def load_run(run_dir: Path) -> Run:
    results_path = run_dir / RESULTS_FILE
    data = read_json(results_path, "results file")
    if not isinstance(data, dict):
        raise UserError(f"results file {results_path} must hold a JSON object")
    rows = _check_rows(data.get("rows", []), f"results file {results_path}")
    provenance = data.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise UserError(f"results file {results_path}: field 'provenance' must be an object")
    samples_path = run_dir / SAMPLES_FILE
    has_samples = samples_path.is_file()
    samples = read_jsonl(samples_path, "samples file") if has_samples else []
    for i, s in enumerate(samples, 1):
        if not isinstance(s.get("verdicts", {}), dict):
            raise UserError(f"samples file {samples_path} line {i}: field 'verdicts' must be an object")
    return Run(
        path=run_dir,
        run_id=str(data.get("run_id") or run_dir.name),
        created=str(data.get("created") or ""),
        model=str(data.get("model") or ""),
        rows=rows,
        provenance=provenance,
        samples=samples,
        has_samples=has_samples,
    )


def load_runs(paths: Sequence[Path]) -> list[Run]:
    return [load_run(d) for d in find_run_dirs(paths)]


def _is_metric_map(m: Any) -> bool:
    return isinstance(m, dict) and bool(m) and all(isinstance(v, dict) and "value" in v for v in m.values())


def report_rows(report: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A report object `{judge, dataset: {name, ...}, metrics: {name: {value, low, high, n}}, ...}` as tidy rows.

    Its string fields (and the `name` of nested objects) identify the rows; everything else is metadata."""
    ident: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for k, v in report.items():
        if k == "metrics":
            continue
        if isinstance(v, str) and k not in ("created", "git_commit", "schema_version"):
            ident[k] = v
        elif isinstance(v, dict) and isinstance(v.get("name"), str):
            ident[k] = v["name"]
            meta[k] = v
        else:
            meta[k] = v
    rows = []
    for name, m in report["metrics"].items():
        rows.append({**ident, "metric": str(name), "value": m.get("value"),
                     "ci_low": m.get("ci_low", m.get("low")), "ci_high": m.get("ci_high", m.get("high")),
                     "n": m.get("n")})
    return rows, meta


def tidy_rows(data: Any) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """Rows and metadata from the shapes result files use: `{rows: [...], ...}`, a list of rows, or a report with a
    `metrics` map (alone or in a list); None for anything else."""
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return data["rows"], {k: v for k, v in data.items() if k != "rows"}
    if isinstance(data, dict) and _is_metric_map(data.get("metrics")):
        return report_rows(data)
    if isinstance(data, list):
        rows: list[Any] = []
        for item in data:
            if isinstance(item, dict) and _is_metric_map(item.get("metrics")):
                rows.extend(report_rows(item)[0])
            else:
                rows.append(item)
        return rows, {}
    return None


def load_tidy_file(path: Path, what: str, strict: bool) -> TidyFile | None:
    """Read one tidy-rows file; with `strict` False a file of another shape is skipped (None) with a warning."""
    try:
        data = read_json(path, what)
        parsed = tidy_rows(data)
        if parsed is None:
            raise UserError(f"{what} {path} must be a list of rows, an object with a 'rows' list, or a report with a "
                            "'metrics' object")
        rows, meta = parsed
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise UserError(f"{what} {path}: rows[{i}] is not an object")
        return TidyFile(path=path, rows=rows, meta=meta)
    except UserError as exc:
        if strict:
            raise
        print(f"secvec-bench: warning: skipped {exc}", file=sys.stderr)
        return None


def discover_tidy_files(roots: Iterable[Path], folder: str) -> list[Path]:
    """`<root>/<folder>/**/*.json` for each root (deduplicated); used when no file was named explicitly.

    Subfolders count: judge-agreement reports on other label sets (e.g. `xstest-completions/`, human refusal labels)
    live beside the HarmBench ones in folders of their own."""
    seen: set[Path] = set()
    out: list[Path] = []
    for root in roots:
        d = Path(root) / folder
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*.json")):
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def load_tidy_files(
    explicit: Sequence[Path] | None, roots: Iterable[Path], folder: str, what: str, extra: Iterable[Path] = ()
) -> list[TidyFile]:
    """Explicit files (strict) when given, else every JSON file found under `<root>/<folder>/` plus the existing
    `extra` files (lenient)."""
    if explicit:
        return [t for t in (load_tidy_file(Path(p), what, strict=True) for p in explicit) if t is not None]
    found = discover_tidy_files(roots, folder)
    seen = {f.resolve() for f in found}
    found += [f for f in extra if f.is_file() and f.resolve() not in seen]
    return [t for t in (load_tidy_file(p, what, strict=False) for p in found) if t]
