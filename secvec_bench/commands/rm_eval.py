"""`secvec-bench rm-eval`: check reward models against human safety labels, or against a run's own answers.

    secvec-bench rm-eval --rm length --rm refusal --rm embedding_bt --rm implicit --dataset hh-rlhf-harmless \\
        --data-dir ../shared/data
    secvec-bench rm-eval --rm seqcls --rm-model path/to/reward-model --dataset harmbench-val
    secvec-bench rm-eval --rm embedding_bt --run out/<run_id>

Null baselines (length, refusal, random) are always scored beside the requested RMs, because a margin over them is
what says an RM measures safety rather than a shortcut. Metric definitions and the results-file schema are in
`secvec_bench.rm.evaluate`; the run mode is `secvec_bench.rm.run_eval`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text
from ..rm import RMS, get_rm
from ..rm.base import Pair
from ..rm.datasets import (
    PAIRWISE_SPLIT, POINTWISE_SPLIT, SplitSpec, assert_disjoint, data_hash, load_dataset, split_by_group,
)
from ..rm.evaluate import NULL_BASELINES, format_markdown, format_table, rows_for, score_units
from ..rm.run_eval import evaluate_run, format_run_table

DEFAULT_MAX_PAIRS = 300
DEFAULT_MAX_DEV = 100
DEFAULT_MAX_PAIRS_SLOW = 40  # implicit / seqcls: two 135M-LM passes per response cost ~2 s of CPU on this machine
DEFAULT_MAX_DEV_SLOW = 20
DEFAULT_BT_MAX_TRAIN = 500
RESULTS_DIR = Path("results") / "rm"


def add_to(sub: Any) -> None:
    p = sub.add_parser("rm-eval", help="evaluate reward models against human safety labels or a run's answers",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rm", action="append", default=[], metavar="NAME",
                   help=f"reward model (repeatable): {', '.join(RMS.names())}")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", metavar="NAME|FILE",
                      help="hh-rlhf-harmless, harmbench-val, or a JSONL of prompt,chosen,rejected / "
                           "prompt,response,human_label")
    what.add_argument("--run", metavar="RUN_DIR", help="score the stored answers of a run directory")
    p.add_argument("--data-dir", help="folder of public datasets (default: env SECVEC_BENCH_DATA)")
    p.add_argument("--max-pairs", type=int, default=DEFAULT_MAX_PAIRS,
                   help=f"evaluate on at most N pairs/responses of the eval split, a seeded sample "
                        f"(default {DEFAULT_MAX_PAIRS}; 0 = all)")
    p.add_argument("--max-dev", type=int, default=DEFAULT_MAX_DEV,
                   help=f"at most N dev units for temperature/threshold fitting (default {DEFAULT_MAX_DEV}; 0 = all)")
    p.add_argument("--max-pairs-slow", type=int, default=DEFAULT_MAX_PAIRS_SLOW,
                   help=f"slow RMs (implicit, seqcls) score only the first N eval units of the same seeded order, and "
                        f"are compared with the baselines on exactly those (default {DEFAULT_MAX_PAIRS_SLOW}; 0 = all)")
    p.add_argument("--max-dev-slow", type=int, default=DEFAULT_MAX_DEV_SLOW,
                   help=f"slow RMs: at most N dev units (default {DEFAULT_MAX_DEV_SLOW}; 0 = all)")
    p.add_argument("--seed", type=int, default=0, help="split, subsample, bootstrap and random-RM seed")
    p.add_argument("--out", help="results file (default results/rm/<dataset>.json, or RUN_DIR/rm_eval.json)")
    p.add_argument("--batch-size", type=int, default=16)
    g = p.add_argument_group("RM options")
    g.add_argument("--rm-model", help="seqcls: hub id or folder of an AutoModelForSequenceClassification RM")
    g.add_argument("--rm-label-index", type=int, default=0, help="seqcls: logit column used as reward")
    g.add_argument("--policy", help="implicit: policy model (folder, hub id or smollm2-135m)")
    g.add_argument("--reference", help="implicit: reference model (default smollm2-135m)")
    g.add_argument("--policy-system", help="implicit: system prompt on the policy side")
    g.add_argument("--reference-system", help="implicit: system prompt on the reference side")
    g.add_argument("--max-length", type=int, default=1024, help="seqcls: max tokens per text (cut from the left)")
    g.add_argument("--max-prompt-tokens", type=int, default=96, help="implicit: keep the prompt's last N tokens")
    g.add_argument("--max-response-tokens", type=int, default=64, help="implicit: keep the response's first N tokens")
    g.add_argument("--bt-weights", help="embedding_bt: load a trained head (JSON) instead of training")
    g.add_argument("--bt-train", default="hh-rlhf-harmless",
                   help="embedding_bt on a pointwise dataset: pairwise dataset to train on (default hh-rlhf-harmless)")
    g.add_argument("--bt-max-train", type=int, default=DEFAULT_BT_MAX_TRAIN,
                   help=f"embedding_bt: train on at most N pairs, a seeded sample of the train split "
                        f"(default {DEFAULT_BT_MAX_TRAIN}; 0 = all)")
    g.add_argument("--bt-max-length", type=int, default=128,
                   help="embedding_bt: MiniLM tokens per 'prompt\\nresponse' text, cut from the left (default 128)")
    g.add_argument("--bt-save", help="embedding_bt: where to save the trained head "
                                     "(default results/rm/embedding_bt.<dataset>.json)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    p.set_defaults(func=run)


def _rm_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {
        "model": args.rm_model, "label_index": args.rm_label_index, "policy": args.policy,
        "reference": args.reference, "policy_system": args.policy_system, "reference_system": args.reference_system,
        "max_length": args.max_length, "max_prompt_tokens": args.max_prompt_tokens,
        "max_response_tokens": args.max_response_tokens, "embed_max_length": args.bt_max_length,
        "bt_weights": args.bt_weights, "seed": args.seed,
        "trust_remote_code": args.trust_remote_code, "batch_size": args.batch_size,
    }
    return {k: v for k, v in opts.items() if v is not None}


def _names(args: argparse.Namespace) -> list[str]:
    if not args.rm:
        raise UserError("give at least one --rm NAME")
    for n in args.rm:
        RMS.get(n)  # unknown name -> UserError listing the known ones
    out = list(dict.fromkeys(args.rm))
    return out + [n for n in NULL_BASELINES if n not in out]


def _subsample(units: list, n: int, seed: int) -> list:
    """A seeded random order of the units, cut to n (0 = all). Any prefix of it is itself a random sample, which is
    what lets slow RMs score a prefix and still be compared fairly."""
    order = np.random.default_rng(seed).permutation(len(units))
    if n > 0:
        order = order[:n]
    return [units[i] for i in order]


def _cap(units: list, n: int) -> list:
    return units if n <= 0 else units[:n]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _progress(name: str):
    """Log at every quarter of a slow scoring job (one running for over 10 s), so a long CPU run shows it is alive."""
    marks: set[int] = set()
    t0 = time.perf_counter()

    def report(done: int, total: int) -> None:
        q = 4 * done // max(1, total)
        if q not in marks and 0 < q < 4 and time.perf_counter() - t0 > 10:
            marks.add(q)
            _log(f"  {name}: {done}/{total} texts scored")

    return report


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _train_pairs(args: argparse.Namespace, ds_kind: str, split: dict[str, list]) -> list[Pair]:
    if ds_kind == "pairwise":
        pairs = split["train"]
    else:
        train = load_dataset(args.bt_train, args.data_dir)
        if train.kind != "pairwise":
            raise UserError(f"--bt-train {args.bt_train} must be a pairwise dataset (prompt, chosen, rejected)")
        pairs = train.pairs
    return _subsample(pairs, args.bt_max_train, args.seed + 1)


def run(args: argparse.Namespace) -> int:
    for flag in ("max_pairs", "max_dev", "max_pairs_slow", "max_dev_slow", "bt_max_train"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 0")
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    if args.run:
        return _run_mode(args)
    names = _names(args)
    ds = load_dataset(args.dataset, args.data_dir)
    spec: SplitSpec = PAIRWISE_SPLIT if ds.kind == "pairwise" else POINTWISE_SPLIT
    spec = SplitSpec(spec.train, spec.dev, args.seed)
    split = split_by_group(ds.units(), spec)
    n_eval_total = len(split["eval"])
    dev = _subsample(split["dev"], args.max_dev, args.seed)
    ev = _subsample(split["eval"], args.max_pairs, args.seed)
    if not ev:
        raise UserError(f"dataset {ds.name}: the eval split is empty ({len(ds)} records)")
    _log(f"rm-eval: {ds.name} ({ds.kind}): {len(ds)} records, {ds.skipped} skipped; "
         f"train {len(split['train'])}, dev {len(dev)}/{len(split['dev'])}, eval {len(ev)}/{n_eval_total}")
    opts = _rm_options(args)
    dev_scores: dict[str, np.ndarray] = {}
    eval_scores: dict[str, np.ndarray] = {}
    configs: dict[str, Any] = {}
    logit: dict[str, bool] = {}
    timings: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        rm = get_rm(name, **opts)
        if hasattr(rm, "fit") and not getattr(rm, "is_fitted", True):
            train = _train_pairs(args, ds.kind, split)
            # the guarantee that makes a trained RM's numbers mean anything: no evaluated prompt was trained on
            assert_disjoint(train, ev)
            assert_disjoint(train, dev)
            _log(f"  {name}: training on {len(train)} pairs")
            rm.fit(train)
            save = Path(args.bt_save) if args.bt_save else RESULTS_DIR / f"{name}.{ds.name}.json"
            if hasattr(rm, "save"):
                rm.save(save)
                _log(f"  {name}: head saved to {save}")
        slow = bool(getattr(rm, "slow", False))
        rm_dev = _cap(dev, args.max_dev_slow) if slow else dev
        rm_ev = _cap(ev, args.max_pairs_slow) if slow else ev
        unit = "pairs" if ds.kind == "pairwise" else "items"
        _log(f"  {name}: scoring {len(rm_dev)} dev + {len(rm_ev)} eval {unit}{' (slow RM cap)' if slow else ''}")
        empty = np.zeros((0, 2) if ds.kind == "pairwise" else 0)
        dev_scores[name] = (score_units(rm, rm_dev, args.batch_size, progress=_progress(f"{name} dev"))
                            if rm_dev else empty)
        eval_scores[name] = score_units(rm, rm_ev, args.batch_size, progress=_progress(name))
        configs[name] = rm.config()
        logit[name] = bool(getattr(rm, "reward_is_logit", False))
        timings[name] = round(time.perf_counter() - t0, 2)
        _log(f"  {name}: done in {timings[name]:.1f} s")
    labels = (lambda us: np.array([u.harmful for u in us], dtype=bool)) if ds.kind == "pointwise" else None
    rows = rows_for(
        ds.name, ds.kind, dev_scores, eval_scores, logit,
        dev_labels=labels(dev) if labels else None, eval_labels=labels(ev) if labels else None,
        categories=[u.category for u in ev] if ds.has_categories else None, seed=args.seed,
    )
    out = Path(args.out) if args.out else RESULTS_DIR / f"{ds.name}.json"
    atomic_write_json(out, {
        "schema_version": 1, "kind": "rm-eval", "dataset": ds.name, "dataset_kind": ds.kind, "source": ds.source,
        "dataset_sha256": ds.sha256, "skipped_records": ds.skipped,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": _git_commit(),
        "split": {"seed": args.seed, "train": spec.train, "dev": spec.dev, "by": "prompt group (seeded hash)",
                  "n_train": len(split["train"]), "n_dev": len(dev), "n_eval": len(ev), "n_eval_total": n_eval_total,
                  "max_pairs": args.max_pairs, "max_dev": args.max_dev, "max_pairs_slow": args.max_pairs_slow,
                  "max_dev_slow": args.max_dev_slow, "eval_sha256": data_hash(ev),
                  "note": "slow RMs score the first max_pairs_slow eval units of the same seeded order"},
        "rms": configs, "timings_s": timings, "rows": [r.as_dict() for r in rows],
    })
    title = f"{ds.name} ({ds.kind}), eval n={len(ev)}"
    atomic_write_text(out.with_suffix(".md"), format_markdown(rows, ds.kind, title))
    print(f"{title}, 95% bootstrap intervals")
    print(format_table(rows, ds.kind))
    _log(f"rm-eval: wrote {out} and {out.with_suffix('.md')}")
    return 0


def _run_mode(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.rm)) if args.rm else []
    if not names:
        raise UserError("give at least one --rm NAME")
    for n in names:
        RMS.get(n)
    run_dir = Path(args.run)
    opts = _rm_options(args)
    rms = {}
    for name in names:
        rm = get_rm(name, **opts)
        if hasattr(rm, "fit") and not getattr(rm, "is_fitted", True):
            pairs = _train_pairs(args, "pointwise", {})
            _log(f"  {name}: training on {len(pairs)} pairs of {args.bt_train}")
            rm.fit(pairs)
        rms[name] = rm
    rows = evaluate_run(run_dir, rms, seed=args.seed, batch_size=args.batch_size)
    out = Path(args.out) if args.out else run_dir / "rm_eval.json"
    atomic_write_json(out, {
        "schema_version": 1, "kind": "rm-eval-run", "run": run_dir.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": _git_commit(),
        "rms": {n: rm.config() for n, rm in rms.items()}, "rows": [r.as_dict() for r in rows],
    })
    print(format_run_table(rows))
    _log(f"rm-eval: wrote {out}")
    return 0
