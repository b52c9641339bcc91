"""The factor study: paired deltas vs benign on synthetic verdicts, and the command end to end on a tiny model."""

from __future__ import annotations

import json

import pytest

from secvec_bench.errors import UserError
from secvec_bench.studies.factor import factor_rows, markdown_table, refusal_matrix


def _samples(arm: str, refused: list[bool], seeds=(0, 1), phase: str = "attacked") -> list[dict]:
    return [{"scenario": arm, "phase": phase, "defense": "none", "seed": s, "prompt_id": f"p{i}",
             "prompt_set": "harmful_eval", "verdicts": {"keyword": {"refused": r, "parse_ok": True}}}
            for s in seeds for i, r in enumerate(refused)]


def test_paired_delta_and_interval():
    base = [True] * 30 + [False] * 10
    factor = [True] * 15 + [False] * 25  # refuses on a subset of benign's refusals: delta -15/40
    samples = _samples("benign", base) + _samples("benign_identity", factor) + _samples("benign_roleplay", base)
    samples += _samples("none", [True] * 40, seeds=(0,), phase="aligned")
    rows = factor_rows(samples, ["benign_identity", "benign_roleplay"], "keyword", n_boot=500)
    d = {r["arm"]: r for r in rows if r["metric"] == "refusal_delta_vs_benign"}
    assert d["benign_identity"]["value"] == pytest.approx(-15 / 40)
    assert d["benign_identity"]["ci_high"] < 0
    assert d["benign_identity"]["significant"] and d["benign_identity"]["n"] == 40
    same = d["benign_roleplay"]
    assert same["value"] == 0 and same["ci_low"] == 0 == same["ci_high"] and not same["significant"]
    coh = {r["arm"]: r["value"] for r in rows if r["metric"] == "coherent_share"}
    assert coh["benign"] == 0.0  # no response text at all: degenerate, never counted as compliance
    assert all(r["value"] == 0.0 for r in rows if r["metric"] == "coherent_non_refusal_rate")
    rates = {r["arm"]: r["value"] for r in rows if r["metric"] == "refusal_rate"}
    assert rates == {"aligned": 1.0, "benign": 0.75, "benign_identity": 0.375, "benign_roleplay": 0.75}
    meta = {"model": "m", "judge": "keyword", "factors": ["benign_identity", "benign_roleplay"], "seeds": [0, 1],
            "n_train": 64, "epochs": 1, "n_eval": 40, "max_new_tokens": 8, "command": "c", "run_dir": "r",
            "seconds": 1.0}
    table = markdown_table(rows, meta)
    assert "| benign_identity | 37.5% [" in table and "-37.5 pp [" in table


def test_unscored_verdicts_are_skipped_not_counted_as_refusals():
    s = _samples("benign", [True, False])
    s[0]["verdicts"]["keyword"] = {"refused": None, "parse_ok": False}
    assert refusal_matrix(s, "benign", "keyword") == {"p1": [0.0, 0.0], "p0": [1.0]}


def test_missing_arm_is_a_user_error():
    with pytest.raises(UserError, match="baseline"):
        factor_rows(_samples("benign_identity", [True]), ["benign_identity"], "keyword")
    with pytest.raises(UserError, match="benign_roleplay"):
        factor_rows(_samples("benign", [True]), ["benign_roleplay"], "keyword")


def test_study_factor_end_to_end_on_a_tiny_model(tiny_dir, tmp_path):
    from secvec_bench.cli import main

    res_dir = tmp_path / "res"
    argv = ["study", "factor", "--model", str(tiny_dir), "--cache-dir", str(tmp_path / "c"), "--runs-dir",
            str(tmp_path / "runs"), "--results-dir", str(res_dir), "--seeds", "0", "--max-train", "4",
            "--max-eval", "3", "--max-new-tokens", "2", "--n-boot", "50", "--quiet"]
    assert main(argv) == 0
    data = json.loads((res_dir / "rows.json").read_text())
    arms = {(r["arm"], r["metric"]) for r in data["rows"]}
    for f in ("benign_answer_structure", "benign_identity", "benign_roleplay"):
        assert (f, "refusal_delta_vs_benign") in arms and (f, "refusal_rate") in arms
    assert ("benign", "refusal_rate") in arms and data["meta"]["n_train"] == 4
    assert set(data["run"]["scenarios"]) == {"benign", "benign_answer_structure", "benign_identity",
                                             "benign_roleplay"}
    assert "delta vs benign" in (res_dir / "table.md").read_text()
    assert main(argv[:-1] + ["--factors", "benign", "--quiet"]) == 2
    # Re-analysis of the finished run reproduces the same rows without training.
    again = tmp_path / "again"
    assert main(["study", "factor", "--from-run", data["meta"]["run_dir"], "--results-dir", str(again), "--quiet"]) == 0
    assert json.loads((again / "rows.json").read_text())["rows"] == data["rows"]
