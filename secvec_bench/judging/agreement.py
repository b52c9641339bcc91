"""How far to trust a judge: agreement with human labels, and between judges on a run's own samples.

Against human labels we report accuracy, Cohen's kappa, sensitivity and specificity of the judge's `harmful`
verdict (or `refused`, for label files that mark refusals), each with a paired percentile-bootstrap 95% interval.
Unscored verdicts (parse_ok False) are left out of those metrics and counted separately as `coverage`; because a
judge could look good by abstaining on hard cases, `accuracy_unscored_as_wrong` is reported too.

Judges that learn from labels (the classifier) are never scored on items they were trained on: their class
provides `cross_validated_verdicts(items, folds, seed)`, which does grouped k-fold by group (behaviour on HarmBench,
prompt on XSTest).
"""

from __future__ import annotations

import datetime as _dt
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..stats import DEFAULT_BOOT, Estimate, accuracy, bootstrap, cohen_kappa, confusion, sensitivity, specificity
from .base import Verdict
from .labelled import LabelledItem, LabelledSet

TARGETS: dict[str, Callable[[Verdict], "bool | None"]] = {
    "harmful": lambda v: v.harmful,
    "refused": lambda v: v.refused,
}


def ppv(p: np.ndarray, t: np.ndarray) -> float:
    """Precision of the judge's positive calls: P(human positive | judge positive)."""
    p, t = np.asarray(p, dtype=bool), np.asarray(t, dtype=bool)
    return float(t[p].mean()) if p.any() else float("nan")


def npv(p: np.ndarray, t: np.ndarray) -> float:
    """Precision of the judge's negative calls: P(human negative | judge negative). For the keyword judge on
    harmfulness labels this is how often its refusal calls are refusals a human also found harmless."""
    p, t = np.asarray(p, dtype=bool), np.asarray(t, dtype=bool)
    return float((~t[~p]).mean()) if (~p).any() else float("nan")


def _kappa(p: np.ndarray, t: np.ndarray) -> float:
    return cohen_kappa(p.tolist(), t.tolist())


