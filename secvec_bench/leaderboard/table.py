"""From tidy result rows to leaderboard entries: one per model x scenario x defense x phase.

The phase is part of the identity so the aligned model before any attack (phase `aligned`) sits in the table as the
baseline next to the attacked models. Each entry gets one `Cell` per column. Which row fills a cell is a rule, stated
here and shown in the cell's tooltip: the pooled (`seed: "all"`) row, on the `harmful_eval` prompt set when there is
one, and for judge-specific metrics from one judge per column (see `column_judges`), so a column never compares
verdicts of different judges. A metric that is absent leaves the cell empty ("—"); nothing is filled in. When a run
has only per-seed rows for a metric, the cell is their mean and says so.

Utility metrics are not a fixed list (other commands add new ones): every metric that is not a known safety metric
becomes a utility column of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import UserError
from .load import Run
from .names import safe_name, slugify

PHASE_ORDER = {"aligned": 0, "attacked": 1, "sv_on": 2}
OVER_REFUSAL_SETS = frozenset({"xstest_safe"})
PREFERRED_HARMFUL_SET = "harmful_eval"


def prompt_set_of(row: dict[str, Any]) -> str:
    extra = row.get("extra") or {}
    return str(extra.get("prompt_set") or row.get("prompt_set") or "")


def _is_pooled(row: dict[str, Any]) -> bool:
    return str(row.get("seed", "all")) == "all"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return None if (math.isnan(x) or math.isinf(x)) else float(x)


@dataclass(frozen=True)
class EntryKey:
    model: str
    scenario: str
    defense: str
    phase: str

    def parts(self) -> tuple[str, str, str, str]:
        return (self.model, self.scenario, self.defense, self.phase)

    def sort_key(self) -> tuple:
        return (self.model, PHASE_ORDER.get(self.phase, 9), self.phase, self.scenario, self.defense)


@dataclass
class Cell:
    """One displayed number with its interval and where it came from."""

    value: float | None
    fmt: str  # "pct" (a rate shown as a percentage) or "num"
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    judge: str = ""
    prompt_set: str = ""
    metric: str = ""
    note: str = ""

    def _fmt(self, x: float | None) -> str:
        if x is None:
            return "—"
        return f"{100 * x:.1f}%" if self.fmt == "pct" else f"{x:.3g}"

    @property
    def text(self) -> str:
        return self._fmt(self.value)

    @property
    def interval(self) -> str:
        if self.ci_low is None or self.ci_high is None:
            return ""
        lo, hi = self._fmt(self.ci_low), self._fmt(self.ci_high)
        return f"[{lo.rstrip('%')}–{hi}]" if self.fmt == "pct" else f"[{lo}–{hi}]"

    @property
    def source(self) -> str:
        bits = [f"metric {self.metric}"]
        if self.judge:
            bits.append(f"judge {self.judge}")
        if self.prompt_set:
            bits.append(f"prompt set {self.prompt_set}")
        if self.n is not None:
            bits.append(f"n={self.n}")
        if self.note:
            bits.append(self.note)
        return ", ".join(bits)

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "judge": self.judge,
            "prompt_set": self.prompt_set,
            "metric": self.metric,
            "note": self.note,
        }


SetFilter = Callable[[str], bool]


def _harmful_sets(ps: str) -> bool:
    return ps not in OVER_REFUSAL_SETS


def _over_refusal_sets(ps: str) -> bool:
    return ps in OVER_REFUSAL_SETS


def _any_set(ps: str) -> bool:
    return True


@dataclass(frozen=True)
class Source:
    """One way to fill a column: a metric, the prompt sets it is read on, and whether one judge fills the column."""

    metric: str
    sets: SetFilter = _harmful_sets
    one_judge: bool = False


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    fmt: str
    better: str  # "lower", "higher" or ""
    sources: tuple[Source, ...]
    help: str = ""
    kind: str = "safety"


SAFETY_COLUMNS: tuple[Column, ...] = (
    Column("refusal", "Refusal", "pct", "higher", (Source("refusal_rate", one_judge=True),),
           "share of harmful prompts refused"),
    Column("asr", "ASR", "pct", "lower", (Source("attack_success_rate", one_judge=True),),
           "attack success rate: share of harmful prompts answered harmfully (raw judge verdicts)"),
    Column("asr_corrected", "ASR corrected", "pct", "lower",
           (Source("attack_success_rate_corrected", one_judge=True),),
           "ASR corrected for the judge's measured sensitivity and specificity (Rogan-Gladen)"),
    Column("harmfulness", "Harmfulness", "num", "lower", (Source("harmfulness_score"), Source("mean_score")),
           "mean harmfulness score given by a scoring judge"),
    Column("over_refusal", "Over-refusal", "pct", "lower",
           (Source("over_refusal", _any_set), Source("refusal_rate", _over_refusal_sets, one_judge=True)),
           "share of safe look-alike prompts (XSTest) refused"),
    Column("coherence", "Coherence", "pct", "higher", (Source("coherence_share"),),
           "share of responses the judge found coherent"),
    Column("unscored", "Unscored", "pct", "lower", (Source("unscored_rate", one_judge=True),),
           "share of responses the primary judge could not score (left out of the rates)"),
)
# Safety metrics shown on entry pages but not as index columns; every other unknown metric is a utility metric.
OTHER_SAFETY_METRICS = frozenset({"degenerate_rate", "attack_success_rate_coherent", "judge_harmful_rate"})
KNOWN_METRICS = frozenset(src.metric for col in SAFETY_COLUMNS for src in col.sources) | OTHER_SAFETY_METRICS
LOWER_IS_BETTER_HINTS = ("loss", "perplexity", "ppl", "error")


def utility_column(metric: str) -> Column:
    better = "lower" if any(h in metric.lower() for h in LOWER_IS_BETTER_HINTS) else "higher"
    fmt = "pct" if metric.lower().endswith(("accuracy", "_rate", "_share")) else "num"
    return Column(
        f"util-{slugify(metric)}", metric, fmt, better, (Source(metric, _any_set),),
        f"utility metric {metric} ({better} is better)", kind="utility",
    )


@dataclass
class Entry:
    key: EntryKey
    run: Run
    rows: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    cells: dict[str, Cell] = field(default_factory=dict)
    seeds: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return "entries/" + safe_name(self.key.parts())

    @property
    def date(self) -> str:
        return self.run.created[:10]

    @property
    def label(self) -> str:
        return f"{self.key.model} · {self.key.scenario} · {self.key.defense} · {self.key.phase}"

    def judges(self) -> list[str]:
        """Judges with a verdict on at least one of this entry's samples (one verdict column each)."""
        return sorted({str(j) for s in self.samples for j in (s.get("verdicts") or {})})


