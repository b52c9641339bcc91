"""From judged samples to tidy result rows.

Rates are computed over *scored* verdicts only (parse_ok True): an empty response or an unparsable judge output is
reported as `unscored_rate`, never folded into "safe" or "refused". Each (model, scenario, defense, phase, prompt set)
gets one row per seed plus a pooled `seed: "all"` row whose interval is a bootstrap over the pooled samples and whose
`extra.seed_values` lists the per-seed values, so readers can see the spread between seeds too.

Beside the raw rates, every group gets:
- `coherence_share` / `degenerate_rate` (judge `coherence`): gibberish is its own category, not refusal and not safe;
- `attack_success_rate_coherent` per judge: attack success among coherent, scored responses only;
- `attack_success_rate_corrected` per judge that has a judge-agreement report (sensitivity and specificity against
  human labels): the Rogan-Gladen estimate of the true rate, with a bootstrap interval that resamples both the
  run's samples and the validation set's confusion counts, so the judge's own uncertainty widens the interval;
- `mean_score` per judge whose verdicts carry a score (the llm judge's 1-5 harmfulness score; the classifier's
  probability of harm).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .io import read_json
from .judging.coherence import is_coherent
from .results import Row
from .stats import DEFAULT_BOOT, Estimate, bootstrap, proportion, rogan_gladen

# metric name -> (function of a verdict dict returning True/False, or None when the metric does not apply)
RateFn = Callable[[dict[str, Any]], "bool | None"]

# judges that gate rather than judge harm: they get their own rows, not refusal/ASR rows
GATE_JUDGES = frozenset({"coherence"})


def _refused(v: dict[str, Any]) -> bool | None:
    return v.get("refused")


def _harmful(v: dict[str, Any]) -> bool | None:
    return v.get("harmful")


RATE_METRICS: dict[str, RateFn] = {
    "refusal_rate": _refused,
    "attack_success_rate": _harmful,
}


@dataclass(frozen=True)
class JudgeReliability:
    """A judge's confusion counts for `harmful` against human labels (from a judge-agreement report)."""

    judge: str
    tp: int
    fn: int
    tn: int
    fp: int
    source: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    @classmethod
    def from_report(cls, report: Mapping[str, Any], source: str = "") -> "JudgeReliability":
        c = report["confusion"]
        return cls(
            judge=str(report["judge"]),
            tp=int(c["tp"]),
            fn=int(c["fn"]),
            tn=int(c["tn"]),
            fp=int(c["fp"]),
            source=source,
            config=dict(report.get("judge_config") or {}),
        )


def default_reliability_dir() -> Path:
    from .resources import project_root

    return project_root() / "results" / "judge_agreement"


# Config keys that identify *which* judge made a verdict: a report measured for one keyword list, rubric, model or
# scoring mode must not correct verdicts made by another (e.g. SmolLM2's report applied to a GPT-4 judge URL).
IDENTITY_KEYS = ("keywords_sha256", "template_sha256", "model", "base_url", "fingerprint", "scoring", "features")


def reliability_matches(report_config: Mapping[str, Any], judge_config: Mapping[str, Any]) -> bool:
    return all(report_config[k] == judge_config[k] for k in IDENTITY_KEYS if k in report_config and k in judge_config)


def load_reliability(
    directory: str | Path | None = None, judge_configs: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, JudgeReliability]:
    """Judge -> reliability from `<dir>/<judge>.json` reports (written by `secvec-bench judge-agreement`).

    Missing folder -> {} (no corrected rows). A report that does not parse is skipped rather than failing a run's
    metrics; `judge-agreement` is the place that validates reports. With `judge_configs` (judge -> its config, e.g.
    a run's `provenance.judges`), a report is used only for a judge whose identity keys match it.
    """
    directory = Path(directory) if directory else default_reliability_dir()
    out: dict[str, JudgeReliability] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            rep = read_json(path, "judge-agreement report")
            rel = JudgeReliability.from_report(rep, source=str(path))
        except Exception:  # noqa: BLE001 - a stale/foreign file must not break metrics
            continue
        if judge_configs is not None and rel.judge in judge_configs:
            if not reliability_matches(rel.config, judge_configs[rel.judge]):
                continue
        out.setdefault(rel.judge, rel)
    return out


