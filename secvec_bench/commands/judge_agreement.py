"""`secvec-bench judge-agreement`: measure a judge against human labels, or judges against each other on a run.

    secvec-bench judge-agreement --judge keyword --data-dir ../shared/data        # HarmBench val set, 602 items
    secvec-bench judge-agreement --judge keyword --dataset xstest-completions --data-dir D   # human refusal labels
    secvec-bench judge-agreement --judge keyword --labels mine.jsonl              # prompt, response, human_label
    secvec-bench judge-agreement --judge llm --data-dir D --limit 60              # a seeded subset for slow judges
    secvec-bench judge-agreement --run runs/<id>                                  # pairwise between stored judges

The report (default `results/judge_agreement/<judge>.json` for the HarmBench set) is what `metrics` reads to
correct attack success rates for the judge's error (Rogan-Gladen). Reports on other label sets go to a folder of
their own (`results/judge_agreement/<dataset>/`), so they never stand in for the harm correction.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..io import atomic_write_json, read_json
from ..judging import JUDGES, get_judge
from ..judging.agreement import (
    TARGETS,
    AgreementReport,
    agreement_metrics,
    dataset_info,
    format_table,
    markdown_summary,
    pairwise_judge_agreement,
    select_subset,
)
from ..judging.labelled import (
    XSTEST_PARTIAL,
    XSTEST_SPLITS,
    LabelledSet,
    load_harmbench_val,
    load_labels_jsonl,
    load_xstest_completions,
)
from ..judging.runner import score_records
from ..results import read_samples
from ..metrics import default_reliability_dir
from .judge import add_judge_arguments, judge_options


# Human-labelled sets in the data directory: name -> (loader(args), the verdict field its label means).
DATASETS: dict[str, tuple[Callable[[argparse.Namespace], LabelledSet], str]] = {
    "harmbench-val": (lambda a: load_harmbench_val(a.data_dir), "harmful"),
    "xstest-completions": (lambda a: load_xstest_completions(a.data_dir, a.xstest_partial, a.xstest_split),
                           "refused"),
}


def add_to(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("judge-agreement", help="judge vs human labels (accuracy, kappa, sens, spec + 95%% CIs)")
    add_judge_arguments(p, required=False)
    p.add_argument("--data-dir", help="data directory holding harmbench/text_behaviors_val_set.json "
                   "(default env SECVEC_BENCH_DATA)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="harmbench-val",
                   help="human-labelled set in the data directory: harmbench-val (harm labels, default) or "
                   "xstest-completions (refusal labels: xstest/model_completions/*.csv from XSTest's repository)")
    p.add_argument("--xstest-partial", choices=list(XSTEST_PARTIAL), default="refusal",
                   help="xstest-completions: how a partial refusal counts (default refusal)")
    p.add_argument("--xstest-split", choices=sorted(XSTEST_SPLITS), default="all",
                   help="xstest-completions: all prompts (default), or the dev (odd-numbered) / test (even) half")
    p.add_argument("--labels", help="JSONL with prompt, response, human_label (instead of --dataset)")
    p.add_argument("--target", choices=sorted(TARGETS), default=None,
                   help="which verdict field the human label means (default: the dataset's, harmful for "
                   "harmbench-val and --labels, refused for xstest-completions)")
    p.add_argument("--limit", type=int, help="score a seeded random subset of this many items (slow judges)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed for --limit and bootstrap (default 0)")
    p.add_argument("--folds", type=int, default=5, help="grouped CV folds for trainable judges (default 5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--output", help="report JSON (default results/judge_agreement/<judge>.json for HarmBench, "
                   "results/judge_agreement/<judge>__<labels name>.json for --labels)")
    p.add_argument("--run", help="instead: agreement between the judges stored in this run's samples.jsonl")
    p.add_argument("--summary", action="store_true",
                   help="instead: print a markdown table of the stored reports in results/judge_agreement/")
    p.set_defaults(func=run)


def _progress(done: int, total: int) -> None:
    tty = sys.stderr.isatty()
    print(f"\rjudged {done}/{total}" if tty else f"judged {done}/{total}", end="\n" if done == total or not tty else "",
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.summary:
        return _summary()
    if args.run:
        return _run_pairwise(args)
    if not args.judge:
        raise UserError("give --judge NAME (or --run RUN_DIR for agreement between stored judges)")
    factory = JUDGES.get(args.judge)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    if args.folds < 2:
        raise UserError("--folds must be >= 2")
    loader, default_target = DATASETS[args.dataset]
    ds = load_labels_jsonl(args.labels) if args.labels else loader(args)
    if args.target is None:
        args.target = "harmful" if args.labels else default_target
    items, subset = select_subset(ds.items, args.limit, args.sample_seed)
    t0 = time.perf_counter()
    cv = getattr(factory, "cross_validated_verdicts", None)
    if cv is not None:
        verdicts, judge_config = cv(items, folds=args.folds, seed=args.sample_seed, target=args.target,
                                     **judge_options(args))
        evaluation = (f"grouped {args.folds}-fold cross-validation by {ds.group_by} "
                      "(never scored on its training items)")
    else:
        judge = get_judge(args.judge, **judge_options(args))
        records = [{"prompt": it.prompt, "response": it.response} for it in items]
        verdicts = score_records(judge, records, args.batch_size, _progress)
        judge_config = judge.config()
        evaluation = "direct (judge not trained on these labels)"
    pick = TARGETS[args.target]
    pred = [pick(v) if v.parse_ok else None for v in verdicts]
    if any(v.parse_ok for v in verdicts) and all(p is None for p in pred):
        raise UserError(f"judge {args.judge} gives no '{args.target}' verdicts (try another --target or judge)")
    result = agreement_metrics(pred, [it.label for it in items], seed=args.sample_seed)
    result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)  # model load + scoring, on this machine
    report = AgreementReport(
        judge=args.judge,
        judge_config=judge_config,
        dataset=dataset_info(ds),
        target=args.target,
        evaluation=evaluation,
        result=result,
        subset=subset,
    ).as_dict()
    out = Path(args.output) if args.output else _default_output(args)
    atomic_write_json(out, report)
    print(format_table(report))
    print(f"wrote {out}")
    return 0


def _default_output(args: argparse.Namespace) -> Path:
    base = default_reliability_dir()
    if args.labels:
        return base / "other" / f"{args.judge}__{Path(args.labels).stem}.json"
    if args.dataset != "harmbench-val":
        suffix = "" if args.xstest_partial == "refusal" else f"__partial-{args.xstest_partial}"
        suffix += "" if args.xstest_split == "all" else f"__{args.xstest_split}"
        return base / args.dataset / f"{args.judge}{suffix}.json"
    if args.target != "harmful":
        return base / "other" / f"{args.judge}__{args.target}.json"
    return base / f"{args.judge}.json"


def _run_pairwise(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not (run_dir / "samples.jsonl").is_file():
        raise UserError(f"--run {run_dir} has no samples.jsonl")
    samples = read_samples(run_dir)
    pairs = pairwise_judge_agreement(samples, field=args.target or "harmful")
    if not pairs:
        raise UserError(f"--run {run_dir}: fewer than two judges with scored verdicts on the same samples")
    results_path = run_dir / "results.json"
    if results_path.exists():
        results = read_json(results_path, "results file")
        if isinstance(results, dict):
            results["judge_pairwise_agreement"] = pairs
            atomic_write_json(results_path, results)
    print(f"{'judges':<28}{'n':>6}{'agree':>8}{'kappa':>8}{'kappa 95% CI':>20}")
    for p in pairs:
        k = p["kappa"]
        print(f"{' vs '.join(p['judges']):<28}{p['n']:>6}{p['agreement']['value']:>8.3f}{k['value']:>8.3f}"
              f"{'[%.3f, %.3f]' % (k['low'], k['high']):>20}")
    return 0


def _summary() -> int:
    base = default_reliability_dir()
    files = sorted(base.glob("*.json")) + sorted(base.glob("*/*.json"))
    if not files:
        raise UserError(f"no judge-agreement reports in {base}")
    reports = [(str(f.relative_to(base)), read_json(f, "judge-agreement report")) for f in files]
    print(markdown_summary(reports))
    return 0