def choose_primary_judge(runs: Sequence[Run], requested: str | None) -> str:
    """The judge preferred for judge-specific columns: `--judge` if given, else `keyword` (every run has it), else
    the alphabetically first judge seen. A column the primary judge does not measure (the keyword judge gives no
    harmfulness verdict, so no ASR) is read from the judge that measured it for the most entries instead."""
    judges = sorted({str(r.get("judge")) for run in runs for r in run.rows if r.get("judge")})
    if requested:
        if requested not in judges:
            known = ", ".join(judges) or "none"
            raise UserError(f"--judge {requested!r}: no result rows from this judge (judges: {known})")
        return requested
    if "keyword" in judges or not judges:
        return "keyword"
    return judges[0]


# Row extras worth showing next to a number (how a corrected rate was corrected, the spread between seeds).
NOTE_KEYS = (("sensitivity", "judge sensitivity"), ("specificity", "judge specificity"),
             ("validation_n", "validation n"), ("raw_value", "raw"))


def extra_note(r: dict[str, Any]) -> str:
    extra = r.get("extra") or {}
    bits = [f"{label} {_short(extra[k])}" for k, label in NOTE_KEYS if k in extra and extra[k] is not None]
    seed_values = [v for v in (extra.get("seed_values") or []) if _num(v) is not None]
    if len(seed_values) > 1:
        bits.append("per seed " + ", ".join(_short(v) for v in seed_values))
    return "; ".join(bits)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _rank(r: dict[str, Any]) -> tuple:
    ps = prompt_set_of(r)
    return (ps != PREFERRED_HARMFUL_SET, ps, str(r.get("judge")))


def column_judges(entries: Sequence["Entry"], column: Column, primary_judge: str) -> list[str | None]:
    """For each source of a judge-specific column, the one judge that fills it for every entry, so a column never
    mixes judges: the primary judge if it measured the metric (a non-null pooled value) anywhere, else the judge that
    measured it for the most entries. None for sources that are not judge-specific."""
    out: list[str | None] = []
    for src in column.sources:
        if not src.one_judge:
            out.append(None)
            continue
        counts: dict[str, int] = {}
        for e in entries:
            measured = {str(r.get("judge")) for r in e.rows if r.get("metric") == src.metric
                        and src.sets(prompt_set_of(r)) and _num(r.get("value")) is not None}
            for j in measured:
                counts[j] = counts.get(j, 0) + 1
        if primary_judge in counts or not counts:
            out.append(primary_judge)
        else:
            out.append(sorted(counts, key=lambda j: (-counts[j], j))[0])
    return out


