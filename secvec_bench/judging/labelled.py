"""Human-labelled completions for validating judges.

Two sources:
- HarmBench's classifier validation set (`harmbench/text_behaviors_val_set.json` in the data directory): 602
  (test_case, generation) records under 301 behaviours, each with three human harmfulness labels `human_0..2`
  ("0"/"1"); the gold label is the majority vote. The behaviour id is kept as the group for grouped
  cross-validation, so a trained judge is never evaluated on a behaviour it saw.
- Any JSONL with `prompt`, `response`, `human_label` (true/false, 1/0, "yes"/"no", "harmful"/"safe"...), and
  optionally `group`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_jsonl, read_text, sha256_bytes

HARMBENCH_VAL = Path("harmbench") / "text_behaviors_val_set.json"

_TRUE = {"1", "true", "yes", "harmful", "unsafe", "refused", "refusal", "y"}
_FALSE = {"0", "false", "no", "safe", "not harmful", "harmless", "complied", "compliance", "n"}


@dataclass(frozen=True)
class LabelledItem:
    prompt: str
    response: str
    label: bool
    group: str
    votes: tuple[int, ...] = ()


@dataclass(frozen=True)
class LabelledSet:
    name: str
    items: list[LabelledItem]
    sha256: str
    origin: str


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    d = data_dir or os.environ.get("SECVEC_BENCH_DATA")
    if not d:
        raise UserError("HarmBench labels need a data directory: --data-dir or env SECVEC_BENCH_DATA")
    p = Path(d)
    if not p.is_dir():
        raise UserError(f"data directory not found: {p}")
    return p


def load_harmbench_val(data_dir: str | Path | None) -> LabelledSet:
    path = resolve_data_dir(data_dir) / HARMBENCH_VAL
    text = read_text(path, "HarmBench validation file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"HarmBench validation file {path} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"HarmBench validation file {path} must map behaviour ids to lists of records")
    items = []
    for behaviour in sorted(data):
        recs = data[behaviour]
        if not isinstance(recs, list):
            raise UserError(f"HarmBench validation file {path}: behaviour {behaviour!r} is not a list")
        for j, r in enumerate(recs):
            try:
                votes = tuple(int(str(r[f"human_{k}"]).strip()) for k in range(3))
                prompt, response = str(r["test_case"]), str(r["generation"])
            except (KeyError, ValueError, TypeError):
                raise UserError(
                    f"HarmBench validation file {path}: {behaviour!r} record {j} needs test_case, generation, "
                    "human_0..2 in {0,1}"
                ) from None
            if any(v not in (0, 1) for v in votes):
                raise UserError(f"HarmBench validation file {path}: {behaviour!r} record {j} has labels {votes}")
            items.append(LabelledItem(prompt, response, sum(votes) >= 2, str(behaviour), votes))
    if not items:
        raise UserError(f"HarmBench validation file {path} holds no records")
    # origin relative to the data directory: reports stay comparable across machines (the sha256 pins the content)
    return LabelledSet("harmbench_val", items, sha256_bytes(text.encode("utf-8")), f"<data-dir>/{HARMBENCH_VAL}")


def parse_label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UserError(f"{where}: human_label {value!r} is not a yes/no label (true/false, 1/0, harmful/safe)")


def load_labels_jsonl(path: str | Path) -> LabelledSet:
    path = Path(path)
    rows = read_jsonl(path, "labels file")
    if not rows:
        raise UserError(f"labels file {path} has no records")
    items = []
    for i, r in enumerate(rows, 1):
        for f in ("prompt", "response", "human_label"):
            if f not in r:
                raise UserError(f"labels file {path} record {i} has no field {f!r}")
        if not isinstance(r["prompt"], str) or not isinstance(r["response"], str):
            raise UserError(f"labels file {path} record {i}: prompt and response must be strings")
        label = parse_label(r["human_label"], f"labels file {path} record {i}")
        items.append(LabelledItem(r["prompt"], r["response"], label, str(r.get("group", i))))
    text = read_text(path, "labels file")
    return LabelledSet(path.stem, items, sha256_bytes(text.encode("utf-8")), str(path))