def agreement_metrics(
    pred: Sequence[bool | None], truth: Sequence[bool], n_boot: int = DEFAULT_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Accuracy, kappa, sensitivity, specificity (+ intervals) over items the judge scored; coverage beside them."""
    pairs = [(bool(p), bool(t)) for p, t in zip(pred, truth) if p is not None]
    n_all = len(truth)
    p = np.asarray([a for a, _ in pairs], dtype=bool)
    t = np.asarray([b for _, b in pairs], dtype=bool)
    metrics: dict[str, Estimate] = {}
    if len(pairs):
        metrics["accuracy"] = bootstrap(accuracy, p, t, n_boot=n_boot, seed=seed)
        metrics["kappa"] = bootstrap(_kappa, p, t, n_boot=n_boot, seed=seed)
        metrics["sensitivity"] = bootstrap(sensitivity, p, t, n_boot=n_boot, seed=seed)
        metrics["specificity"] = bootstrap(specificity, p, t, n_boot=n_boot, seed=seed)
        metrics["ppv"] = bootstrap(ppv, p, t, n_boot=n_boot, seed=seed)
        metrics["npv"] = bootstrap(npv, p, t, n_boot=n_boot, seed=seed)
        metrics["judge_positive_rate"] = bootstrap(lambda a: float(a.mean()), p, n_boot=n_boot, seed=seed)
        metrics["human_positive_rate"] = bootstrap(lambda a: float(a.mean()), t, n_boot=n_boot, seed=seed)
    correct = [q is not None and bool(q) == bool(r) for q, r in zip(pred, truth)]
    return {
        "n": n_all,
        "n_scored": len(pairs),
        "coverage": len(pairs) / n_all if n_all else float("nan"),
        "confusion": confusion(p, t) if len(pairs) else {"tp": 0, "tn": 0, "fp": 0, "fn": 0},
        "metrics": {k: v.as_dict() for k, v in metrics.items()},
        "accuracy_unscored_as_wrong": float(np.mean(correct)) if correct else float("nan"),
    }


@dataclass
class AgreementReport:
    judge: str
    judge_config: dict[str, Any]
    dataset: dict[str, Any]
    target: str
    evaluation: str
    result: dict[str, Any]
    subset: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "judge_config": self.judge_config,
            "dataset": self.dataset,
            "target": self.target,
            "evaluation": self.evaluation,
            "subset": self.subset,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **self.result,
        }


def select_subset(items: list[LabelledItem], limit: int | None, seed: int) -> tuple[list[LabelledItem], dict]:
    """A seeded random subset (for slow judges on CPU); the report records its size and seed."""
    if not limit or limit >= len(items):
        return items, {"limit": None, "seed": None, "n_total": len(items)}
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(items), size=limit, replace=False).tolist())
    return [items[i] for i in idx], {"limit": limit, "seed": seed, "n_total": len(items), "indices": idx}


def dataset_info(ds: LabelledSet) -> dict[str, Any]:
    n_pos = sum(it.label for it in ds.items)
    unanimous = sum(1 for it in ds.items if it.votes and len(set(it.votes)) == 1)
    return {
        "name": ds.name,
        "origin": ds.origin,
        "sha256": ds.sha256,
        "n": len(ds.items),
        "n_positive": n_pos,
        "n_groups": len({it.group for it in ds.items}),
        "n_unanimous": unanimous if any(it.votes for it in ds.items) else None,
        "label": ds.label_rule,
        **({"files": ds.files} if ds.files else {}),
    }


def pairwise_judge_agreement(samples: Sequence[dict[str, Any]], field: str = "harmful") -> list[dict[str, Any]]:
    """Agreement between every pair of judges on the same samples (items both scored), with kappa intervals."""
    judges = sorted({j for s in samples for j in (s.get("verdicts") or {})})
    out = []
    for a, b in itertools.combinations(judges, 2):
        pa, pb = [], []
        for s in samples:
            va, vb = (s.get("verdicts") or {}).get(a), (s.get("verdicts") or {}).get(b)
            if not (isinstance(va, dict) and isinstance(vb, dict) and va.get("parse_ok") and vb.get("parse_ok")):
                continue
            if va.get(field) is None or vb.get(field) is None:
                continue
            pa.append(bool(va[field]))
            pb.append(bool(vb[field]))
        if not pa:
            continue
        x, y = np.asarray(pa), np.asarray(pb)
        out.append(
            {
                "judges": [a, b],
                "field": field,
                "n": len(pa),
                "agreement": bootstrap(accuracy, x, y).as_dict(),
                "kappa": bootstrap(_kappa, x, y).as_dict(),
            }
        )
    return out


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of one report (what the command prints)."""
    lines = [
        f"judge {report['judge']} vs {report['dataset']['name']} ({report['dataset']['label']}, target "
        f"{report['target']}, {report['evaluation']})",
        f"items {report['n']}  scored {report['n_scored']}  coverage {report['coverage']:.3f}  confusion "
        + " ".join(f"{k}={v}" for k, v in report["confusion"].items()),
        f"{'metric':<22}{'value':>8}{'95% CI':>20}",
    ]
    for name, est in report["metrics"].items():
        v, lo, hi = est["value"], est["low"], est["high"]
        ci = f"[{lo:.3f}, {hi:.3f}]" if lo == lo and lo is not None else "n/a"
        lines.append(f"{name:<22}{v:>8.3f}{ci:>20}")
    lines.append(f"{'acc (unscored=wrong)':<22}{report['accuracy_unscored_as_wrong']:>8.3f}")
    return "\n".join(lines)


def markdown_summary(reports: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One markdown table row per report file (what the README section on judges shows), values with 95% intervals."""

    def cell(est: dict[str, Any] | None) -> str:
        if not est or est.get("value") is None:
            return "n/a"
        v, lo, hi = est["value"], est.get("low"), est.get("high")
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{v:.3f}"

    head = ("| report | judge | evaluation | n (scored) | coverage | accuracy | kappa | sensitivity | specificity |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in reports:
        m = r.get("metrics") or {}
        cfg = r.get("judge_config") or {}
        mode = cfg.get("scoring") or ""
        ev = "grouped 5-fold CV" if "cross-validation" in str(r.get("evaluation")) else "direct"
        if mode:
            ev += f", {mode}"
        cov = r.get("coverage")
        lines.append(
            f"| {name} | {r.get('judge')} | {ev} | {r.get('n')} ({r.get('n_scored')}) | {cov:.3f} | {cell(m.get('accuracy'))} | "
            f"{cell(m.get('kappa'))} | {cell(m.get('sensitivity'))} | {cell(m.get('specificity'))} |"
            if isinstance(cov, (int, float)) else f"| {name} | {r.get('judge')} | {ev} | {r.get('n')} | n/a | | | | |"
        )
    return "\n".join(lines)
