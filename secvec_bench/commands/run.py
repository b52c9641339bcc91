"""`secvec-bench run`: align, attack under each defense, generate with the defense removed, judge, store, print."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from .. import hardware
from ..errors import UserError
from ..generation import GenConfig
from ..defenses.safelora import DEFAULT_THRESHOLD as SAFELORA_THRESHOLD
from ..defenses.safety_mix import DEFAULT_RATIO as SAFETY_RATIO
from ..defenses.security_vectors import SV_DEFAULTS
from ..backends import backend_names, get_backend
from ..pipeline import ALIGN_DEFAULTS, ATTACK_DEFAULTS, RunConfig, run


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one name")
    return items


def _seeds(value: str) -> list[int]:
    out = []
    for v in _csv(value):
        try:
            out.append(int(v))
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds must be integers, not {v!r}") from None
    return out


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {n}")
    return n


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m",
                   help="built-in name (smollm2-135m), local folder with safetensors, or Hugging Face id")
    p.add_argument("--revision", default=None, help="hub revision (commit/tag) for a Hugging Face id")
    p.add_argument("--data-dir", default=os.environ.get("SECVEC_BENCH_DATA"),
                   help="public data directory (default: $SECVEC_BENCH_DATA, else the built-in data); "
                        "'hub' fetches each source's pinned upstream file (needs network)")
    p.add_argument("--cache-dir", default=None, help="stage cache (default: $SECVEC_BENCH_CACHE or ~/.cache/secvec-bench)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines")


def add_defense_options(p: argparse.ArgumentParser) -> None:
    """Security-vector, defense and utility options (shared by `run` and `study sv`)."""
    p.add_argument("--sv-samples", type=positive_int, default=100, help="security-vector training examples")
    p.add_argument("--sv-rank", type=positive_int, default=SV_DEFAULTS.lora_r, help="security-vector LoRA rank")
    p.add_argument("--sv-alpha", type=positive_int, default=None, help="security-vector LoRA alpha (default: 2 x rank)")
    p.add_argument("--sv-targets", type=_csv, default=list(SV_DEFAULTS.target_modules),
                   help="security-vector LoRA target modules, comma-separated")
    p.add_argument("--sv-epochs", type=positive_int, default=SV_DEFAULTS.epochs, help="security-vector training epochs")
    p.add_argument("--sv-lr", type=float, default=SV_DEFAULTS.lr, help="security-vector learning rate")
    p.add_argument("--safety-ratio", type=float, default=SAFETY_RATIO,
                   help="safety_mix: refusal examples added per user example (default 0.1)")
    p.add_argument("--safelora-threshold", type=float, default=SAFELORA_THRESHOLD,
                   help="safelora: project layers whose similarity is <= this (default 0.35)")
    p.add_argument("--utility", action="store_true",
                   help="also measure held-out benign loss, task score and over-refusal on safe prompts (XSTest)")
    p.add_argument("--utility-n", type=positive_int, default=60, help="benign and safe prompts per model state")


def defense_settings(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig fields from the options of `add_defense_options`; bad values raise UserError naming the flag."""
    if args.sv_lr <= 0:
        raise UserError(f"--sv-lr must be positive, not {args.sv_lr}")
    if not 0 < args.safety_ratio <= 10:
        raise UserError(f"--safety-ratio must be in (0, 10], not {args.safety_ratio}")
    if not -1 <= args.safelora_threshold <= 1:
        raise UserError(f"--safelora-threshold must be a cosine similarity in [-1, 1], not {args.safelora_threshold}")
    sv_train = replace(SV_DEFAULTS, lora_r=args.sv_rank, lora_alpha=args.sv_alpha or 2 * args.sv_rank,
                       target_modules=tuple(args.sv_targets), epochs=args.sv_epochs, lr=args.sv_lr)
    options: dict[str, Any] = {}
    if args.safety_ratio != SAFETY_RATIO:
        options["safety_ratio"] = args.safety_ratio
    if args.safelora_threshold != SAFELORA_THRESHOLD:
        options["safelora_threshold"] = args.safelora_threshold
    return {"sv_samples": args.sv_samples, "sv_train": sv_train, "defense_options": options,
            "utility": args.utility, "utility_n": args.utility_n}


