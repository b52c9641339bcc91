"""RM metrics against hand-computed values: pairwise accuracy with ties, AUROC convention, kappa threshold, ECE,
temperature fit, paired margins, prefix handling for slow RMs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from secvec_bench.rm.evaluate import (
    best_threshold, fit_temperature, format_table, margin_rows, pair_correct, pairwise_rows, pointwise_rows,
    rows_for, symmetric_ece,
)


def _row(rows, rm, metric, category="all"):
    (r,) = [r for r in rows if r.rm == rm and r.metric == metric and r.category == category]
    return r


def test_pair_correct_ties_count_half():
    s = np.array([[2.0, 1.0], [1.0, 1.0], [0.0, 3.0], [5.0, 5.0]])
    assert pair_correct(s).tolist() == [1.0, 0.5, 0.0, 0.5]
    rows = pairwise_rows("x", "d", s, s, False, None, seed=0)
    assert _row(rows, "x", "pairwise_accuracy").value == pytest.approx(0.5)
    assert _row(rows, "x", "tie_rate").value == pytest.approx(0.5)


def test_auroc_convention_lower_reward_is_harmful():
    # rewards of harmful items: 1, 2; harmless: 3, 0 -> pairs (harmful below harmless): (1<3),(2<3) yes; (1<0),(2<0) no
    rewards = np.array([1.0, 2.0, 3.0, 0.0])
    harmful = np.array([True, True, False, False])
    rows = pointwise_rows("x", "d", rewards, harmful, rewards, harmful, None, seed=0)
    assert _row(rows, "x", "auroc").value == pytest.approx(0.5)
    perfect = np.array([0.0, 1.0, 5.0, 6.0])
    rows = pointwise_rows("x", "d", perfect, harmful, perfect, harmful, None, seed=0)
    assert _row(rows, "x", "auroc").value == pytest.approx(1.0)
    assert _row(rows, "x", "kappa").value == pytest.approx(1.0)


def test_best_threshold_and_kappa_hand_computed():
    dev = np.array([0.0, 1.0, 2.0, 3.0])
    dev_y = np.array([True, True, False, False])
    t = best_threshold(dev, dev_y)
    assert 1.0 < t < 2.0  # "harmful iff reward < t" separates perfectly between 1 and 2
    # eval: predictions (r < t) = [T, F, T, F] vs truth [T, T, F, F]: po = 0.5, pe = 0.5 -> kappa 0
    ev = np.array([0.5, 2.5, 1.0, 3.0])
    ev_y = np.array([True, True, False, False])
    rows = pointwise_rows("x", "d", dev, dev_y, ev, ev_y, None, seed=0)
    assert _row(rows, "x", "threshold").value == pytest.approx(t)
    assert _row(rows, "x", "kappa").value == pytest.approx(0.0)
    assert _row(rows, "x", "accuracy").value == pytest.approx(0.5)
    assert _row(rows, "x", "sensitivity").value == pytest.approx(0.5)
    assert _row(rows, "x", "specificity").value == pytest.approx(0.5)
    # 3 of 4 right: pred [T,T,T,F] vs [T,T,F,F]: po=.75, pe=.75*.5+.25*.5=.5 -> kappa .5
    ev2 = np.array([0.5, 1.0, 1.2, 3.0])
    rows = pointwise_rows("x", "d", dev, dev_y, ev2, ev_y, None, seed=0)
    assert _row(rows, "x", "kappa").value == pytest.approx(0.5)


def test_symmetric_ece_hand_computed():
    # margin 0 -> p = 0.5 for both orientations, outcomes 1 and 0 in the same bin: |0.5 - 0.5| = 0
    assert symmetric_ece(np.zeros(5), 1.0) == pytest.approx(0.0)
    # huge margins, all right: p ~ 1 with outcome 1 and ~0 with outcome 0 -> ECE ~ 0
    assert symmetric_ece(np.full(5, 50.0), 1.0) == pytest.approx(0.0, abs=1e-9)
    # huge margins, all wrong: p ~ 0 with outcome 1 and ~1 with outcome 0 -> ECE ~ 1
    assert symmetric_ece(np.full(5, -50.0), 1.0) == pytest.approx(1.0, abs=1e-9)
    # margin log(3): p = .75 (outcome 1) and .25 (outcome 0) in separate bins: each off by .25 -> ECE .25
    assert symmetric_ece(np.full(4, math.log(3)), 1.0) == pytest.approx(0.25)


def test_fit_temperature_recovers_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2.0, size=4000)  # true logits
    won = rng.random(4000) < 1 / (1 + np.exp(-z))
    margins = np.where(won, z, -z) * 10.0  # the RM's margins are the logits scaled by 10 -> T should be ~10
    assert fit_temperature(margins) == pytest.approx(10.0, rel=0.15)
    assert fit_temperature(np.zeros(3)) == 1.0


def test_temperature_fitted_on_dev_only():
    dev = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    ev = np.array([[100.0, 0.0]] * 3)
    rows = pairwise_rows("x", "d", dev, ev, True, None, seed=0)
    t = _row(rows, "x", "temperature")
    assert t.split == "dev" and t.value == pytest.approx(fit_temperature(dev[:, 0] - dev[:, 1]))
    assert _row(rows, "x", "ece_raw").value == pytest.approx(0.0, abs=1e-9)


def test_margin_is_paired_and_against_best_null():
    n = 40
    chosen_right = np.array([[1.0, 0.0]] * n)
    half = np.array([[1.0, 0.0]] * (n // 2) + [[0.0, 1.0]] * (n // 2))
    always_tie = np.array([[0.0, 0.0]] * n)
    scores = {"rm": chosen_right, "length": half, "refusal": always_tie, "random": half[::-1].copy()}
    (row,) = margin_rows("d", "pairwise", scores, None, seed=0)
    assert row.extra["baseline"] in ("length", "random", "refusal")
    assert row.extra["baseline_value"] == pytest.approx(0.5)
    assert row.value == pytest.approx(0.5)
    assert row.ci_low <= row.value <= row.ci_high


def test_intervals_contain_point_estimates():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(50, 2))
    rows = pairwise_rows("x", "d", s, s, True, ["a", "b"] * 25, seed=0)
    for r in rows:
        if r.ci_low is not None and r.value is not None:
            assert r.ci_low <= r.value <= r.ci_high
    assert {r.category for r in rows} == {"all", "a", "b"}


def test_slow_rm_prefix_compared_on_its_own_units():
    # baseline right on the first 10 units, wrong on the rest; a slow RM scored on only those 10 units
    base = np.array([[1.0, 0.0]] * 10 + [[0.0, 1.0]] * 30)
    slow = np.array([[1.0, 0.0]] * 10)
    rows = rows_for("d", "pairwise", {"slow": slow[:4], "length": base[:4]}, {"slow": slow, "length": base},
                    {"slow": True, "length": False})
    m = _row(rows, "slow", "margin_vs_best_null")
    assert m.n == 10 and m.value == pytest.approx(0.0)
    assert _row(rows, "length", "pairwise_accuracy").value == pytest.approx(0.25)
    text = format_table(rows, "pairwise")
    assert "slow" in text and "n=10" in text and "n=40" in text
