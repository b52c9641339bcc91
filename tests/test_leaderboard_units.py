"""Units of the leaderboard: names, cell selection, chart geometry, threat-model card, reliability tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from secvec_bench.leaderboard.card import build_card
from secvec_bench.leaderboard.charts import bar_charts, nice_ticks, pareto, scatter
from secvec_bench.leaderboard.load import Run, TidyFile, tidy_rows
from secvec_bench.leaderboard.names import safe_name, slugify
from secvec_bench.leaderboard.reliability import judge_pairs, pivot
from secvec_bench.leaderboard.table import SAFETY_COLUMNS, build_table, column_judges, pick_cell


def row(metric, value, judge="keyword", seed="all", phase="attacked", prompt_set="harmful_eval", **kw):
    return {"model": "m", "scenario": "s", "defense": "d", "judge": judge, "metric": metric, "value": value,
            "n": kw.pop("n", 10), "seed": seed, "phase": phase, "ci_low": kw.pop("ci_low", None),
            "ci_high": kw.pop("ci_high", None), "extra": {"prompt_set": prompt_set, **kw}}


def run_of(rows, samples=(), provenance=None, created="2026-01-01", run_id="r") -> Run:
    return Run(path=Path(run_id), run_id=run_id, created=created, model="m", rows=list(rows),
               provenance=provenance or {}, samples=list(samples), has_samples=bool(samples))


COL = {c.id: c for c in SAFETY_COLUMNS}


def test_slugs_are_plain_ascii_and_names_unique():
    assert slugify("Ünïcode / ../../etc <b>") == "unicode-etc-b"
    assert slugify("....") == "x"
    assert safe_name(["a/b"]) != safe_name(["a_b"])
    assert safe_name(["a", "b"]) != safe_name(["a-b"])  # separator is part of the hash input
    assert len(safe_name(["x" * 500])) < 80


def test_pooled_row_preferred_then_harmful_eval():
    rows = [row("refusal_rate", 0.2, seed=0), row("refusal_rate", 0.5, prompt_set="other"),
            row("refusal_rate", 0.4, ci_low=0.3, ci_high=0.5)]
    cell = pick_cell(rows, COL["refusal"], ["keyword"])
    assert (cell.value, cell.prompt_set, cell.interval) == (0.4, "harmful_eval", "[30.0–50.0%]")


def test_cell_notes_show_correction_and_seed_spread():
    r = row("attack_success_rate_corrected", 0.6, sensitivity=0.9, specificity=0.8, raw_value=0.5,
            seed_values=[0.5, 0.7])
    cell = pick_cell([r], COL["asr_corrected"], ["keyword"])
    assert cell.note == "judge sensitivity 0.9; judge specificity 0.8; raw 0.5; per seed 0.5, 0.7"
    assert cell.note in cell.source


def test_per_seed_rows_only_give_their_mean_and_say_so():
    rows = [row("refusal_rate", 0.2, seed=0), row("refusal_rate", 0.4, seed=1)]
    cell = pick_cell(rows, COL["refusal"], ["keyword"])
    assert cell.value == pytest.approx(0.3) and cell.ci_low is None and "mean of 2" in cell.note


def test_over_refusal_reads_the_xstest_prompt_set():
    rows = [row("refusal_rate", 0.9), row("refusal_rate", 0.15, prompt_set="xstest_safe")]
    assert pick_cell(rows, COL["over_refusal"], [None, "keyword"]).value == 0.15
    assert pick_cell([row("refusal_rate", 0.9)], COL["over_refusal"], [None, "keyword"]) is None


def test_a_column_reads_one_judge_falling_back_when_the_primary_has_no_value():
    a = run_of([row("attack_success_rate", None, judge="keyword"), row("attack_success_rate", 0.7, judge="llm"),
                row("attack_success_rate", 0.6, judge="other"), row("refusal_rate", 0.1, judge="keyword"),
                row("refusal_rate", 0.5, judge="llm")])
    table = build_table([a])
    e = table.entries[0]
    # keyword measured no ASR; llm and other each measured it once: the tie breaks by name.
    assert column_judges(table.entries, COL["asr"], "keyword") == ["llm"]
    assert e.cells["asr"].judge == "llm" and e.cells["asr"].value == 0.7
    assert e.cells["refusal"].judge == "keyword"
    assert table.column_judges["refusal"] == "keyword"
    table = build_table([a], primary_judge="llm")
    assert table.entries[0].cells["asr"].value == 0.7 and table.entries[0].cells["refusal"].value == 0.5


def test_missing_metrics_leave_cells_empty_and_columns_hidden():
    table = build_table([run_of([row("refusal_rate", 0.5)])])
    e = table.entries[0]
    assert set(e.cells) == {"refusal"} and [c.id for c in table.columns] == ["refusal"]


def test_unknown_metrics_become_utility_columns():
    table = build_table([run_of([row("refusal_rate", 0.5), row("benign_loss", 1.7, judge=""),
                                 row("degenerate_rate", 0.1, judge="coherence")])])
    util = [c for c in table.columns if c.kind == "utility"]
    assert [(c.label, c.better, c.fmt) for c in util] == [("benign_loss", "lower", "num")]


def test_nice_ticks_cover_the_range():
    t = nice_ticks(0.53, 0.67)
    assert t[0] <= 0.53 and t[-1] >= 0.67 and len(t) <= 8
    assert nice_ticks(1.0, 1.0)[-1] > 1.0


def test_pareto_frontier():
    pts = [(0.6, 0.8), (0.58, 0.3), (0.62, 0.1), (0.5, 0.05)]
    assert pareto(pts, x_higher_better=True) == {2, 3}
    assert pareto(pts, x_higher_better=False) == {3}  # lowest on both axes dominates all
    assert pareto(pts, x_higher_better=True, y_higher_better=True) == {0, 2}
    assert pareto([(1, 1), (1, 1)], True) == {0, 1}  # ties dominate nobody


def two_entry_table():
    rows = [row("attack_success_rate", 0.8, judge="llm", ci_low=0.7, ci_high=0.9),
            row("task_accuracy", 0.6, judge=""), {**row("attack_success_rate", 0.2, judge="llm"), "defense": "sv"},
            {**row("task_accuracy", 0.55, judge=""), "defense": "sv"}]
    return build_table([run_of(rows)])


def test_scatter_and_bars_map_values_to_coordinates():
    table = two_entry_table()
    s = scatter(table, {0: "a.html", 1: "b.html"})
    by_href = {p.href: p for p in s.points}
    d, sv = by_href["a.html"], by_href["b.html"]
    assert s.top <= d.cy < sv.cy <= s.bottom  # higher ASR is drawn higher
    assert sv.cx < d.cx  # lower accuracy is further left
    assert d.y_err and d.y_err[0] > d.cy > d.y_err[1]
    assert {p.on_frontier for p in s.points} == {True}  # neither dominates the other
    (chart,) = bar_charts(table, {0: "a.html", 1: "b.html"})
    widths = {b.href: b.width for b in chart.bars}
    assert widths["a.html"] == pytest.approx(4 * widths["b.html"])


def test_card_finds_facts_in_the_entrys_own_config_first():
    prov = {
        "config": {"align_cfg": {"lr": 1e-4, "mode": "full", "epochs": 1},
                   "attack_cfg": {"lr": 2e-4, "mode": "lora", "lora_r": 16, "epochs": 2}},
        "scenarios": {"s": {"n": 40, "harmful_share": 0.25}, "other": {"n": 999}},
        "data": {"hashes": {"advbench": "ab12"}, "harmful_source": "advbench"},
        "chat_template_sha256": "cd34", "git_commit": "abc",
    }
    run = run_of([row("refusal_rate", 0.5), row("refusal_rate", 0.9, phase="aligned")], provenance=prov)
    table = build_table([run])
    attacked = next(e for e in table.entries if e.key.phase == "attacked")
    aligned = next(e for e in table.entries if e.key.phase == "aligned")
    facts = {f.label: (f.value, f.path) for f in build_card(attacked).facts}
    assert facts["Learning rate"] == ("0.0002", "config.attack_cfg.lr")
    assert facts["LoRA rank"][0] == "16" and facts["Fine-tuning mode"][0] == "lora"
    assert facts["Training examples"] == ("40", "scenarios.s.n")
    assert facts["Poison ratio"][0] == "0.25" and facts["Chat template sha256"][0] == "cd34"
    aligned_facts = {f.label: f.value for f in build_card(aligned).facts}
    assert aligned_facts["Learning rate"] == "0.0001" and aligned_facts["Fine-tuning mode"] == "full"
    sources = {f.path: f.value for f in build_card(attacked).sources}
    assert sources["data.hashes.advbench"] == "ab12" and sources["data.harmful_source"] == "advbench"


def test_card_does_not_take_a_defense_named_like_the_scenario_for_it():
    prov = {"defenses": {"none": {"config": {"defense": "none"}}}, "scenarios": {"attack": {"n": 4}}}
    table = build_table([run_of([{**row("refusal_rate", 0.5, phase="aligned"), "scenario": "none",
                                  "defense": "none"}], provenance=prov)])
    card = build_card(table.entries[0])
    assert card.scenario_config == [] and [n.key for n in card.defense_config] == ["config"]


def test_unknown_judge_flag_is_a_user_error():
    from secvec_bench.errors import UserError

    with pytest.raises(UserError, match="--judge 'gpt'"):
        build_table([run_of([row("refusal_rate", 0.5)])], primary_judge="gpt")


def test_judge_pairs_count_only_samples_both_judges_scored():
    def s(a, b, ok=True):
        return {"verdicts": {"j1": {"parse_ok": True, "harmful": a},
                             "j2": {"parse_ok": ok, "harmful": b}}}
    pairs = judge_pairs([s(True, True), s(False, False), s(True, False), s(True, True, ok=False)])
    (p,) = [p for p in pairs if p.flag == "harmful"]
    assert (p.a, p.b, p.n) == ("j1", "j2", 3) and p.agreement == pytest.approx(2 / 3)
    assert p.kappa == pytest.approx(0.4)


def test_tidy_shapes_and_pivot():
    assert tidy_rows("text") is None
    rows, meta = tidy_rows([{"rm": "a", "metric": "auroc", "value": 0.9}])
    assert rows[0]["rm"] == "a" and meta == {}
    rows, meta = tidy_rows({"judge": "kw", "metrics": {"kappa": {"value": 0.4, "low": 0.3, "high": 0.5, "n": 9}},
                            "confusion": {"tp": 1}})
    assert rows == [{"judge": "kw", "metric": "kappa", "value": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n": 9}]
    assert meta == {"confusion": {"tp": 1}}
    p = pivot(TidyFile(Path("x.json"), [
        {"rm": "a", "dataset": "d", "metric": "acc", "value": 0.91234, "ci_low": 0.8, "ci_high": 0.95, "n": 5},
        {"rm": "a", "dataset": "d", "metric": "ece", "value": 0.1, "n": 5},
        {"rm": "b", "dataset": "d", "metric": "acc", "value": None, "n": 0},
    ]))
    assert p.id_fields == ["rm", "dataset"] and p.metrics == ["acc", "ece"]
    (ida, cells_a), (idb, cells_b) = p.rows
    assert ida == ["a", "d"] and cells_a["acc"].value == "0.912" and cells_a["acc"].interval == "[0.8–0.95]"
    assert idb == ["b", "d"] and cells_b["acc"].value == "—" and "ece" not in cells_b


def test_files_of_one_kind_share_one_table():
    from secvec_bench.leaderboard.reliability import pivot_files

    a = TidyFile(Path("keyword.json"), [{"judge": "keyword", "metric": "kappa", "value": 0.4}], {"n": 3})
    b = TidyFile(Path("llm.json"), [{"judge": "llm", "metric": "kappa", "value": 0.7},
                                    {"judge": "llm", "metric": "auroc", "value": 0.9}])
    p = pivot_files([a, b], "Judges")
    assert p.id_fields == ["judge", "file"] and p.metrics == ["kappa", "auroc"]
    assert [ident for ident, _ in p.rows] == [["keyword", "keyword.json"], ["llm", "llm.json"]]
    assert p.meta == [("keyword.json", '{"n": 3}')]
    assert pivot_files([], "x") is None


def test_files_of_different_kinds_get_their_own_tables():
    from secvec_bench.leaderboard.reliability import pivot_groups

    a = TidyFile(Path("hb.json"), [{"rm": "len", "dataset": "hb", "metric": "auroc", "value": 0.3}], {"kind": "rm-eval"})
    b = TidyFile(Path("hh.json"), [{"rm": "len", "dataset": "hh", "metric": "acc", "value": 0.5}], {"kind": "rm-eval"})
    c = TidyFile(Path("rm_eval.json"), [{"rm": "len", "run": "r", "metric": "auroc", "value": 0.6}],
                 {"kind": "rm-eval-run"})
    tables = pivot_groups([a, b, c], "RMs")
    assert [t.name for t in tables] == ["RMs: rm-eval", "RMs: rm-eval-run"]
    assert len(tables[0].rows) == 2 and tables[1].id_fields == ["rm", "run", "file"]
    assert [t.name for t in pivot_groups([a, b], "RMs")] == ["RMs"]


def test_discover_tidy_files_reads_report_subfolders(tmp_path):
    from secvec_bench.leaderboard.load import discover_tidy_files

    base = tmp_path / "results" / "judge_agreement"
    (base / "xstest-completions").mkdir(parents=True)
    for p in (base / "keyword.json", base / "xstest-completions" / "keyword.json"):
        p.write_text("{}")
    found = discover_tidy_files([tmp_path / "results", tmp_path / "results"], "judge_agreement")
    assert found == [base / "keyword.json", base / "xstest-completions" / "keyword.json"]
