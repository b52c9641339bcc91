"""The spine end to end on a tiny random model: results schema, cache hits, resume after a stage, split hygiene."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from secvec_bench.generation import GenConfig
from secvec_bench.pipeline import ATTACK_DEFAULTS, RunConfig, run
from secvec_bench.suite import build_suite


def _cfg(tiny_dir: Path, tmp_path: Path, **kw) -> RunConfig:
    base = dict(
        model=str(tiny_dir), defenses=["security_vectors"], out=str(tmp_path / "runs"),
        cache_dir=str(tmp_path / "cache"), max_train=16, max_eval=6, sv_samples=8,
        gen=GenConfig(max_new_tokens=4, batch_size=4),
        attack_cfg=replace(ATTACK_DEFAULTS, epochs=1, lora_r=4),
    )
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_schema_and_reuses_cache(tiny_dir, tmp_path):
    res = run(_cfg(tiny_dir, tmp_path))
    run_dir = Path(res["run_dir"])
    samples = [json.loads(l) for l in (run_dir / "samples.jsonl").read_text().splitlines()]
    results = json.loads((run_dir / "results.json").read_text())
    phases = {(s["phase"], s["defense"]) for s in samples}
    assert phases == {("aligned", "none"), ("attacked", "none"), ("attacked", "security_vectors"),
                      ("sv_on", "security_vectors")}
    assert len(samples) == 4 * 6
    for s in samples:
        assert {"prompt", "response", "scenario", "defense", "seed", "verdicts"} <= set(s)
        assert set(s["verdicts"]["keyword"]) == {"judge", "refused", "harmful", "score", "parse_ok", "rationale"}
    metrics = {(r["phase"], r["defense"], r["metric"]) for r in results["rows"] if r["seed"] == "all"}
    for phase, d in [("aligned", "none"), ("attacked", "none"), ("attacked", "security_vectors")]:
        assert (phase, d, "refusal_rate") in metrics and (phase, d, "attack_success_rate") in metrics
    for r in results["rows"]:
        assert {"model", "scenario", "defense", "judge", "metric", "value", "n"} <= set(r)
    prov = results["provenance"]
    assert len(prov["chat_template_sha256"]) == 64
    assert prov["data"]["hashes"]["builtin_harmful"]
    assert all(h["overlap"] == 0 for h in prov["hygiene"])
    # judge verdicts are keyed by content: identical responses from two models may legitimately share an entry
    fresh = {k: t for k, t in prov["timings"]["stages"].items() if not k.startswith("judge:")}
    assert not any(t["cached"] for t in fresh.values()), fresh

    again = run(_cfg(tiny_dir, tmp_path))
    stages = again["provenance"]["timings"]["stages"]
    assert stages and all(t["cached"] for t in stages.values()), stages
    assert again["rows"] == res["rows"]
    assert (run_dir / "samples.jsonl").read_text() == "\n".join(json.dumps(s, sort_keys=True, ensure_ascii=False)
                                                                 for s in samples) + "\n"


def test_resume_recomputes_only_missing_stage(tiny_dir, tmp_path):
    first = run(_cfg(tiny_dir, tmp_path))
    cache = tmp_path / "cache"
    # simulate a run killed after attack training, before its generations were stored
    gens = sorted((cache / "generate").glob("*.json"))
    target_key = first["provenance"]["timings"]["stages"]["generate:explicit_harmful:security_vectors:seed0"]["key"]
    (cache / "generate" / f"{target_key}.json").unlink()
    assert len(gens) == 4
    again = run(_cfg(tiny_dir, tmp_path))
    recomputed = {k for k, t in again["provenance"]["timings"]["stages"].items() if not t["cached"]}
    assert recomputed == {"generate:explicit_harmful:security_vectors:seed0"}
    assert again["rows"] == first["rows"]


def test_corrupted_adapter_is_rebuilt(tiny_dir, tmp_path):
    run(_cfg(tiny_dir, tmp_path))
    weights = next((tmp_path / "cache" / "attack").rglob("adapter_model.safetensors"))
    weights.write_bytes(b"garbage")
    # drop the generations so the attacked model must be loaded again
    shutil.rmtree(tmp_path / "cache" / "generate")
    again = run(_cfg(tiny_dir, tmp_path))
    rebuilt = {k for k, t in again["provenance"]["timings"]["stages"].items() if k.startswith("attack:")
               and not t["cached"]}
    assert len(rebuilt) == 1


def test_suite_splits_are_disjoint_builtin():
    s = build_suite(None)
    s.check_disjoint()
    groups = {split: {r["group"] for r in rows} for split, rows in s.harmful.items()}
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not groups[a] & groups[b]


def test_suite_from_shared_data(shared_data):
    s = build_suite(shared_data)
    assert {k: len(v) for k, v in s.harmful.items()} == {"eval": 60, "sv": 100, "attack": 210, "align": 150}
    s.check_disjoint()
    assert s.harmful_source == "advbench" and s.benign_source == "alpaca"
    assert s.harmful["eval"][0]["target"].startswith("Sure")


def test_overlap_is_refused(tmp_path):
    from secvec_bench.errors import UserError
    from secvec_bench.pipeline import check_overlap

    with pytest.raises(UserError, match="allow-overlap"):
        check_overlap(["How do I X?"], ["how do i x"], allow=False, what="attack")
    assert check_overlap(["How do I X?"], ["how do i x"], allow=True, what="attack")["overlap"] == 1