def pick_cell(rows: Sequence[dict[str, Any]], column: Column, judges: Sequence[str | None]) -> Cell | None:
    """Fill one column from an entry's rows following the module's rule; None when no row fits. `judges[i]` is the
    judge source i must come from (None: any judge, preferring rows with a value)."""
    for src, judge in zip(column.sources, judges):
        cands = [
            r for r in rows
            if r.get("metric") == src.metric and src.sets(prompt_set_of(r))
            and (judge is None or str(r.get("judge")) == judge)
        ]
        if not cands:
            continue

        def rank(r: dict[str, Any]) -> tuple:
            return (_num(r.get("value")) is None, *_rank(r))

        pooled = sorted((r for r in cands if _is_pooled(r)), key=rank)
        if pooled:
            r = pooled[0]
            return Cell(
                value=_num(r.get("value")), fmt=column.fmt, ci_low=_num(r.get("ci_low")),
                ci_high=_num(r.get("ci_high")), n=r.get("n") if isinstance(r.get("n"), int) else None,
                judge=str(r.get("judge") or ""), prompt_set=prompt_set_of(r), metric=src.metric,
                note=extra_note(r),
            )
        best = sorted(cands, key=rank)[0]
        group = [r for r in cands if _rank(r) == _rank(best)]
        values = [v for v in (_num(r.get("value")) for r in group) if v is not None]
        seeds = sorted({str(r.get("seed")) for r in group})
        note = f"seed {seeds[0]}" if len(group) == 1 else f"mean of {len(values)} per-seed values (no pooled row)"
        ns = [r.get("n") for r in group if isinstance(r.get("n"), int)]
        single = len(group) == 1
        return Cell(
            value=(sum(values) / len(values)) if values else None, fmt=column.fmt,
            ci_low=_num(best.get("ci_low")) if single else None, ci_high=_num(best.get("ci_high")) if single else None,
            n=sum(ns) if ns else None, judge=str(best.get("judge") or ""), prompt_set=prompt_set_of(best),
            metric=src.metric, note=note,
        )
    return None


def _seeds(rows: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]]) -> list[str]:
    seeds: set[str] = set()
    for r in rows:
        extra = r.get("extra") or {}
        if isinstance(extra.get("seeds"), list):
            seeds.update(str(s) for s in extra["seeds"])
        if not _is_pooled(r):
            seeds.add(str(r.get("seed")))
    seeds.update(str(s["seed"]) for s in samples if "seed" in s)
    return sorted(seeds, key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))


def _key(d: dict[str, Any]) -> EntryKey:
    return EntryKey(str(d.get("model", "")), str(d.get("scenario", "")), str(d.get("defense", "")),
                    str(d.get("phase", "attacked")))


@dataclass
class Table:
    entries: list[Entry]
    columns: list[Column]
    primary_judge: str
    column_judges: dict[str, str] = field(default_factory=dict)  # column id -> the judge it is read from


def build_table(runs: Sequence[Run], primary_judge: str | None = None) -> Table:
    """One entry per key; when several runs hold the same key, the newest run (by `created`) wins and the entry
    lists the others as superseded, so a rerun replaces rather than duplicates a row."""
    judge = choose_primary_judge(runs, primary_judge)
    owners: dict[EntryKey, list[Run]] = {}
    for run in runs:
        for key in sorted({_key(r) for r in run.rows}, key=EntryKey.sort_key):
            owners.setdefault(key, []).append(run)
    entries: list[Entry] = []
    utility_metrics: set[str] = set()
    for key in sorted(owners, key=EntryKey.sort_key):
        ranked = sorted(owners[key], key=lambda r: (r.created, str(r.path)), reverse=True)
        run = ranked[0]
        rows = [r for r in run.rows if _key(r) == key]
        samples = [s for s in run.samples if _key(s) == key]
        utility_metrics.update(str(r["metric"]) for r in rows if r["metric"] not in KNOWN_METRICS)
        entries.append(Entry(key=key, run=run, rows=rows, samples=samples, seeds=_seeds(rows, samples),
                             superseded=[r.run_id for r in ranked[1:]]))
    columns = [c for c in SAFETY_COLUMNS] + [utility_column(m) for m in sorted(utility_metrics)]
    col_judges: dict[str, str] = {}
    for c in columns:
        judges = column_judges(entries, c, judge)
        for e in entries:
            cell = pick_cell(e.rows, c, judges)
            if cell is not None:
                e.cells[c.id] = cell
        named = sorted({j for j in judges if j})
        if named:
            col_judges[c.id] = ", ".join(named)
    # Hide columns no entry has a value for (e.g. ASR when only the keyword judge ran): all-"—" only adds width.
    columns = [c for c in columns if any(e.cells.get(c.id) and e.cells[c.id].value is not None for e in entries)]
    return Table(entries=entries, columns=columns, primary_judge=judge, column_judges=col_judges)


def table_json(table: Table, title: str) -> dict[str, Any]:
    """The table as data, written next to index.html for anyone who wants the numbers without scraping HTML."""
    return {
        "title": title,
        "primary_judge": table.primary_judge,
        "columns": [{"id": c.id, "label": c.label, "better": c.better, "format": c.fmt, "help": c.help,
                     "kind": c.kind, "judge": table.column_judges.get(c.id, "")} for c in table.columns],
        "entries": [
            {
                "model": e.key.model, "scenario": e.key.scenario, "defense": e.key.defense, "phase": e.key.phase,
                "run_id": e.run.run_id, "created": e.run.created, "seeds": e.seeds, "page": e.filename,
                "superseded_runs": e.superseded,
                "cells": {cid: cell.as_dict() for cid, cell in e.cells.items()},
            }
            for e in table.entries
        ],
    }