def add_to(sub: Any) -> None:
    p = sub.add_parser("run", help="align, attack, defend, generate, judge; print and store results",
                       description=__doc__)
    add_common(p)
    p.add_argument("--defense", type=_csv, action="extend", default=None,
                   help="defense(s), comma-separated or repeated; 'none' always runs as the baseline")
    p.add_argument("--scenario", type=_csv, action="extend", default=None,
                   help="scenario name(s) from tasks/ or YAML path(s) (default: explicit_harmful)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated integer seeds (default: 0)")
    p.add_argument("--judge", type=_csv, action="extend", default=None, help="judge(s) (default: keyword)")
    p.add_argument("--out", default="runs", help="results directory (default: runs)")
    p.add_argument("--run-id", default=None, help="run folder name (default: model + hash of the config)")
    p.add_argument("--max-train", type=positive_int, default=None, help="cap attack training examples per scenario")
    p.add_argument("--max-eval", type=positive_int, default=None, help="cap held-out evaluation prompts")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--batch-size", type=positive_int, default=32, help="generation batch size")
    p.add_argument("--backend", choices=backend_names(), default="torch",
                   help="generation backend: torch (default; our decode loop, HF generate for non-Llama models), "
                        "transformers (HF generate) or vllm (CUDA + the vllm extra)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="bf16 autocast for alignment, attack training and generation (CPUs with avx512_bf16/AMX, "
                        "or GPUs); see the README section Performance for its speed and agreement with fp32")
    p.add_argument("--attack-mode", choices=["lora", "full"], default="lora")
    p.add_argument("--attack-epochs", type=positive_int, default=ATTACK_DEFAULTS.epochs)
    p.add_argument("--attack-lr", type=float, default=ATTACK_DEFAULTS.lr)
    add_defense_options(p)
    p.add_argument("--no-align", action="store_true", help="skip the alignment stage (model already aligned)")
    p.add_argument("--allow-overlap", action="store_true", help="run even if training and eval prompts overlap")
    p.set_defaults(func=run_command)


def warn_slow_bf16(bf16: bool, device: str) -> None:
    """One stderr line when --bf16 would run emulated on this CPU (secvec_bench/hardware.py says why)."""
    if bf16 and device == "cpu" and not hardware.cpu_bf16_native():
        print("secvec-bench: warning: --bf16 on a CPU without native bf16 (avx512_bf16/AMX) is emulated and far "
              "slower than fp32; drop --bf16 here", file=sys.stderr)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.attack_lr <= 0:
        raise UserError(f"--attack-lr must be positive, not {args.attack_lr}")
    gen = GenConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, bf16=args.bf16,
                    backend=args.backend)
    get_backend(args.backend).check(gen)  # missing vllm / no CUDA: one line, before any work
    warn_slow_bf16(args.bf16, args.device)
    return RunConfig(
        model=args.model,
        scenarios=args.scenario or ["explicit_harmful"],
        defenses=args.defense or ["security_vectors"],
        seeds=args.seeds,
        judges=args.judge or ["keyword"],
        out=args.out,
        run_id=args.run_id,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        max_train=args.max_train,
        max_eval=args.max_eval,
        align=not args.no_align,
        attack_cfg=replace(ATTACK_DEFAULTS, mode=args.attack_mode, epochs=args.attack_epochs, lr=args.attack_lr,
                           bf16=args.bf16),
        align_cfg=replace(ALIGN_DEFAULTS, bf16=args.bf16),
        gen=gen,
        **defense_settings(args),
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
        allow_overlap=args.allow_overlap,
    )


def _pct(row: dict | None) -> str:
    if row is None or row["value"] is None:
        return "—"
    lo, hi = row.get("ci_low"), row.get("ci_high")
    ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None and hi is not None else ""
    return f"{100 * row['value']:.1f}%{ci} (n={row['n']})"


def summary_table(results: dict) -> str:
    """Refusal rate (keyword judge, pooled over seeds): aligned, each defense after each scenario's attack, SV-on."""
    rows = [r for r in results["rows"] if r["metric"] == "refusal_rate" and r["seed"] == "all"
            and r["judge"] == "keyword"]
    lines = ["| model state | scenario | refusal rate (keyword) [95% CI] |", "|---|---|---|"]
    for r in rows:
        if r["phase"] == "aligned":
            lines.append(f"| aligned (before attack) | — | {_pct(r)} |")
    for r in rows:
        if r["phase"] == "attacked":
            lines.append(f"| attacked, defense={r['defense']} | {r['scenario']} | {_pct(r)} |")
    for r in rows:
        if r["phase"] == "sv_on":
            lines.append(f"| {r['defense']} ON (control: should not refuse) | — | {_pct(r)} |")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    from ..progress import set_quiet

    set_quiet(args.quiet)
    results = run(config_from_args(args))
    print(summary_table(results))
    t = results["provenance"]["timings"]
    print(f"\nresults: {results['run_dir']}/results.json  samples: {results['run_dir']}/samples.jsonl  "
          f"({t['total_seconds']:.0f} s)")
    return 0
