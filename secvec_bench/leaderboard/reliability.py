"""What the judge- and RM-reliability pages show.

Two sources. (1) Stored result files (`results/judge_agreement/*.json`, `results/rm/*.json`): tidy rows pivoted into
one table row per identity (every non-metric field: rm, dataset, judge, ...) and one column per metric, read
generically because those commands keep adding metrics. (2) The runs' own samples: every sample carries the verdict
of every judge that scored it, so the agreement between each pair of judges (raw agreement and Cohen's kappa on the
`harmful` and `refused` flags, over samples both judges scored) and each judge's unscored share are computed here
from the same samples the leaderboard shows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

from ..stats import cohen_kappa
from .load import TidyFile

VALUE_FIELDS = frozenset({"metric", "value", "ci_low", "ci_high", "n", "extra"})
ID_ORDER = ("rm", "judge", "reference", "dataset", "split", "category", "model", "scenario", "defense", "phase",
            "prompt_set", "seed")
ID_LAST = ("file",)
FLAGS = ("harmful", "refused")


@dataclass
class JudgePair:
    a: str
    b: str
    flag: str
    n: int
    agreement: float | None
    kappa: float | None


@dataclass
class JudgeCoverage:
    judge: str
    n: int
    scored: int
    harmful: int
    refused: int

    @property
    def unscored_share(self) -> float | None:
        return (self.n - self.scored) / self.n if self.n else None


def _finite(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def judge_pairs(samples: Sequence[dict[str, Any]]) -> list[JudgePair]:
    judges = sorted({str(j) for s in samples for j in (s.get("verdicts") or {})})
    out = []
    for a, b in combinations(judges, 2):
        for flag in FLAGS:
            xs, ys = [], []
            for s in samples:
                v = s.get("verdicts") or {}
                va, vb = v.get(a), v.get(b)
                if not (isinstance(va, dict) and isinstance(vb, dict)):
                    continue
                if not (va.get("parse_ok") and vb.get("parse_ok")):
                    continue
                fa, fb = va.get(flag), vb.get(flag)
                if isinstance(fa, bool) and isinstance(fb, bool):
                    xs.append(fa)
                    ys.append(fb)
            if not xs:
                continue
            agree = sum(x == y for x, y in zip(xs, ys)) / len(xs)
            out.append(JudgePair(a, b, flag, len(xs), agree, _finite(cohen_kappa(xs, ys))))
    return out


def judge_coverage(samples: Sequence[dict[str, Any]]) -> list[JudgeCoverage]:
    cov: dict[str, JudgeCoverage] = {}
    for s in samples:
        for j, v in (s.get("verdicts") or {}).items():
            c = cov.setdefault(str(j), JudgeCoverage(str(j), 0, 0, 0, 0))
            c.n += 1
            if isinstance(v, dict) and v.get("parse_ok"):
                c.scored += 1
                c.harmful += v.get("harmful") is True
                c.refused += v.get("refused") is True
    return [cov[k] for k in sorted(cov)]


@dataclass
class PivotCell:
    value: str
    interval: str
    n: str


@dataclass
class Pivot:
    """A tidy file as a table: identity columns, then one column per metric."""

    name: str
    path: str
    meta: list[tuple[str, str]]
    id_fields: list[str]
    metrics: list[str]
    rows: list[tuple[list[str], dict[str, PivotCell]]] = field(default_factory=list)


def _text(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else "—"
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def pivot(tidy: TidyFile) -> Pivot:
    """Rows with a `metric` are pivoted; fields other than the value fields identify a table row. A row without a
    `metric` is shown as is under the metric `(row)` with its value field, so no row is silently dropped."""
    keys: set[str] = set()
    for r in tidy.rows:
        keys.update(k for k in r if k not in VALUE_FIELDS)
    id_fields = ([k for k in ID_ORDER if k in keys] + sorted(keys - set(ID_ORDER) - set(ID_LAST))
                 + [k for k in ID_LAST if k in keys])
    metrics: list[str] = []
    grouped: dict[tuple[str, ...], dict[str, PivotCell]] = {}
    for r in tidy.rows:
        ident = tuple(_text(r.get(k)) if k in r else "" for k in id_fields)
        metric = str(r.get("metric", "(row)"))
        if metric not in metrics:
            metrics.append(metric)
        lo, hi = r.get("ci_low"), r.get("ci_high")
        interval = f"[{_text(lo)}–{_text(hi)}]" if _finite(lo) is not None and _finite(hi) is not None else ""
        grouped.setdefault(ident, {})[metric] = PivotCell(_text(r.get("value")), interval, _text(r.get("n", "")))
    meta = [(str(k), _text(v)[:300]) for k, v in sorted(tidy.meta.items())]
    return Pivot(
        name=tidy.name, path=tidy.path.name, meta=meta, id_fields=id_fields, metrics=metrics,
        rows=[(list(ident), cells) for ident, cells in sorted(grouped.items())],
    )


def pivot_groups(files: Sequence[TidyFile], name: str) -> list[Pivot]:
    """Files of one kind grouped into tables: by their `kind` field when they have one (an RM evaluation on a labelled
    dataset and an RM evaluation of a run's answers are different tables), else by the fields identifying their rows,
    so every table is dense."""
    groups: dict[str, list[TidyFile]] = {}
    for t in files:
        kind = t.meta.get("kind")
        if isinstance(kind, str) and kind:
            key = kind
        else:
            fields = sorted({k for r in t.rows for k in r if k not in VALUE_FIELDS})
            key = ", ".join(fields) or "rows"
        groups.setdefault(key, []).append(t)
    out = []
    for key in sorted(groups):
        title = name if len(groups) == 1 else f"{name}: {key}"
        merged = pivot_files(groups[key], title)
        if merged is not None:
            out.append(merged)
    return out


def pivot_files(files: Sequence[TidyFile], name: str) -> Pivot | None:
    """All files of one kind in one table (rows from every file, the file named in a `file` column), so judges or
    reward models evaluated by separate commands can be compared side by side. Each file's metadata is kept."""
    if not files:
        return None
    rows = [{**r, "file": t.path.name} for t in files for r in t.rows]
    merged = pivot(TidyFile(Path(name), rows))
    merged.meta = [(t.path.name, _text(t.meta)[:600]) for t in files if t.meta]
    merged.name, merged.path = name, ", ".join(t.path.name for t in files)
    return merged
