"""Defense contracts on a tiny model: what each defense freezes, changes and removes, and the study wiring."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from secvec_bench.defenses import DEFENSES, DefenseContext, get_defense, has_post_train
from secvec_bench.generation import GenConfig
from secvec_bench.pipeline import ATTACK_DEFAULTS, RunConfig, run
from secvec_bench.scenarios import ChatExample
from secvec_bench.training import TrainConfig

SMALL_SV = TrainConfig(epochs=2, lr=1e-2, batch_size=4, lora_r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))


def _run_cfg(tiny_dir: Path, tmp_path: Path, defenses: list[str], **kw) -> RunConfig:
    base = dict(model=str(tiny_dir), defenses=defenses, out=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"),
                max_train=16, max_eval=6, sv_samples=8, sv_train=SMALL_SV, gen=GenConfig(max_new_tokens=4, batch_size=4),
                attack_cfg=replace(ATTACK_DEFAULTS, epochs=1, lora_r=4))
    base.update(kw)
    return RunConfig(**base)


def test_registry_has_the_study_defenses_with_stage_and_threat_model_docs():
    import importlib

    for name in ("none", "security_vectors", "random_adapter", "safety_mix", "safelora"):
        assert name in DEFENSES.names()
    for mod in ("random_adapter", "safety_mix", "safelora", "security_vectors"):
        doc = importlib.import_module(f"secvec_bench.defenses.{mod}").__doc__
        assert "Stage:" in doc and "Threat model:" in doc, mod
    assert "2405.16833" in importlib.import_module("secvec_bench.defenses.safelora").__doc__


def test_randomise_adapter_is_norm_matched_random_and_seeded(tmp_path):
    from safetensors.torch import load_file, save_file

    from secvec_bench.defenses.random_adapter import randomise_adapter

    src = tmp_path / "src"
    src.mkdir()
    (src / "adapter_config.json").write_text(json.dumps({"r": 4}))
    g = torch.Generator().manual_seed(1)
    t = {"a.lora_A.weight": torch.randn(4, 8, generator=g), "a.lora_B.weight": torch.randn(8, 4, generator=g) * 3}
    save_file(t, str(src / "adapter_model.safetensors"))
    randomise_adapter(src, tmp_path / "r1", seed=0)
    randomise_adapter(src, tmp_path / "r2", seed=0)
    randomise_adapter(src, tmp_path / "r3", seed=1)
    r1, r2, r3 = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("r1", "r2", "r3"))
    for k in t:
        assert r1[k].shape == t[k].shape
        assert torch.isclose(r1[k].norm(), t[k].norm(), rtol=1e-4)
        assert not torch.allclose(r1[k], t[k])
        assert torch.equal(r1[k], r2[k]) and not torch.equal(r1[k], r3[k])


def test_safety_mix_adds_refusals_from_align_split_only(tiny_dir):
    from secvec_bench.suite import build_suite

    suite = build_suite(None)
    ctx = DefenseContext(None, tiny_dir, "k", None, suite, seed=3)
    user = [ChatExample([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}], f"u{i}", True)
            for i in range(50)]
    d = get_defense("safety_mix", safety_ratio=0.2)
    out = d.training_data(user, ctx)
    added = [e for e in out if e.source_id.startswith("safety/")]
    assert len(out) == 60 and len(added) == 10
    align_goals = {r["goal"] for r in suite.harmful["align"]}
    held_out = {r["goal"] for r in suite.harmful["eval"]} | {r["goal"] for r in suite.harmful["attack"]}
    for e in added:
        assert e.messages[0]["content"] in align_goals and e.messages[0]["content"] not in held_out
        assert not e.harmful
    assert d.training_data(user, ctx) == out  # seeded
    assert get_defense("safety_mix").prepare(ctx).frozen_adapters == {}
    with pytest.raises(ValueError):
        get_defense("safety_mix", safety_ratio=0)


def test_safelora_projection_matches_paper_formula():
    from secvec_bench.defenses.safelora import alignment_matrices, project_adapter

    g = torch.Generator().manual_seed(0)
    base = {"m.l0.weight": torch.randn(6, 5, generator=g), "m.l1.weight": torch.randn(6, 5, generator=g)}
    u = torch.randn(6, 1, generator=g)
    aligned = {"m.l0.weight": base["m.l0.weight"] + u @ torch.randn(1, 5, generator=g),
               "m.l1.weight": base["m.l1.weight"] + u @ torch.randn(1, 5, generator=g)}
    mats = alignment_matrices(base, aligned, ["m.l0", "m.l1"])
    v = aligned["m.l0.weight"] - base["m.l0.weight"]
    assert torch.allclose(mats["m.l0"], v @ v.T / v.norm())
    # layer 0 update along the alignment direction (similarity 1), layer 1 orthogonal to it (similarity 0)
    orth = torch.randn(6, 1, generator=g)
    orth -= (orth.T @ u) / (u.T @ u) * u
    a0, a1 = torch.randn(1, 5, generator=g), torch.randn(1, 5, generator=g)
    tensors = {"base_model.model.m.l0.lora_A.weight": a0, "base_model.model.m.l0.lora_B.weight": u.clone(),
               "base_model.model.m.l1.lora_A.weight": a1, "base_model.model.m.l1.lora_B.weight": orth + 0.01 * u}
    new, rep = project_adapter(tensors, mats, threshold=0.35)
    assert rep["layers"] == 2 and rep["projected_layers"] == ["m.l1"]
    assert torch.equal(new["base_model.model.m.l0.lora_B.weight"], u)
    assert torch.allclose(new["base_model.model.m.l1.lora_B.weight"], mats["m.l1"] @ (orth + 0.01 * u))
    _, rep_n = project_adapter(tensors, mats, threshold=0.35, select="number", n_layers=2)
    assert rep_n["projected"] == 2


def test_defense_contracts_end_to_end(tiny_dir, tmp_path):
    """Each defense in a real (tiny) run: frozen adapters loaded and untouched, removed for inference, post-hoc
    projection applied, SV-on control reported, utility rows present."""
    cfg = _run_cfg(tiny_dir, tmp_path, ["security_vectors", "random_adapter", "safety_mix", "safelora"],
                   utility=True, utility_n=5)
    cfg.seeds = [0, 1]
    res = run(cfg)
    prov = res["provenance"]
    stages = prov["timings"]["stages"]
    # safelora trains nothing: it reuses the undefended attack and adds one post-training stage
    assert not any(k.startswith("attack:") and ":safelora:" in k for k in stages if not stages[k]["cached"]) or \
        stages["attack:explicit_harmful:safelora:seed0"]["key"] == stages["attack:explicit_harmful:none:seed0"]["key"]
    assert "post_train:safelora:seed0" in stages
    sl = prov["defenses"]["safelora"]["post_train"]["explicit_harmful:seed0"]
    assert sl["layers"] > 0 and 0 <= sl["projected"] <= sl["layers"]
    assert set(prov["defenses"]["safelora"]["post_train"]) == {"explicit_harmful:seed0", "explicit_harmful:seed1"}
    # the random adapter is norm-matched to the SV adapter of the same seed and is a different adapter
    assert prov["defenses"]["random_adapter"]["norm_matched_to_sv_key"]
    assert stages["adapter:random_adapter:seed0"]["key"] != stages["adapter:security_vectors:seed0"]["key"]
    # the SV-on (and random-on) controls are in the results
    rows = res["rows"]
    on = {r["defense"] for r in rows if r["phase"] == "sv_on" and r["metric"] == "refusal_rate"}
    assert on == {"security_vectors", "random_adapter"}
    # attack data: safety_mix trained on more examples than the user's
    assert len({stages[f"attack:explicit_harmful:{d}:seed0"]["key"] for d in ("none", "safety_mix")}) == 2
    # utility rows per arm
    for d in ("none", "security_vectors", "random_adapter", "safety_mix", "safelora"):
        for m in ("benign_loss", "task_score", "over_refusal_rate"):
            assert any(r["metric"] == m and r["defense"] == d and r["phase"] == "attacked" and r["seed"] == "all"
                       for r in rows), (d, m)
    samples = [json.loads(l) for l in (Path(res["run_dir"]) / "samples.jsonl").read_text().splitlines()]
    xs = [s for s in samples if s["prompt_set"] == "xstest_safe"]
    assert len(xs) == 5 * (1 + 5 * 2) and len({s["id"] for s in samples}) == len(samples)
    assert prov["utility"]["safe_prompts"] == "builtin"


def test_post_train_hook_is_detected():
    assert has_post_train(get_defense("safelora"))
    assert not has_post_train(get_defense("security_vectors"))


def test_safelora_needs_alignment(tiny_dir, tmp_path):
    from secvec_bench.errors import UserError

    with pytest.raises(UserError, match="safelora"):
        run(_run_cfg(tiny_dir, tmp_path, ["safelora"], align=False))


def test_sv_options_reach_the_adapter(tiny_dir, tmp_path):
    """--sv-rank/--sv-targets/--sv-epochs change the trained SV adapter (and its cache key)."""
    from secvec_bench.cli import main

    base = ["run", "--model", str(tiny_dir), "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
            "--max-train", "8", "--max-eval", "4", "--sv-samples", "4", "--max-new-tokens", "2", "--attack-epochs", "1",
            "--sv-rank", "2", "--sv-targets", "q_proj", "--sv-epochs", "1", "--quiet"]
    assert main(base) == 0
    cfgs = list((tmp_path / "c" / "adapter").glob("*/adapter/*/adapter_config.json")) + \
        list((tmp_path / "c" / "adapter").glob("*/adapter/adapter_config.json"))
    assert cfgs
    conf = json.loads(cfgs[0].read_text())
    assert conf["r"] == 2 and set(conf["target_modules"]) == {"q_proj"}
    assert main(base[:-1] + ["--sv-lr", "-1", "--quiet"]) == 2


def test_study_sv_writes_rows_table_and_arm_times(tiny_dir, tmp_path):
    from secvec_bench.cli import main

    res_dir = tmp_path / "res"
    argv = ["study", "sv", "--model", str(tiny_dir), "--cache-dir", str(tmp_path / "c"), "--runs-dir",
            str(tmp_path / "runs"), "--results-dir", str(res_dir), "--defenses", "none,security_vectors,safelora",
            "--harmful-counts", "8", "--max-eval", "4", "--sv-samples", "4", "--sv-rank", "2", "--sv-epochs", "1",
            "--max-new-tokens", "2", "--utility-n", "3", "--quiet"]
    assert main(argv) == 0
    data = json.loads((res_dir / "rows.json").read_text())
    assert data["pending_counts"] == [] and data["command"].startswith("secvec-bench study sv")
    arms = {(a["defense"], a["harmful_count"]) for a in data["arms"]}
    assert arms == {("none", 8), ("security_vectors", 8), ("safelora", 8)}
    assert all(a["seconds"] > 0 and "attack" in a["by_stage"] for a in data["arms"])
    sv_arm = next(a for a in data["arms"] if a["defense"] == "security_vectors")
    assert "adapter" in sv_arm["by_stage"]  # the SV adapter's training counts toward its arm
    table = (res_dir / "table.md").read_text()
    assert "security_vectors ON (control: must NOT refuse)" in table
    assert "attacked, defense=safelora" in table and "benign loss, explicit_harmful, count 8, security_vectors" in table
    assert all(r["harmful_count"] == 8 for r in data["rows"])


def test_study_checks_flag_a_harmless_sv_and_a_blocked_benign_learning():
    from secvec_bench.studies.sv import checks

    def r(phase, defense, metric, value, **kw):
        return {"phase": phase, "defense": defense, "metric": metric, "value": value, "seed": "all",
                "judge": "keyword", "harmful_count": 10, "scenario": kw.get("scenario", "none"),
                "extra": {"prompt_set": kw.get("ps", "harmful_eval")}}

    rows = [r("aligned", "none", "refusal_rate", 0.9), r("sv_on", "security_vectors", "refusal_rate", 0.95),
            r("attacked", "none", "benign_loss", 1.0, scenario="benign"),
            r("attacked", "security_vectors", "benign_loss", 1.2, scenario="benign")]
    arms = [{"harmful_count": 10, "scenario": "benign", "defense": d, "seed": 0} for d in ("none", "security_vectors")]
    text = "\n".join(checks(rows, arms, "keyword"))
    assert "NOT harmful" in text and "NOT within 5%" in text
    rows[1]["value"], rows[3]["value"] = 0.1, 1.03
    text = "\n".join(checks(rows, arms, "keyword"))
    assert "-> harmful" in text and "NOT" not in text


def test_study_table_shows_each_seed_and_the_benign_loss_interval():
    from secvec_bench.studies.sv import markdown_table

    def r(phase, defense, metric, value, seed, scenario="explicit_harmful", **kw):
        return {"phase": phase, "defense": defense, "metric": metric, "value": value, "seed": seed,
                "judge": "keyword", "harmful_count": 10, "scenario": scenario, "n": 4,
                "extra": {"prompt_set": "harmful_eval"}, **kw}

    rows = [r("aligned", "none", "refusal_rate", 1.0, "all", scenario="none", ci_low=1.0, ci_high=1.0)]
    for seed, v in ((0, 0.5), (1, 0.25), ("all", 0.375)):
        rows.append(r("attacked", "security_vectors", "refusal_rate", v, seed, ci_low=0.1, ci_high=0.6))
    rows.append(r("attacked", "security_vectors", "benign_loss", 1.5, "all", ci_low=1.4, ci_high=1.6))
    arms = [{"harmful_count": 10, "scenario": "explicit_harmful", "defense": "security_vectors", "seed": s,
             "seconds": 1.0} for s in (0, 1)]
    table = markdown_table(rows, arms, "keyword", "cmd", [])
    line = next(ln for ln in table.splitlines() if "defense=security_vectors" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "37.5% [10.0, 60.0]" and cells[4] == "50.0 / 25.0"
    assert cells[7] == "1.500 [1.400, 1.600]"


def test_study_checks_say_where_a_defense_helps_does_not_or_hurts():
    from secvec_bench.studies.sv import defense_effects

    def r(defense, scenario, value, lo, hi):
        return {"phase": "attacked", "defense": defense, "metric": "refusal_rate", "value": value, "ci_low": lo,
                "ci_high": hi, "seed": "all", "judge": "keyword", "harmful_count": 10, "scenario": scenario,
                "extra": {"prompt_set": "harmful_eval"}}

    rows = [r("none", "a", 0.1, 0.0, 0.2), r("security_vectors", "a", 0.9, 0.8, 1.0),
            r("none", "b", 0.6, 0.5, 0.7), r("security_vectors", "b", 0.4, 0.3, 0.45),
            r("none", "c", 0.5, 0.4, 0.6), r("security_vectors", "c", 0.55, 0.45, 0.65)]
    arms = [{"harmful_count": 10, "scenario": sc, "defense": d, "seed": 0}
            for sc in "abc" for d in ("none", "security_vectors")]
    text = defense_effects(rows, arms, "keyword")
    assert len(text) == 3
    assert "on a," in text[0] and "helps" in text[0]
    assert "on b," in text[1] and "HURTS" in text[1]
    assert "on c," in text[2] and "does NOT help" in text[2]
