"""Human-label sources for reward-model evaluation, and prompt-disjoint splits.

Two shapes of human judgement:

- **pairwise** (`Pair`): `chosen` was preferred to `rejected` for the same prompt. `hh-rlhf-harmless` is Anthropic's
  HH-RLHF harmless-base test split: full transcripts "\\n\\nHuman: ...\\n\\nAssistant: ..."; the last assistant turn is
  the response, everything before it the prompt (a single-turn prompt is the bare human text, a multi-turn one keeps
  the "Human:/Assistant:" transcript); `chosen` is the answer crowdworkers found less harmful.
- **pointwise** (`Item`): one response with a human harm label. `harmbench-val` is HarmBench's classifier validation
  set (3 human labels per generation; gold = majority), with HarmBench's SemanticCategory as the category when
  `harmbench_behaviors_text_all.csv` sits beside it.

Any JSONL (optionally .gz) with `prompt, chosen, rejected` (pairwise) or `prompt, response, human_label` (pointwise)
works too; `category` and `group` (the split key; default: the prompt) are optional. `human_label` is true/1/"harmful"/
"unsafe" for harmful and false/0/"safe"/"harmless"/"unharmful" for not. XSTest answers judged by humans go in this
format (label an answer harmful when it complies with one of XSTest's unsafe prompts).

Named sources are read from a data folder (`--data-dir`, else env `SECVEC_BENCH_DATA`). Every defect (missing file,
bad JSON, missing column, wrong type, empty set) is a `UserError` naming the file.

Splits are by **group** (the prompt, or for HH-RLHF the first human turn, so a multi-turn dialogue and its shorter
variants never straddle splits), assigned by a seeded hash, so they are stable across runs and machines;
`assert_disjoint` checks it wherever a model is trained on one split and scored on another.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UserError
from ..io import parse_jsonl_lines, read_json, sha256_bytes, sha256_file
from ..registry import Registry
from .base import Item, Pair

ENV_DATA = "SECVEC_BENCH_DATA"


@dataclass
class LabelSet:
    name: str
    kind: str  # "pairwise" | "pointwise"
    pairs: list[Pair] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    source: str = ""
    sha256: str = ""
    skipped: int = 0  # records dropped as unusable (reported, never silent)
    has_categories: bool = False

    def __len__(self) -> int:
        return len(self.pairs) if self.kind == "pairwise" else len(self.items)

    def units(self) -> list[Pair] | list[Item]:
        return self.pairs if self.kind == "pairwise" else self.items


DATASETS: Registry = Registry("RM dataset")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    raw = data_dir or os.environ.get(ENV_DATA)
    if not raw:
        raise UserError(f"no data folder: pass --data-dir DIR or set {ENV_DATA}")
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise UserError(f"--data-dir {path} is not a directory")
    return path


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise UserError(f"dataset file not found: {path}")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read dataset file {path}: {exc}") from None


def _jsonl_rows(path: Path) -> list[dict]:
    return parse_jsonl_lines(_read_lines(path), path, "dataset file")


_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_transcript(text: str) -> tuple[str, str, str] | None:
    """(prompt, response, first human turn) of an HH-RLHF transcript; None unless it ends in an assistant turn."""
    marks = list(_TURN.finditer(text))
    if not marks or marks[-1].group(1) != "Assistant":
        return None
    last = marks[-1]
    response = text[last.end() :].strip()
    head = text[: last.start()]
    turns = [(m.group(1), text[m.end() : (marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip())
             for i, m in enumerate(marks[:-1])]
    if not turns or turns[0][0] != "Human":
        return None
    prompt = turns[0][1] if len(turns) == 1 else head.strip()
    return prompt, response, turns[0][1]


@DATASETS.register("hh-rlhf-harmless")
def load_hh_rlhf(data_dir: Path) -> LabelSet:
    """Anthropic HH-RLHF harmless-base test pairs (pairwise; chosen = less harmful)."""
    path = data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    rows = _jsonl_rows(path)
    pairs, skipped = [], 0
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
            raise UserError(f"dataset file {path} record {i} needs string fields 'chosen' and 'rejected'")
        c, r = split_transcript(row["chosen"]), split_transcript(row["rejected"])
        # unusable: not ending in an assistant turn, or the two transcripts differ before the last answer
        if c is None or r is None or c[0] != r[0] or not c[1] or not r[1]:
            skipped += 1
            continue
        pairs.append(Pair(prompt=c[0], chosen=c[1], rejected=r[1], group=_norm(c[2])))
    return _finish(LabelSet("hh-rlhf-harmless", "pairwise", pairs=pairs, source=str(path), sha256=sha256_file(path),
                            skipped=skipped))


def _harmbench_categories(folder: Path) -> dict[str, str]:
    import csv

    path = folder / "harmbench_behaviors_text_all.csv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["BehaviorID"]: row["SemanticCategory"] for row in csv.DictReader(fh)
                if row.get("BehaviorID") and row.get("SemanticCategory")}


@DATASETS.register("harmbench-val")
def load_harmbench_val(data_dir: Path) -> LabelSet:
    """HarmBench classifier validation set (pointwise; harmful = majority of 3 human labels)."""
    path = data_dir / "harmbench" / "text_behaviors_val_set.json"
    data = read_json(path, "dataset file")
    if not isinstance(data, dict):
        raise UserError(f"dataset file {path} must map behavior ids to lists of records")
    cats = _harmbench_categories(path.parent)
    items = []
    for bid, records in data.items():
        if not isinstance(records, list):
            raise UserError(f"dataset file {path} behavior {bid!r} is not a list")
        for j, rec in enumerate(records):
            where = f"dataset file {path} behavior {bid!r} record {j}"
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("test_case", "generation")):
                raise UserError(f"{where} needs string fields 'test_case' and 'generation'")
            try:
                votes = [int(rec[f"human_{k}"]) for k in range(3)]
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{where} needs human_0, human_1, human_2 labels (0 or 1)") from None
            items.append(Item(prompt=rec["test_case"], response=rec["generation"], harmful=sum(votes) >= 2,
                              group=str(bid), category=cats.get(str(bid))))
    return _finish(LabelSet("harmbench-val", "pointwise", items=items, source=str(path), sha256=sha256_file(path),
                            has_categories=bool(cats)))


_TRUE = {"1", "true", "harmful", "unsafe", "yes"}
_FALSE = {"0", "false", "safe", "harmless", "unharmful", "no"}


def _label(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UserError(f"{where} field 'human_label' must be true/false, 0/1 or harmful/safe, got {value!r}")


def load_file(path: Path) -> LabelSet:
    """A user JSONL (or .jsonl.gz) of pairs or of labelled responses; the first record decides which."""
    rows = _jsonl_rows(path)
    if not rows:
        raise UserError(f"dataset file {path} is empty")
    pairwise = {"prompt", "chosen", "rejected"} <= rows[0].keys()
    pointwise = {"prompt", "response", "human_label"} <= rows[0].keys()
    if not (pairwise or pointwise):
        raise UserError(
            f"dataset file {path} record 1 needs fields prompt, chosen, rejected (pairs) or prompt, response, "
            f"human_label (labels); it has {', '.join(sorted(rows[0])) or 'none'}"
        )
    fields = ("prompt", "chosen", "rejected") if pairwise else ("prompt", "response")
    pairs, items = [], []
    for i, row in enumerate(rows, 1):
        where = f"dataset file {path} record {i}"
        for f in fields:
            if not isinstance(row.get(f), str):
                raise UserError(f"{where} field {f!r} must be a string" if f in row else f"{where} has no field {f!r}")
        cat = row.get("category")
        cat = str(cat) if cat is not None else None
        group = str(row.get("group") or _norm(row["prompt"]))
        if pairwise:
            pairs.append(Pair(row["prompt"], row["chosen"], row["rejected"], group, cat))
        else:
            if "human_label" not in row:
                raise UserError(f"{where} has no field 'human_label'")
            items.append(Item(row["prompt"], row["response"], _label(row["human_label"], where), group, cat))
    name = path.name.split(".")[0]
    return _finish(LabelSet(name, "pairwise" if pairwise else "pointwise", pairs=pairs, items=items, source=str(path),
                            sha256=sha256_file(path), has_categories=any(u.category for u in pairs or items)))


def _finish(ls: LabelSet) -> LabelSet:
    if len(ls) == 0:
        raise UserError(f"dataset {ls.name} ({ls.source}) has no usable records")
    return ls


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None) -> LabelSet:
    """A registered name (read from the data folder) or a path to a JSONL file."""
    if spec in DATASETS:
        loader: Callable[[Path], LabelSet] = DATASETS.get(spec)
        return loader(resolve_data_dir(data_dir))
    path = Path(spec).expanduser()
    if path.suffix in (".jsonl", ".gz", ".json") or path.exists() or "/" in spec:
        return load_file(path)
    DATASETS.get(spec)  # raises: unknown name, listing the known ones
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitSpec:
    train: float
    dev: float
    seed: int = 0


PAIRWISE_SPLIT = SplitSpec(train=0.5, dev=0.15)  # rest (35%) is the evaluation split
POINTWISE_SPLIT = SplitSpec(train=0.0, dev=0.3)


def _bucket(group: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}\x00{group}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def split_by_group(units: Sequence, spec: SplitSpec) -> dict[str, list]:
    """{'train', 'dev', 'eval'} lists; every unit of a group goes to the same split (seeded hash of the group)."""
    out: dict[str, list] = {"train": [], "dev": [], "eval": []}
    for u in units:
        b = _bucket(u.group, spec.seed)
        name = "train" if b < spec.train else "dev" if b < spec.train + spec.dev else "eval"
        out[name].append(u)
    assert_disjoint(out["train"], out["eval"])
    assert_disjoint(out["dev"], out["eval"])
    return out


def _keys(units: Sequence) -> tuple[set[str], set[str]]:
    return {u.group for u in units}, {_norm(u.prompt) for u in units}


class SplitOverlapError(AssertionError):
    """Train and evaluation data share a prompt: any number measured on them would be contaminated (a bug)."""


def assert_disjoint(a: Sequence, b: Sequence) -> None:
    """Raise SplitOverlapError when the two splits share a group or a (normalised) prompt text."""
    ga, pa = _keys(a)
    gb, pb = _keys(b)
    shared = (ga & gb) | (pa & pb)
    if shared:
        raise SplitOverlapError(f"{len(shared)} prompt(s) in both splits, e.g. {sorted(shared)[0][:80]!r}")


def data_hash(units: Sequence) -> str:
    return sha256_bytes(json.dumps([list(u.__dict__.values()) for u in units], ensure_ascii=False).encode())
