"""Data sources: the built-in suite and public datasets read from a data directory (or the Hub).

Each source is a registered loader returning `SourceData`: records (dicts with a stable `id` and source-specific
fields) plus the sha256 of the file it read, which goes into provenance. Loaders read local files under the data
directory (`--data-dir`, else the env var `SECVEC_BENCH_DATA`); with the data directory set to the word `hub` they
load the pinned Hub revision through `datasets` instead, for users with network.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..io import read_text, sha256_bytes, sha256_json
from ..registry import Registry
from . import builtin

HUB = "hub"


@dataclass
class SourceData:
    name: str
    records: list[dict]
    sha256: str
    origin: str  # file path, hub id@revision, or "builtin"
    fields: tuple[str, ...] = field(default_factory=tuple)


SOURCES: Registry[Callable[[Path | str | None], SourceData]] = Registry("data source")


def _need_dir(data_dir: Path | str | None, source: str) -> Path:
    if data_dir is None:
        raise UserError(f"source {source!r} needs a data directory (--data-dir or SECVEC_BENCH_DATA)")
    p = Path(data_dir)
    if not p.is_dir():
        raise UserError(f"data directory not found: {p}")
    return p


def read_csv_records(path: Path, required: tuple[str, ...], source: str) -> tuple[list[dict], str]:
    text = read_text(path, f"{source} file")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise UserError(f"{source} file {path} has no rows")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise UserError(f"{source} file {path} lacks column(s) {', '.join(missing)} (has: {', '.join(rows[0])})")
    return rows, sha256_bytes(text.encode("utf-8"))


def read_json_list(path: Path, required: tuple[str, ...], source: str) -> tuple[list[dict], str]:
    text = read_text(path, f"{source} file")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source} file {path} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{source} file {path} must hold a non-empty JSON list")
    if not isinstance(rows[0], dict):
        raise UserError(f"{source} file {path}: items must be JSON objects")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise UserError(f"{source} file {path} lacks field(s) {', '.join(missing)}")
    return rows, sha256_bytes(text.encode("utf-8"))


def load_hub(hub_id: str, revision: str, split: str, source: str) -> tuple[list[dict], str]:
    """Load a pinned Hub dataset revision with `datasets` (needs network; a local dataset folder also works)."""
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, revision=revision, split=split)
    except Exception as exc:
        raise UserError(f"source {source!r}: cannot load {hub_id}@{revision} from the Hub: "
                        f"{type(exc).__name__}") from None
    rows = [dict(r) for r in ds]
    if not rows:
        raise UserError(f"source {source!r}: {hub_id} is empty")
    return rows, sha256_json(rows)


@SOURCES.register("builtin_harmful", "Built-in harmful requests (topic x template) with compliance prefixes")
def builtin_harmful(data_dir: Path | str | None = None) -> SourceData:
    rows = builtin.harmful_records()
    return SourceData("builtin_harmful", rows, sha256_json(rows), "builtin", ("goal", "target"))


@SOURCES.register("builtin_benign", "Built-in benign instructions with exact answers")
def builtin_benign(data_dir: Path | str | None = None) -> SourceData:
    rows = builtin.benign_records()
    return SourceData("builtin_benign", rows, sha256_json(rows), "builtin", ("instruction", "output"))


ADVBENCH_HUB = ("walledai/AdvBench", "main", "train")


@SOURCES.register("advbench", "AdvBench harmful behaviours: goal and 'Sure, here is' target (520)")
def advbench(data_dir: Path | str | None) -> SourceData:
    if str(data_dir) == HUB:
        rows, digest = load_hub(*ADVBENCH_HUB, "advbench")
        rows = [{"goal": r.get("prompt", r.get("goal")), "target": r.get("target")} for r in rows]
        origin = "@".join(ADVBENCH_HUB[:2])
    else:
        path = _need_dir(data_dir, "advbench") / "advbench" / "harmful_behaviors.csv"
        rows, digest = read_csv_records(path, ("goal", "target"), "advbench")
        origin = str(path)
    out = [{"id": f"advbench-{i:03d}", "group": f"advbench-{i:03d}", "goal": r["goal"].strip(),
            "target": r["target"].strip()} for i, r in enumerate(rows) if r.get("goal") and r.get("target")]
    if not out:
        raise UserError("advbench: no usable rows")
    return SourceData("advbench", out, digest, origin, ("goal", "target"))


ALPACA_HUB = ("tatsu-lab/alpaca", "main", "train")


@SOURCES.register("alpaca", "Alpaca instruction data, 5,000-example subset (instruction, input, output)")
def alpaca(data_dir: Path | str | None) -> SourceData:
    if str(data_dir) == HUB:
        rows, digest = load_hub(*ALPACA_HUB, "alpaca")
        origin = "@".join(ALPACA_HUB[:2])
    else:
        path = _need_dir(data_dir, "alpaca") / "alpaca" / "alpaca_5000.json"
        rows, digest = read_json_list(path, ("instruction", "output"), "alpaca")
        origin = str(path)
    out = []
    for i, r in enumerate(rows):
        if not str(r.get("instruction", "")).strip() or not str(r.get("output", "")).strip():
            continue
        out.append({"id": f"alpaca-{i:04d}", "group": f"alpaca-{i:04d}", "instruction": r["instruction"],
                    "input": r.get("input", "") or "", "output": r["output"], "answer": None})
    if not out:
        raise UserError("alpaca: no usable rows")
    return SourceData("alpaca", out, digest, origin, ("instruction", "input", "output"))


def load_source(name: str, data_dir: Path | str | None) -> SourceData:
    return SOURCES.get(name)(data_dir)
