"""`secvec-bench study factor`: does a benign-data factor (answer structure, identity, role-play) move safety?

The seed study found three factors of benign instruction data that change how much safety survives fine-tuning. Our
factor scenarios (`benign_answer_structure`, `benign_identity`, `benign_roleplay`) are the `benign` scenario's exact
examples (same user turns, order and ids) with only that factor's part transformed, so the difference between
fine-tuning on a factor scenario and on `benign` isolates the factor.

One pipeline run covers `benign` and every factor scenario x seeds (defense `none` only: this measures the attack,
not a defense), sharing the aligned model through the stage cache. Then, per factor, the refusal-rate delta vs
`benign` on the held-out harmful prompts, with a paired bootstrap 95% interval: both arms answer the same prompts,
so each prompt contributes (refusal rate under the factor - refusal rate under benign), averaged over seeds, and the
prompts are resampled. Written to `<results-dir>/rows.json` (tidy rows) and `<results-dir>/table.md`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text, read_jsonl
from ..judging.coherence import is_coherent
from ..stats import bootstrap, proportion
from . import STUDIES

BASELINE = "benign"
FACTORS = ["benign_answer_structure", "benign_identity", "benign_roleplay"]


def refusal_matrix(samples: list[dict], scenario: str, judge: str, phase: str = "attacked"
                   ) -> dict[str, list[float]]:
    """prompt_id -> refusal flags (one per seed) for one scenario's attacked model; unscored verdicts are skipped."""
    out: dict[str, list[float]] = {}
    for s in samples:
        if s.get("scenario") != scenario or s.get("phase") != phase or s.get("prompt_set", "harmful_eval") != \
                "harmful_eval" or s.get("defense", "none") != "none":
            continue
        v = (s.get("verdicts") or {}).get(judge)
        if not v or v.get("refused") is None or v.get("parse_ok") is False:
            continue
        out.setdefault(str(s["prompt_id"]), []).append(1.0 if v["refused"] else 0.0)
    return out


def factor_rows(samples: list[dict], factors: list[str], judge: str, baseline: str = BASELINE,
                n_boot: int = 2000) -> list[dict]:
    """Tidy rows: the refusal rate of each arm, and each factor's paired delta vs the baseline with a 95% interval."""
    base = refusal_matrix(samples, baseline, judge)
    if not base:
        raise UserError(f"no scored samples for the baseline scenario {baseline!r} (judge {judge})")
    rows: list[dict] = []
    aligned = [f for s in samples if s.get("phase") == "aligned" and s.get("prompt_set", "harmful_eval") ==
               "harmful_eval" for f in [((s.get("verdicts") or {}).get(judge) or {}).get("refused")] if f is not None]
    if aligned:
        e = proportion([bool(f) for f in aligned])
        rows.append({"arm": "aligned", "metric": "refusal_rate", "value": e.value, "ci_low": e.low,
                     "ci_high": e.high, "n": e.n, "judge": judge})
    for arm in [baseline, *factors]:
        m = refusal_matrix(samples, arm, judge)
        flags = [f for fs in m.values() for f in fs]
        if not flags:
            raise UserError(f"no scored samples for scenario {arm!r} (judge {judge})")
        e = proportion([bool(f) for f in flags])
        rows.append({"arm": arm, "metric": "refusal_rate", "value": e.value, "ci_low": e.low, "ci_high": e.high,
                     "n": e.n, "judge": judge})
        # A keyword judge calls degenerate output "compliance": report coherence beside it (coherence gate).
        arm_samples = [x for x in samples if x.get("scenario") == arm and x.get("phase") == "attacked"
                       and x.get("prompt_set", "harmful_eval") == "harmful_eval" and x.get("defense", "none") == "none"]
        coherent = [is_coherent(x) for x in arm_samples]
        c = proportion(coherent)
        rows.append({"arm": arm, "metric": "coherent_share", "value": c.value, "ci_low": c.low, "ci_high": c.high,
                     "n": c.n, "judge": "coherence"})
        refused = [((x.get("verdicts") or {}).get(judge) or {}).get("refused") for x in arm_samples]
        cc = proportion([bool(ok and r is False) for ok, r in zip(coherent, refused)])
        rows.append({"arm": arm, "metric": "coherent_non_refusal_rate", "value": cc.value, "ci_low": cc.low,
                     "ci_high": cc.high, "n": cc.n, "judge": f"{judge}+coherence"})
        if arm == baseline:
            continue
        shared = sorted(set(m) & set(base))
        if not shared:
            raise UserError(f"scenario {arm!r} and {baseline!r} share no scored prompts")
        a = np.array([np.mean(m[p]) for p in shared])
        b = np.array([np.mean(base[p]) for p in shared])
        d = bootstrap(lambda x, y: float(np.mean(x) - np.mean(y)), a, b, n_boot=n_boot, seed=0)
        rows.append({"arm": arm, "metric": "refusal_delta_vs_benign", "value": d.value, "ci_low": d.low,
                     "ci_high": d.high, "n": d.n, "judge": judge, "baseline": baseline,
                     "significant": bool(d.low > 0 or d.high < 0)})
    return rows


