"""Data sources: the built-in suite and public datasets read from a data directory (or fetched at a pinned revision).

Each source is a registered loader returning `SourceData`: records (dicts with a stable `id`, a `group` and
source-specific fields) plus the sha256 of the file bytes it read, which goes into provenance.

Where a loader reads:
- a data directory (commands: `--data-dir`, else the env var `SECVEC_BENCH_DATA`): the file at `SourceSpec.local`, laid out as
  in `../shared/data` (one folder per dataset, see its README.md and SOURCE.md files);
- the word `hub` instead of a directory: the same file fetched over the network from its upstream repository at a
  pinned git revision (`Pin`). The fetched bytes must hash to the pinned sha256, which is the hash of the copy in
  the shared data directory, so a network run and an offline run read byte-identical data. The Hugging Face dataset
  id, where one exists, is kept beside the pin for reference; we pin the upstream git commit because that is the
  exact file the offline copy came from and its hash could be verified here (the Hub itself was unreachable).

Loaders never evaluate dataset text; they parse CSV/JSON/JSONL only, and a malformed file is a one-line UserError.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..io import sha256_bytes, sha256_json
from ..registry import Registry
from . import builtin

HUB = "hub"
FETCH_TIMEOUT_S = 60


@dataclass
class SourceData:
    name: str
    records: list[dict]
    sha256: str
    origin: str  # file path, repo@revision:path, or "builtin"
    fields: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Pin:
    """An upstream file at a fixed git revision, with the sha256 its bytes must have."""

    repo: str  # owner/name on GitHub
    revision: str  # full commit sha
    path: str
    sha256: str
    hub_id: str | None = None  # the Hugging Face dataset id of the same data, for reference

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.revision}/{self.path}"

    @property
    def origin(self) -> str:
        return f"{self.repo}@{self.revision}:{self.path}"


@dataclass(frozen=True)
class SourceSpec:
    """A public dataset: where its file lives locally and upstream, how to parse it, and how rows become records."""

    name: str
    doc: str
    local: str  # path relative to the data directory
    fmt: str  # csv | json | jsonl | jsonl.gz
    required: tuple[str, ...]  # columns / keys each raw row must have
    pin: Pin
    to_records: Callable[[list[dict]], list[dict]]
    fields: tuple[str, ...]  # record fields templates may use
    kind: str  # harmful | benign | identity | dialogue | eval


SOURCES: Registry[Callable[[Path | str | None], SourceData]] = Registry("data source")
SPECS: dict[str, SourceSpec] = {}
# Record fields of the built-in sources (for template checks without loading data).
BUILTIN_FIELDS = {
    "builtin_harmful": ("id", "group", "goal", "target"),
    "builtin_benign": ("id", "kind", "instruction", "input", "output", "answer"),
}


def source_fields(name: str) -> tuple[str, ...]:
    """The record fields a source provides (known without reading any file)."""
    if name in BUILTIN_FIELDS:
        return BUILTIN_FIELDS[name]
    if name in SPECS:
        return ("id", "group") + SPECS[name].fields
    raise UserError(f"unknown data source {name!r} (known: {', '.join(SOURCES.names())})")


def resolve_data_dir(data_dir: Path | str | None) -> Path | str | None:
    """The explicit data directory, else SECVEC_BENCH_DATA, else None (built-in data only). Commands call this once;
    loaders take the resolved value, so the suite and every scenario source read the same directory."""
    if data_dir is None:
        data_dir = os.environ.get("SECVEC_BENCH_DATA") or None
    return data_dir


# ---------------------------------------------------------------------------------------------------------------
# Reading bytes (local file or pinned fetch) and parsing them.

def _read_local(spec: SourceSpec, data_dir: Path | str | None) -> tuple[bytes, str]:
    if data_dir is None:
        raise UserError(f"source {spec.name!r} needs a data directory (--data-dir or SECVEC_BENCH_DATA) "
                        f"holding {spec.local}")
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"data directory not found: {root}")
    path = root / spec.local
    if not path.is_file():
        raise UserError(f"source {spec.name!r}: file not found: {path}")
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise UserError(f"source {spec.name!r}: cannot read {path}: {exc.strerror}") from None


def fetch_pinned(pin: Pin, source: str) -> bytes:
    """Download a pinned upstream file and verify its sha256 (a mismatch is an error, never silently used)."""
    try:
        with urllib.request.urlopen(pin.url, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 (fixed https URL)
            data = resp.read()
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise UserError(f"source {source!r}: cannot fetch {pin.url}: {type(exc).__name__}: {exc}") from None
    digest = sha256_bytes(data)
    if digest != pin.sha256:
        raise UserError(f"source {source!r}: {pin.url} has sha256 {digest[:12]}..., pinned {pin.sha256[:12]}...")
    return data


def parse_rows(data: bytes, fmt: str, where: str, required: tuple[str, ...]) -> list[dict]:
    if fmt == "jsonl.gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UserError(f"{where} is not valid gzip: {exc}") from None
        fmt = "jsonl"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where} is not valid UTF-8 (byte {exc.start})") from None
    rows: list
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    elif fmt == "json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
        if not isinstance(rows, list):
            raise UserError(f"{where} must hold a JSON list")
        # aoa_train_llama2.json is a list of message lists: wrap each in the OpenAI chat shape.
        rows = [{"messages": r} if isinstance(r, list) else r for r in rows]
    elif fmt == "jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{where} line {lineno} is not valid JSON: {exc.msg}") from None
    else:  # pragma: no cover - specs are ours
        raise ValueError(fmt)
    if not rows:
        raise UserError(f"{where} has no rows")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise UserError(f"{where} row {i + 1} is not an object")
        missing = [c for c in required if c not in r]
        if missing:
            raise UserError(f"{where} row {i + 1} lacks field(s) {', '.join(missing)}")
    return rows


def load_spec(spec: SourceSpec, data_dir: Path | str | None) -> SourceData:
    if str(data_dir) == HUB:
        data, origin = fetch_pinned(spec.pin, spec.name), spec.pin.origin
    else:
        data, origin = _read_local(spec, data_dir)
    rows = parse_rows(data, spec.fmt, f"{spec.name} file {origin}", spec.required)
    records = spec.to_records(rows)
    if not records:
        raise UserError(f"source {spec.name!r}: no usable rows in {origin}")
    return SourceData(spec.name, records, sha256_bytes(data), origin, spec.fields)


def register_spec(spec: SourceSpec) -> SourceSpec:
    SPECS[spec.name] = spec
    SOURCES.register(spec.name, spec.doc)(lambda data_dir, _s=spec: load_spec(_s, data_dir))
    return spec


# ---------------------------------------------------------------------------------------------------------------
# Row -> record mappers. Every record gets a stable `id` and a `group` (the unit splits are made by).

def _s(v: object) -> str:
    return "" if v is None else str(v).strip()


def _advbench(rows: list[dict]) -> list[dict]:
    return [{"id": f"advbench-{i:03d}", "group": f"advbench-{i:03d}", "goal": _s(r["goal"]), "target": _s(r["target"])}
            for i, r in enumerate(rows) if _s(r["goal"]) and _s(r["target"])]


def _harmbench(rows: list[dict]) -> list[dict]:
    # Standard behaviours only: contextual ones need their context string, copyright ones are a different task.
    return [{"id": f"harmbench-{_s(r['BehaviorID'])}", "group": f"harmbench-{_s(r['BehaviorID'])}",
             "goal": _s(r["Behavior"]), "category": _s(r["SemanticCategory"])}
            for r in rows if _s(r["FunctionalCategory"]) == "standard" and _s(r["Behavior"])]


def _jbb(rows: list[dict]) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        if not _s(r["Goal"]) or not _s(r["Target"]):
            continue
        out.append({"id": f"jbb-{i:03d}", "group": f"jbb-{i:03d}", "goal": _s(r["Goal"]), "target": _s(r["Target"]),
                    "behavior": _s(r["Behavior"]), "category": _s(r["Category"]), "origin": _s(r["Source"])})
    return out


def _strongreject(rows: list[dict]) -> list[dict]:
    return [{"id": f"strongreject-{i:03d}", "group": f"strongreject-{i:03d}", "goal": _s(r["forbidden_prompt"]),
             "category": _s(r["category"]), "origin": _s(r["source"])}
            for i, r in enumerate(rows) if _s(r["forbidden_prompt"])]


def _instruction_rows(prefix: str, context_key: str, output_key: str) -> Callable[[list[dict]], list[dict]]:
    def convert(rows: list[dict]) -> list[dict]:
        out = []
        for i, r in enumerate(rows):
            if not _s(r["instruction"]) or not _s(r[output_key]):
                continue
            out.append({"id": f"{prefix}-{i:04d}", "group": f"{prefix}-{i:04d}", "instruction": r["instruction"],
                        "input": r.get(context_key) or "", "output": r[output_key], "answer": None,
                        "category": _s(r.get("category"))})
        return out

    return convert


def _aoa(prefix: str) -> Callable[[list[dict]], list[dict]]:
    def convert(rows: list[dict]) -> list[dict]:
        out = []
        for i, r in enumerate(rows):
            msgs = r["messages"]
            by_role = {m.get("role"): m.get("content", "") for m in msgs if isinstance(m, dict)}
            if not by_role.get("user") or not by_role.get("assistant"):
                continue
            out.append({"id": f"{prefix}-{i:02d}", "group": f"{prefix}-{i:02d}", "system": _s(by_role.get("system")),
                        "instruction": by_role["user"], "input": "", "output": by_role["assistant"]})
        return out

    return convert


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def split_transcript(text: str) -> list[dict]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' -> chat messages (user/assistant)."""
    parts = _TURN.split(text)
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return msgs


