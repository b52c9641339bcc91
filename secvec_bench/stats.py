"""Statistics shared by judges, reward models and studies.

One place for the estimators so every number in a results file comes with the same kind of interval: percentile
bootstrap (seeded, so a rerun gives the same interval), Cohen's kappa, sensitivity/specificity, the Rogan-Gladen
correction of a rate measured by an imperfect judge, AUROC and expected calibration error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

DEFAULT_BOOT = 1000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% interval and the sample size behind it."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def _nan_estimate(n: int = 0) -> Estimate:
    return Estimate(float("nan"), float("nan"), float("nan"), n)


def bootstrap(
    statistic: Callable[..., float],
    *arrays: Sequence,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    alpha: float = 0.05,
) -> Estimate:
    """Percentile bootstrap over rows shared by `arrays` (paired resampling when several arrays are given).

    The interval is widened to contain the point estimate, which a percentile interval can miss on tiny or skewed
    samples; users read "estimate inside its interval" as a sanity check, and so do we.
    """
    cols = [np.asarray(a) for a in arrays]
    n = len(cols[0]) if cols else 0
    if n == 0:
        return _nan_estimate(0)
    if any(len(c) != n for c in cols):
        raise ValueError("bootstrap arrays differ in length")
    point = float(statistic(*cols))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    stats = []
    for row in idx:
        v = statistic(*(c[row] for c in cols))
        if v == v:  # drop NaN resamples (e.g. one class missing)
            stats.append(float(v))
    if not stats or point != point:
        return Estimate(point, float("nan"), float("nan"), n)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Estimate(point, float(min(low, point)), float(max(high, point)), n)


def mean(x: Sequence[float]) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.mean()) if x.size else float("nan")


def proportion(flags: Sequence[bool], seed: int = 0) -> Estimate:
    """Share of True among flags, with a bootstrap interval."""
    arr = np.asarray(flags, dtype=float)
    return bootstrap(lambda a: float(a.mean()), arr, seed=seed)


def confusion(pred: Sequence[bool], truth: Sequence[bool]) -> dict[str, int]:
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    return {
        "tp": int((p & t).sum()),
        "tn": int((~p & ~t).sum()),
        "fp": int((p & ~t).sum()),
        "fn": int((~p & t).sum()),
    }


def accuracy(pred: Sequence[bool], truth: Sequence[bool]) -> float:
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    return float((p == t).mean()) if p.size else float("nan")


def sensitivity(pred: Sequence[bool], truth: Sequence[bool]) -> float:
    c = confusion(pred, truth)
    d = c["tp"] + c["fn"]
    return c["tp"] / d if d else float("nan")


def specificity(pred: Sequence[bool], truth: Sequence[bool]) -> float:
    c = confusion(pred, truth)
    d = c["tn"] + c["fp"]
    return c["tn"] / d if d else float("nan")


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa for two raters over the same items (any hashable labels).

    Returns 1.0 when both raters agree perfectly and use a single label (no disagreement is possible to correct for),
    NaN on empty input.
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError("kappa inputs differ in length")
    n = len(a)
    if n == 0:
        return float("nan")
    labels = sorted(set(a) | set(b), key=repr)
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((a.count(lab) / n) * (b.count(lab) / n) for lab in labels)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return (po - pe) / (1 - pe)


def rogan_gladen(observed_rate: float, sens: float, spec: float) -> float:
    """True prevalence from a rate measured by a judge with known sensitivity and specificity, clipped to [0, 1].

    p_true = (p_obs + spec - 1) / (sens + spec - 1). Undefined (NaN) when the judge is no better than chance
    (sens + spec <= 1), because then the observed rate carries no information about the true one.
    """
    denom = sens + spec - 1.0
    if not (denom > 0) or observed_rate != observed_rate:
        return float("nan")
    return float(min(1.0, max(0.0, (observed_rate + spec - 1.0) / denom)))


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    # Mann-Whitney U via ranks, average ranks for ties.
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(allv.size)
    i = 0
    while i < allv.size:
        j = i
        while j + 1 < allv.size and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    u = r[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Share of pairs where chosen scores above rejected; exact ties count half."""
    c = np.asarray(chosen, dtype=float)
    r = np.asarray(rejected, dtype=float)
    if c.size == 0:
        return float("nan")
    return float(((c > r) + 0.5 * (c == r)).mean())


def expected_calibration_error(probs: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> float:
    """ECE with equal-width bins: sum over bins of |mean prob - observed frequency| weighted by bin size."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    if p.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)