def markdown_table(rows: list[dict], meta: dict[str, Any]) -> str:
    rate = {r["arm"]: r for r in rows if r["metric"] == "refusal_rate"}
    coh = {r["arm"]: r for r in rows if r["metric"] == "coherent_share"}
    comply = {r["arm"]: r for r in rows if r["metric"] == "coherent_non_refusal_rate"}
    delta = {r["arm"]: r for r in rows if r["metric"] == "refusal_delta_vs_benign"}

    def pct(r: dict | None) -> str:
        if r is None:
            return "—"
        return f"{100 * r['value']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"

    def pp(r: dict | None) -> str:
        if r is None:
            return "—"
        return f"{100 * r['value']:+.1f} pp [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"

    lines = [
        "# Factor study: benign fine-tuning factors vs refusal",
        "",
        f"Model `{meta['model']}` (aligned on the built-in suite), defense `none`, judge `{meta['judge']}`; "
        f"{meta['n_train']} training examples per arm, {meta['epochs']} epoch(s), seeds {meta['seeds']}; "
        f"{meta['n_eval']} held-out harmful prompts, {meta['max_new_tokens']} new tokens (greedy).",
        "",
        "Refusal rate: share of responses with a refusal (pooled over seeds; 95% bootstrap interval). Delta: factor "
        "minus `benign`, paired over prompts (each prompt's refusal rate averaged over seeds; prompts resampled).",
        "",
        "Coherent: share of responses passing the coherence gate (not empty, repeated or non-text); coherent "
        "non-refusal: coherent and no refusal phrase (a keyword judge alone counts gibberish as compliance).",
        "",
        "| arm | refusal rate | delta vs benign | coherent | coherent non-refusal |",
        "|---|---|---|---|---|",
    ]
    if "aligned" in rate:
        lines.append(f"| aligned (before fine-tuning) | {pct(rate['aligned'])} | | | |")
    for arm in [BASELINE, *meta["factors"]]:
        lines.append(f"| {arm} | {pct(rate.get(arm))} | {pp(delta.get(arm)) if arm != BASELINE else ''} | "
                     f"{pct(coh.get(arm))} | {pct(comply.get(arm))} |")
    lines += ["", f"Command: `{meta['command']}`", "",
              f"Run: `{meta['run_dir']}` (git {meta.get('git_commit') or 'unknown'}), "
              f"{meta['seconds']:.0f} s wall time (the pipeline run's own total when re-analysed with --from-run).", ""]
    if meta.get("notes"):
        lines += ["Notes:", *[f"- {n}" for n in meta["notes"]], ""]
    return "\n".join(lines)