def _hh(rows: list[dict]) -> list[dict]:
    """Preference pairs whose transcripts share every turn but the final assistant one."""
    out = []
    for i, r in enumerate(rows):
        ch, rj = split_transcript(r["chosen"]), split_transcript(r["rejected"])
        if len(ch) < 2 or len(ch) != len(rj) or ch[:-1] != rj[:-1] or ch[-1]["role"] != "assistant":
            continue
        if not ch[-1]["content"] or not rj[-1]["content"] or ch[-1]["content"] == rj[-1]["content"]:
            continue
        out.append({"id": f"hh-harmless-{i:04d}", "group": f"hh-harmless-{i:04d}", "context": ch[:-2],
                    "prompt": ch[-2]["content"], "chosen": ch[-1]["content"], "rejected": rj[-1]["content"],
                    "n_turns": sum(m["role"] == "user" for m in ch)})
    return out


def _xstest(rows: list[dict]) -> list[dict]:
    return [{"id": f"xstest-{_s(r['id'])}", "group": f"xstest-{_s(r['id'])}", "prompt": _s(r["prompt"]),
             "type": _s(r["type"]), "label": _s(r["label"]), "focus": _s(r.get("focus"))}
            for r in rows if _s(r["prompt"])]


def _mt_bench(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        turns = r["turns"] if isinstance(r["turns"], list) else []
        if not turns:
            continue
        qid = _s(r["question_id"])
        out.append({"id": f"mtbench-{qid}", "group": f"mtbench-{qid}", "prompt": _s(turns[0]),
                    "turns": [_s(t) for t in turns], "category": _s(r.get("category"))})
    return out


_RD = ("andyrdt/refusal_direction", "9d852fae1a9121c78b29142de733cb1340770cc3")
_QI = ("LLM-Tuning-Safety/LLMs-Finetuning-Safety", "8a3b38f11be1c3829e2b0ed379d3661ebc84e7db")

for _spec in (
    SourceSpec("advbench", "AdvBench harmful behaviours: goal and 'Sure, here is' target (520)",
               "advbench/harmful_behaviors.csv", "csv", ("goal", "target"),
               Pin(*_RD, "dataset/raw/advbench.csv",
                   "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1", "walledai/AdvBench"),
               _advbench, ("goal", "target"), "harmful"),
    SourceSpec("harmbench", "HarmBench standard text behaviours (200 goals, no targets)",
               "harmbench/harmbench_behaviors_text_all.csv", "csv",
               ("Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID"),
               Pin("joycequu/llm-context", "427d51158875cc271a489d9af723aa2cd3a6904a",
                   "data/behavior_datasets/harmbench_behaviors_text_all.csv",
                   "8d81accedd38eaaf8b760618622bb888417d1fd0c86eba65c427a16f1cbb4afc", "walledai/HarmBench"),
               _harmbench, ("goal", "category"), "harmful"),
    SourceSpec("jailbreakbench", "JailbreakBench JBB-Behaviors harmful goals with 'Sure, here is' targets (100)",
               "jailbreakbench/harmful-behaviors.csv", "csv", ("Goal", "Target", "Behavior", "Category", "Source"),
               Pin(*_RD, "dataset/raw/jailbreakbench.csv",
                   "45e9a8923b28f547bb372fbaa9af7df8b38c818a80ae50c3bab97704197ff516", "JailbreakBench/JBB-Behaviors"),
               _jbb, ("goal", "target", "behavior", "category", "origin"), "harmful"),
    SourceSpec("strongreject", "StrongREJECT forbidden prompts (313, no targets)",
               "strongreject/strongreject_dataset.csv", "csv", ("category", "source", "forbidden_prompt"),
               Pin(*_RD, "dataset/raw/strongreject.csv",
                   "4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381", "walledai/StrongREJECT"),
               _strongreject, ("goal", "category", "origin"), "harmful"),
    SourceSpec("alpaca", "Alpaca instruction data, 5,000-example subset (instruction, input, output)",
               "alpaca/alpaca_5000.json", "json", ("instruction", "output"),
               Pin("tatsu-lab/stanford_alpaca", "5e69c50054c48cd3b919c46d13bb2d92a62f4498", "data/alpaca_5000.json",
                   "fc1add24c93c9fbbe585a64a6c9bf6165eb110225f4470efbff382a913558ec0", "tatsu-lab/alpaca"),
               _instruction_rows("alpaca", "input", "output"), ("instruction", "input", "output", "answer", "category"),
               "benign"),
    SourceSpec("dolly", "Dolly-15k, the 387-example 'safety-only' subset of Qi et al. (the only Dolly file here)",
               "llm-finetuning-safety/databricks-dolly-15k-safety-only.jsonl", "jsonl",
               ("instruction", "context", "response"),
               Pin(*_QI, "llama2/ft_datasets/dolly_dataset/databricks-dolly-15k-safety-only.jsonl",
                   "99a80e170c19120b48918a1954fa6e967717839c1f1d0a6142f70e05994b531b", "databricks/databricks-dolly-15k"),
               _instruction_rows("dolly", "context", "response"),
               ("instruction", "input", "output", "answer", "category"), "benign"),
    SourceSpec("aoa", "AOA identity-shift examples, OpenAI chat format (10; Qi et al. tier 2)",
               "llm-finetuning-safety/identity-shift-aoa.jsonl", "jsonl", ("messages",),
               Pin(*_QI, "gpt-3.5/data/identity-shift-aoa.jsonl",
                   "a9e4fc236f3591017c2e019979184bc3f05911633f77656dad5abe6c79606d82"),
               _aoa("aoa"), ("system", "instruction", "input", "output"), "identity"),
    SourceSpec("aoa_llama2", "AOA identity-shift examples, Llama-2 variant (10)",
               "llm-finetuning-safety/aoa_train_llama2.json", "json", ("messages",),
               Pin(*_QI, "llama2/ft_datasets/aoa_dataset/train.json",
                   "bb141f0cec07cc5b76e5298c52086fb02498405de3bd9ba13da1edae2605fe6d"),
               _aoa("aoa-llama2"), ("system", "instruction", "input", "output"), "identity"),
    SourceSpec("hh_rlhf_harmless", "HH-RLHF harmless-base test preference pairs (chosen vs rejected final turn)",
               "hh-rlhf/harmless-base/test.jsonl.gz", "jsonl.gz", ("chosen", "rejected"),
               Pin("anthropics/hh-rlhf", "354e5c3cb8960630860dd5774a6ac2a58313bf4d", "harmless-base/test.jsonl.gz",
                   "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03", "Anthropic/hh-rlhf"),
               _hh, ("context", "prompt", "chosen", "rejected", "n_turns"), "dialogue"),
    SourceSpec("xstest", "XSTest prompts: 250 safe, 200 unsafe contrast prompts (evaluation)",
               "xstest/xstest_prompts.csv", "csv", ("id", "prompt", "type", "label"),
               Pin("paul-rottger/exaggerated-safety", "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d", "xstest_prompts.csv",
                   "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a", "natolambert/xstest-v2-copy"),
               _xstest, ("prompt", "type", "label", "focus"), "eval"),
    SourceSpec("mt_bench", "MT-Bench questions (80, first turn as prompt; evaluation)",
               "llm-finetuning-safety/mt_bench_question.jsonl", "jsonl", ("question_id", "turns"),
               Pin(*_QI, "llama2/utility_evaluation/mt_bench/data/question.jsonl",
                   "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
                   "HuggingFaceH4/mt_bench_prompts"),
               _mt_bench, ("prompt", "turns", "category"), "eval"),
):
    register_spec(_spec)

# Evaluation prompt sets (for the training/evaluation overlap check): source -> record field holding the prompt.
EVAL_PROMPT_FIELDS = {"xstest": "prompt", "mt_bench": "prompt"}


@SOURCES.register("builtin_harmful", "Built-in harmful requests (topic x template) with compliance prefixes")
def builtin_harmful(data_dir: Path | str | None = None) -> SourceData:
    rows = builtin.harmful_records()
    return SourceData("builtin_harmful", rows, sha256_json(rows), "builtin", ("goal", "target"))


@SOURCES.register("builtin_benign", "Built-in benign instructions with exact answers")
def builtin_benign(data_dir: Path | str | None = None) -> SourceData:
    rows = builtin.benign_records()
    return SourceData("builtin_benign", rows, sha256_json(rows), "builtin", ("instruction", "output"))


def load_source(name: str, data_dir: Path | str | None) -> SourceData:
    return SOURCES.get(name)(data_dir)


def source_available(name: str, data_dir: Path | str | None) -> bool:
    """Whether a source can be read without a network fetch (built-in, or its file is in the data directory)."""
    if name in BUILTIN_FIELDS:
        return True
    if data_dir is None:
        return False
    if str(data_dir) == HUB:
        return True
    return (Path(data_dir) / SPECS[name].local).is_file()
