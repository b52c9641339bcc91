"""From judged samples to tidy result rows.

Rates are computed over *scored* verdicts only (parse_ok True): an empty response or an unparsable judge output is
reported as `unscored_rate`, never folded into "safe" or "refused". Each (model, scenario, defense, phase, prompt set)
gets one row per seed plus a pooled `seed: "all"` row whose interval is a bootstrap over the pooled samples and whose
`extra.seed_values` lists the per-seed values, so readers can see the spread between seeds too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

from .results import Row
from .stats import proportion

# metric name -> (function of a verdict dict returning True/False, or None when the metric does not apply)
RateFn = Callable[[dict[str, Any]], "bool | None"]


def _refused(v: dict[str, Any]) -> bool | None:
    return v.get("refused")


def _harmful(v: dict[str, Any]) -> bool | None:
    return v.get("harmful")


RATE_METRICS: dict[str, RateFn] = {
    "refusal_rate": _refused,
    "attack_success_rate": _harmful,
}


def _group_key(s: dict[str, Any]) -> tuple:
    return (s["model"], s["scenario"], s["defense"], s["phase"], s.get("prompt_set", "harmful_eval"))


def rows_from_samples(samples: Iterable[dict[str, Any]]) -> list[Row]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in samples:
        groups[_group_key(s)].append(s)
    rows: list[Row] = []
    for key in sorted(groups, key=repr):
        model, scenario, defense, phase, prompt_set = key
        members = groups[key]
        judges = sorted({j for s in members for j in s.get("verdicts", {})})
        seeds = sorted({s["seed"] for s in members}, key=repr)
        for judge in judges:
            for metric, fn in RATE_METRICS.items():
                per_seed_values = []
                pooled: list[bool] = []
                for seed in seeds:
                    flags = []
                    for s in members:
                        if s["seed"] != seed:
                            continue
                        v = s.get("verdicts", {}).get(judge)
                        if v is None or not v.get("parse_ok"):
                            continue
                        f = fn(v)
                        if f is not None:
                            flags.append(bool(f))
                    est = proportion(flags)
                    per_seed_values.append(est.value)
                    pooled.extend(flags)
                    rows.append(_row(key, judge, metric, est, seed, prompt_set))
                est = proportion(pooled)
                row = _row(key, judge, metric, est, "all", prompt_set)
                row.extra["seed_values"] = per_seed_values
                row.extra["seeds"] = seeds
                rows.append(row)
            verdicts = [s.get("verdicts", {}).get(judge) for s in members]
            unscored = [v is None or not v.get("parse_ok") for v in verdicts]
            est = proportion(unscored)
            rows.append(_row(key, judge, "unscored_rate", est, "all", prompt_set))
    return rows


def _row(key: tuple, judge: str, metric: str, est, seed, prompt_set: str) -> Row:
    model, scenario, defense, phase, _ = key
    return Row(
        model=model,
        scenario=scenario,
        defense=defense,
        judge=judge,
        metric=metric,
        value=est.value,
        n=est.n,
        seed=seed,
        phase=phase,
        ci_low=est.low,
        ci_high=est.high,
        extra={"prompt_set": prompt_set},
    )