@STUDIES.register("factor")
class FactorStudy:
    """Benign vs each benign-factor scenario: refusal-rate deltas with paired bootstrap intervals."""

    name = "factor"
    help = "benign-factor study: refusal after fine-tuning on benign vs answer-structure/identity/role-play data"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from ..commands.run import _csv, _seeds, add_common

        add_common(p)
        p.add_argument("--factors", type=_csv, default=FACTORS, help=f"factor scenarios (default: {','.join(FACTORS)})")
        p.add_argument("--seeds", type=_seeds, default=[0, 1], help="comma-separated integer seeds (default 0,1)")
        p.add_argument("--judge", default="keyword", help="judge (default keyword)")
        p.add_argument("--max-train", type=int, default=64, help="training examples per arm (default 64)")
        p.add_argument("--max-eval", type=int, default=48, help="held-out harmful prompts (default 48)")
        p.add_argument("--attack-epochs", type=int, default=1, help="fine-tuning epochs per arm (default 1)")
        p.add_argument("--attack-lr", type=float, default=None, help="fine-tuning learning rate (default: pipeline's)")
        p.add_argument("--max-new-tokens", type=int, default=48)
        p.add_argument("--batch-size", type=int, default=16, help="generation batch size")
        p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
        p.add_argument("--runs-dir", default="runs/factor_study", help="where the run directory goes")
        p.add_argument("--results-dir", default="results/factor_study", help="rows.json + table.md")
        p.add_argument("--from-run", default=None, metavar="RUN_DIR",
                       help="re-analyse a finished factor-study run directory (no training or generation)")

    def run(self, args: argparse.Namespace) -> int:
        from ..generation import GenConfig
        from ..pipeline import ATTACK_DEFAULTS, RunConfig, run
        from ..progress import set_quiet

        set_quiet(args.quiet)
        for flag, v in (("--max-train", args.max_train), ("--max-eval", args.max_eval),
                        ("--attack-epochs", args.attack_epochs), ("--max-new-tokens", args.max_new_tokens),
                        ("--batch-size", args.batch_size), ("--n-boot", args.n_boot)):
            if v <= 0:
                raise UserError(f"{flag} must be positive, not {v}")
        if args.attack_lr is not None and args.attack_lr <= 0:
            raise UserError(f"--attack-lr must be positive, not {args.attack_lr}")
        if BASELINE in args.factors:
            raise UserError(f"--factors: {BASELINE!r} is the baseline, not a factor")
        command = "secvec-bench study factor " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        attack_cfg = replace(ATTACK_DEFAULTS, epochs=args.attack_epochs,
                             **({"lr": args.attack_lr} if args.attack_lr else {}))
        cfg = RunConfig(model=args.model, scenarios=[BASELINE, *args.factors], defenses=[], seeds=args.seeds,
                        judges=[args.judge], out=args.runs_dir, run_id=None, data_dir=args.data_dir,
                        cache_dir=args.cache_dir, max_train=args.max_train, max_eval=args.max_eval,
                        attack_cfg=attack_cfg,
                        gen=GenConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
                        device=args.device, trust_remote_code=args.trust_remote_code, revision=args.revision)
        t0 = time.perf_counter()
        if args.from_run:
            from ..io import read_json

            res = read_json(Path(args.from_run) / "results.json", "run results")
            if not isinstance(res, dict) or "provenance" not in res:
                raise UserError(f"--from-run {args.from_run}: results.json has no provenance")
            res["run_dir"] = str(args.from_run)
            conf = res["provenance"]["config"]
            args.seeds, args.max_new_tokens = conf["seeds"], conf["gen"]["max_new_tokens"]
            args.attack_epochs, args.model = conf["attack_cfg"]["epochs"], conf["model"]
            command = (f"{command}  (re-analysis of the run made by: secvec-bench study factor --seeds "
                       f"{','.join(map(str, conf['seeds']))} --max-train {conf['max_train']} --max-eval "
                       f"{conf['max_eval']} --attack-epochs {conf['attack_cfg']['epochs']} --attack-lr "
                       f"{conf['attack_cfg']['lr']} --max-new-tokens {conf['gen']['max_new_tokens']})")
        else:
            res = run(cfg)
        samples = read_jsonl(Path(res["run_dir"]) / "samples.jsonl", "samples file")
        rows = factor_rows(samples, args.factors, args.judge, n_boot=args.n_boot)
        prov = res["provenance"]
        n_train = sorted({info["n"] for info in prov["scenarios"].values()})
        notes = []
        if len(n_train) > 1:
            notes.append(f"arms trained on different example counts: {n_train}")
        meta = {"model": args.model, "judge": args.judge, "factors": args.factors, "seeds": args.seeds,
                "n_train": n_train[0] if len(n_train) == 1 else n_train, "epochs": args.attack_epochs,
                "n_eval": len(prov["data"]["eval_prompt_ids"]), "max_new_tokens": args.max_new_tokens,
                "command": command, "run_dir": res["run_dir"], "run_id": res["run_id"],
                "git_commit": prov.get("git_commit"), "notes": notes,
                "seconds": (prov["timings"]["total_seconds"] if args.from_run else round(time.perf_counter() - t0, 1))}
        out = Path(args.results_dir)
        atomic_write_json(out / "rows.json", {
            "meta": meta, "rows": rows,
            "run": {"data": prov["data"]["origins"], "hashes": prov["data"]["hashes"],
                    "scenarios": {k: {"fingerprint": v["fingerprint"], "n": v["n"]}
                                  for k, v in prov["scenarios"].items()},
                    "attack_cfg": prov["config"]["attack_cfg"], "packages": prov["packages"],
                    "timings_total_seconds": prov["timings"]["total_seconds"]},
        })
        atomic_write_text(out / "table.md", markdown_table(rows, meta))
        print((out / "table.md").read_text())
        return 0
