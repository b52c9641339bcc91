"""Render bench/results/*.json as the markdown table of the README "Performance" section (summary.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    for stem in (name, f"{name}_smoke"):
        p = folder / f"{stem}.json"
        if p.exists():
            return json.loads(p.read_text())
    return None


def _limit(row: dict[str, Any]) -> str:
    share = row.get("share_of_compute_limit")
    return f" ({100 * share:.0f}% of the compute limit)" if share is not None else ""


def render(folder: Path) -> str:
    gen, tr, e2e, ac = (_load(folder, n) for n in ("generation", "training", "end_to_end", "autocast_cache"))
    docs = [d for d in (gen, tr, e2e, ac) if d]
    if not docs:
        return "no bench results found\n"
    m = docs[0]["machine"]
    lines = [f"Measured {', '.join(sorted({d['date'][:10] for d in docs}))} on {m['cpu']['model']} "
             f"({m['cpu']['logical_cpus']} logical CPUs, {', '.join(m['cpu']['simd_flags'])}), torch {m['torch']}, "
             f"{m['torch_threads']} threads."]
    if any(d.get("contended") for d in docs):
        busy = ", ".join(f"{d['bench']} (load {d['load_average_before'][:1]})" for d in docs if d.get("contended"))
        lines.append(f"\n**Measured under contention, not the machine's speed:** {busy}.")
    if any(d.get("smoke") or d.get("config", {}).get("smoke") for d in docs):
        lines.append("\n**Smoke sizes: the numbers only show the scripts run.**")
    lines += ["", "| what | setting | result |", "|---|---|---|"]
    if gen:
        for r in gen["rows"]:
            if "tokens_per_second" in r:
                lines.append(f"| generation: {r['generator']} | batch {r['batch_size']}, {r.get('dtype', 'Q4_1')}, "
                             f"{r['prompts']} prompts | {r['tokens_per_second']:.1f} tok/s{_limit(r)} |")
            else:
                lines.append(f"| generation: {r['generator']} | — | skipped: {r.get('skipped')} |")
        ra = gen["ratios"]
        lines.append(f"| our best / naive loop | target ≥ {ra['target_ours_over_naive']}× | {ra['ours_over_naive']}× |")
        if "ours_over_llama_cpp" in ra:
            lines.append(f"| our best / llama.cpp single stream | target ≥ {ra['target_ours_over_llama_cpp']}× | "
                         f"{ra['ours_over_llama_cpp']}× |")
        for dt, lim in gen.get("compute_limit", {}).items():
            lines.append(f"| generation compute limit | {dt}, matmul peak {lim['peak_gflops']} GFLOP/s | "
                         f"{lim['limit_tokens_per_second']} tok/s |")
        q = gen["quality"]
        if "fp32_vs_bf16" in q:
            a = q["fp32_vs_bf16"]
            lines.append(f"| greedy fp32 vs bf16 | {a['of']} prompts | {a['identical_responses']} identical, common "
                         f"prefix {100 * a['mean_common_prefix_share']:.0f}%; refusal rate {q['refusal_rate_fp32']} "
                         f"vs {q['refusal_rate_bf16']} |")
    if tr:
        for dt, p in tr["matmul_peak"].items():
            lines.append(f"| torch matmul peak | {p['n']}², {dt} | {p['gflops']} GFLOP/s |")
        for p in tr.get("matmul_at_model_shapes", {}).values():
            lines.append(f"| torch matmul, the step's own linear shapes | {p['tokens']} rows, {p['dtype']} | "
                         f"{p['gflops']} GFLOP/s |")
        for r in tr["lora_step"]:
            lines.append(f"| LoRA attack step | {r['batch']}×{r['seq_len']} tokens, {r['dtype']} | "
                         f"{r['tokens_per_second']} tok/s, {r['achieved_gflops']} GFLOP/s = "
                         f"{100 * r['share_of_matmul_peak']:.0f}% of peak"
                         + (f", {100 * r['share_of_model_shape_rate']:.0f}% of the shape rate"
                            if "share_of_model_shape_rate" in r else "") + " |")
        noise = tr["bf16_vs_seed_noise"]
        for k, v in noise.get("comparison", {}).items():
            lines.append(f"| bf16 vs fp32 training ({k}) | seed noise {v['seed_noise']} | "
                         f"diff {v['bf16_minus_fp32']} ({'within' if v['within_noise'] else 'outside'} noise) |")
        if "skipped" in noise:
            lines.append(f"| bf16 vs fp32 training | — | {noise['skipped']} |")
    if ac:
        ms = ac["ms_per_call"]
        lines.append(f"| bf16 autocast, Linear {ac['config']['linear'][0]}², 1 row | no_grad vs inference_mode | "
                     f"{ms['autocast_no_grad']} vs {ms['autocast_inference_mode']} ms/call (fp32 "
                     f"{ms['fp32_inference_mode']}; frozen weights under no_grad {ms.get('autocast_no_grad_frozen_weights')}) |")
    if e2e:
        lines.append(f"| `{e2e['command']}` cold | fresh cache, target ≤ {e2e['targets']['cold_seconds']} s | "
                     f"{e2e['cold']['wall_seconds']:.0f} s |")
        lines.append(f"| same, warm | same cache, target ≤ {e2e['targets']['warm_seconds']} s | "
                     f"{e2e['warm']['wall_seconds']:.0f} s |")
        bf = e2e.get("bf16_cold", {})
        if "wall_seconds" in bf:
            lines.append(f"| same with `--bf16`, cold | own fresh cache | {bf['wall_seconds']:.0f} s |")
        for c in e2e.get("fp32_vs_bf16_refusal", []):
            state = c["phase"] if c["phase"] != "attacked" else f"attacked, defense={c['defense']}"
            lines.append(f"| refusal rate fp32 vs `--bf16` ({state}) | n={c['n']}, two-proportion test 95% | "
                         f"{100 * c['fp32']:.1f}% vs {100 * c['bf16']:.1f}% "
                         f"({'within' if c['within_noise'] else 'outside'} noise) |")
        stages = e2e["cold"]["stages"]
        lines.append("\nCold run, seconds per stage: " + ", ".join(
            f"{k} {v['seconds']:.0f}" for k, v in stages.items() if v["seconds"] is not None) + ".")
    lines.append("\nReproduce: `python bench/run_all.py` (writes bench/results/*.json and this table).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    folder = Path(args.results)
    text = render(folder)
    if folder.is_dir():
        from common import ROOT  # noqa: F401  (repo on sys.path for the atomic writer)
        from secvec_bench.io import atomic_write_text

        atomic_write_text(folder / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
