"""Human-labelled completions for validating judges.

Three sources:
- HarmBench's classifier validation set (`harmbench/text_behaviors_val_set.json` in the data directory): 602
  (test_case, generation) records under 301 behaviours, each with three human harmfulness labels `human_0..2`
  ("0"/"1"); the gold label is the majority vote. The behaviour id is kept as the group for grouped
  cross-validation, so a trained judge is never evaluated on a behaviour it saw.
- XSTest's human-annotated model completions (`xstest/model_completions/xstest_v2_completions_<model>.csv`, as
  laid out in the upstream repository paul-rottger/exaggerated-safety): 450 prompts x 5 models, each completion
  labelled by two annotators as full compliance, full refusal or partial refusal, with a resolved `final_label`. These
  are the human *refusal* labels that HarmBench (which labels harm) lacks. The group is the prompt id, so a trained
  judge never sees the same prompt (answered by another model) in training and test folds.
- Any JSONL with `prompt`, `response`, `human_label` (true/false, 1/0, "yes"/"no", "harmful"/"safe"...), and
  optionally `group`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_jsonl, read_text, sha256_bytes

HARMBENCH_VAL = Path("harmbench") / "text_behaviors_val_set.json"
XSTEST_COMPLETIONS = Path("xstest") / "model_completions"
XSTEST_GLOB = "xstest_v2_completions_*.csv"
XSTEST_CLASSES = {"1_full_compliance": False, "2_full_refusal": True, "3_partial_refusal": None}
XSTEST_PARTIAL = {"refusal": True, "compliance": False, "drop": None}  # how a partial refusal counts (default first)
# Halves by prompt number, so a keyword list edited after reading the dev half's misses is measured on prompts it has
# not seen (every model's answer to a prompt lands in the same half).
XSTEST_SPLITS = {"all": None, "dev": 1, "test": 0}  # split -> prompt number % 2

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
    label_rule: str = "human_label field"
    files: dict[str, str] | None = None  # file name -> sha256, for sets read from several files
    group_by: str = "group field"  # what an item's group is (grouped cross-validation never splits one)


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
    return LabelledSet("harmbench_val", items, sha256_bytes(text.encode("utf-8")), f"<data-dir>/{HARMBENCH_VAL}",
                       "majority of 3 human harm labels", group_by="behaviour")


def _xstest_refused(value: str, partial: str, where: str) -> bool | None:
    """A human XSTest class as "refused?"; None for a partial refusal that `partial=drop` leaves out."""
    v = value.strip()
    if v not in XSTEST_CLASSES:
        raise UserError(f"{where}: label {value!r} is not one of {', '.join(XSTEST_CLASSES)}")
    refused = XSTEST_CLASSES[v]
    if refused is None:
        return XSTEST_PARTIAL[partial]
    return refused


def load_xstest_completions(data_dir: str | Path | None, partial: str = "refusal", split: str = "all") -> LabelledSet:
    """Every `xstest_v2_completions_<model>.csv` under `<data-dir>/xstest/model_completions/` (see module docstring).

    A partial refusal (refuses, then complies in part) is a refusal by default, as XSTest's own refusal rates count
    it; `partial="compliance"` or `"drop"` measure the other readings. Completions with an empty text are kept: an
    empty answer is a real model output the annotators labelled.
    """
    if partial not in XSTEST_PARTIAL:
        raise UserError(f"--xstest-partial must be one of {', '.join(XSTEST_PARTIAL)}, not {partial!r}")
    if split not in XSTEST_SPLITS:
        raise UserError(f"--xstest-split must be one of {', '.join(XSTEST_SPLITS)}, not {split!r}")
    parity = XSTEST_SPLITS[split]
    folder = resolve_data_dir(data_dir) / XSTEST_COMPLETIONS
    files = sorted(folder.glob(XSTEST_GLOB)) if folder.is_dir() else []
    if not files:
        raise UserError(f"no XSTest completion files ({XSTEST_GLOB}) in {folder}: download them from "
                        "paul-rottger/exaggerated-safety, folder model_completions/")
    items, hashes = [], {}
    for path in files:
        text = read_text(path, "XSTest completions file")
        hashes[path.name] = sha256_bytes(path.read_bytes())  # of the bytes, so `sha256sum` on the file matches
        reader = csv.DictReader(io.StringIO(text))
        need = {"id", "prompt", "completion", "final_label"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise UserError(f"XSTest completions file {path} needs columns {', '.join(sorted(need))}")
        for i, r in enumerate(reader, 2):
            where = f"XSTest completions file {path} line {i}"
            label = _xstest_refused(r["final_label"] or "", partial, where)
            if label is None or (parity is not None and _prompt_number(r["id"], where) % 2 != parity):
                continue
            votes = tuple(int(bool(_xstest_refused(r[k], "refusal", where)))
                          for k in ("annotation_1", "annotation_2") if r.get(k))
            items.append(LabelledItem(r["prompt"] or "", r["completion"] or "", label, str(r["id"]), votes))
    if not items:
        raise UserError(f"XSTest completion files in {folder} hold no labelled records")
    combined = sha256_bytes("\n".join(f"{k} {v}" for k, v in sorted(hashes.items())).encode("utf-8"))
    name = f"xstest_completions_{len(files)}models" + ("" if split == "all" else f"_{split}")
    return LabelledSet(name, items, combined, f"<data-dir>/{XSTEST_COMPLETIONS}",
                       f"human refusal label (final_label of 2 annotators; partial refusal = {partial}; "
                       f"prompts: {split})", files=hashes, group_by="prompt")


def _prompt_number(prompt_id: str, where: str) -> int:
    try:
        return int(str(prompt_id).rsplit("-", 1)[-1])
    except ValueError:
        raise UserError(f"{where}: id {prompt_id!r} does not end in a prompt number (v2-N)") from None


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