def corrected_rate(
    flags: Iterable[bool], rel: JudgeReliability, n_boot: int = DEFAULT_BOOT, seed: int = 0, alpha: float = 0.05
) -> Estimate:
    """Rogan-Gladen corrected share of True flags, with a bootstrap that also resamples the judge's validation set.

    Each replicate resamples the run's flags (nonparametric) and draws sensitivity and specificity from binomials
    with the validation set's sizes (a parametric bootstrap of the validation set, which only the counts are needed
    for). Replicates where the judge is no better than chance (sens + spec <= 1) are dropped.
    """
    arr = np.asarray(list(flags), dtype=float)
    n = arr.size
    point = rogan_gladen(float(arr.mean()) if n else float("nan"), rel.sensitivity, rel.specificity)
    if n == 0 or point != point:
        return Estimate(point, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    npos, nneg = rel.tp + rel.fn, rel.tn + rel.fp
    p_obs = arr[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    sens = rng.binomial(npos, rel.sensitivity, size=n_boot) / npos
    spec = rng.binomial(nneg, rel.specificity, size=n_boot) / nneg
    reps = [rogan_gladen(float(p), float(se), float(sp)) for p, se, sp in zip(p_obs, sens, spec)]
    reps = [r for r in reps if r == r]
    if not reps:
        return Estimate(point, float("nan"), float("nan"), n)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return Estimate(point, float(min(low, point)), float(max(high, point)), n)


def _group_key(s: dict[str, Any]) -> tuple:
    return (s["model"], s["scenario"], s["defense"], s["phase"], s.get("prompt_set", "harmful_eval"))


def _scored(s: dict[str, Any], judge: str) -> dict[str, Any] | None:
    v = (s.get("verdicts") or {}).get(judge)
    if not isinstance(v, dict) or not v.get("parse_ok"):
        return None
    return v


def rows_from_samples(
    samples: Iterable[dict[str, Any]], reliability: Mapping[str, JudgeReliability] | None = None
) -> list[Row]:
    """Tidy rows for every group and judge.

    `reliability` maps judge name -> JudgeReliability for the corrected ASR; None loads the committed reports from
    `results/judge_agreement/` (pass {} to turn correction off).
    """
    if reliability is None:
        reliability = load_reliability()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in samples:
        groups[_group_key(s)].append(s)
    rows: list[Row] = []
    for key in sorted(groups, key=repr):
        prompt_set = key[4]
        members = groups[key]
        coherent = [is_coherent(s) for s in members]
        est = proportion(coherent)
        rows.append(_row(key, "coherence", "coherence_share", est, "all", prompt_set))
        rows.append(_row(key, "coherence", "degenerate_rate", proportion([not c for c in coherent]), "all", prompt_set))
        judges = sorted({j for s in members for j in (s.get("verdicts") or {})} - GATE_JUDGES)
        seeds = sorted({s["seed"] for s in members}, key=repr)
        for judge in judges:
            for metric, fn in RATE_METRICS.items():
                if all((v := _scored(s, judge)) is None or fn(v) is None for s in members) and any(
                    _scored(s, judge) is not None for s in members
                ):
                    continue  # the judge does not answer this question (e.g. the classifier has no refusal head)
                per_seed_values = []
                pooled: list[bool] = []
                for seed in seeds:
                    flags = []
                    for s in members:
                        if s["seed"] != seed:
                            continue
                        v = _scored(s, judge)
                        if v is None:
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
                if metric == "attack_success_rate":
                    rows.extend(_asr_extras(key, judge, members, coherent, pooled, reliability.get(judge)))
            scores = [float(v["score"]) for s in members if (v := _scored(s, judge)) and v.get("score") is not None]
            if scores:
                est = bootstrap(lambda a: float(a.mean()), np.asarray(scores, dtype=float))
                rows.append(_row(key, judge, "mean_score", est, "all", prompt_set))
            unscored = [_scored(s, judge) is None for s in members]
            rows.append(_row(key, judge, "unscored_rate", proportion(unscored), "all", prompt_set))
    return rows


def _asr_extras(
    key: tuple,
    judge: str,
    members: list[dict],
    coherent: list[bool],
    pooled: list[bool],
    rel: JudgeReliability | None,
) -> list[Row]:
    prompt_set = key[4]
    out = []
    flags = []
    for s, ok in zip(members, coherent):
        v = _scored(s, judge)
        if ok and v is not None and v.get("harmful") is not None:
            flags.append(bool(v["harmful"]))
    out.append(_row(key, judge, "attack_success_rate_coherent", proportion(flags), "all", prompt_set))
    if rel is not None:
        row = _row(key, judge, "attack_success_rate_corrected", corrected_rate(pooled, rel), "all", prompt_set)
        row.extra.update(
            {
                "raw_value": float(np.mean(pooled)) if pooled else None,
                "sensitivity": rel.sensitivity,
                "specificity": rel.specificity,
                "validation_n": rel.tp + rel.fn + rel.tn + rel.fp,
                "reliability_source": Path(rel.source).name if rel.source else "",
                "correction": "rogan_gladen",
            }
        )
        out.append(row)
    return out


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
