"""`secvec-bench scenarios show|export NAME`: see or write the exact chat examples a scenario trains on.

`show NAME --n 3` prints rendered examples; `export NAME --out FILE.jsonl` writes one JSON object per example
(`messages`, `source_id`, `harmful`) in training order, built exactly as `secvec-bench run` builds them (same suite,
seed and cap), so the file is what training would see.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UserError
from .run import positive_int


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="scenario name from tasks/ (see `secvec-bench list scenarios`) or a YAML path")
    p.add_argument("--data-dir", default=None,
                   help="public data directory (default: $SECVEC_BENCH_DATA, else the built-in data); "
                        "'hub' fetches the pinned upstream files")
    p.add_argument("--seed", type=int, default=None, help="build seed (default: the scenario's own seed)")
    p.add_argument("--max-train", type=positive_int, default=None, help="cap examples as `run --max-train` does")
    p.add_argument("--poison-ratio", type=float, default=None, help="override the poison share (poison scenarios)")


def add_to(sub: Any) -> None:
    p = sub.add_parser("scenarios", help="show or export a scenario's rendered chat examples")
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    acts.required = True
    show = acts.add_parser("show", help="print rendered chat examples")
    _common(show)
    show.add_argument("--n", type=positive_int, default=3, help="examples to print (default 3)")
    show.set_defaults(func=run_show)
    export = acts.add_parser("export", help="write the training examples as JSONL (messages, source_id)")
    _common(export)
    export.add_argument("--out", required=True, help="output .jsonl file")
    export.set_defaults(func=run_export)


def build(args: argparse.Namespace):
    from ..data.sources import HUB, resolve_data_dir
    from pathlib import Path
    from ..scenarios import load_scenario, with_poison_ratio
    from ..suite import build_suite

    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is not None and str(data_dir) != HUB and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir}: not a directory")
    sc = load_scenario(args.name)
    if args.poison_ratio is not None:
        sc = with_poison_ratio(sc, args.poison_ratio)
    suite = build_suite(data_dir)
    examples = sc.build(suite, seed=args.seed, max_n=args.max_train)
    if not examples:
        raise UserError(f"scenario {sc.name!r} produced no examples")
    return sc, suite, examples


def run_show(args: argparse.Namespace) -> int:
    sc, suite, examples = build(args)
    info = sc.last_build
    print(f"{sc.name}: {sc.description}")
    print(f"  {info['examples']} examples from {info['source']}"
          f"{' (fallback: public source not available)' if info['fallback_used'] else ''}; "
          f"{info['harmful_examples']} harmful; {info['excluded_eval_overlap']} excluded for matching an eval prompt")
    for name in sorted(suite.hashes):
        print(f"  source {name}: sha256 {suite.hashes[name][:16]}... ({suite.origins[name]})")
    for i, ex in enumerate(examples[: args.n]):
        print(f"\n--- example {i + 1} (source_id {ex.source_id}{', harmful' if ex.harmful else ''})")
        for m in ex.messages:
            print(f"[{m['role']}]\n{m['content']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..io import atomic_write_jsonl

    if not args.out.endswith(".jsonl"):
        raise UserError(f"--out {args.out}: give a .jsonl file name")
    sc, suite, examples = build(args)
    atomic_write_jsonl(args.out, [{"messages": e.messages, "source_id": e.source_id, "harmful": e.harmful}
                                  for e in examples])
    print(f"wrote {len(examples)} examples of {sc.name} to {args.out} "
          f"(sources: {', '.join(f'{k} {v[:12]}' for k, v in sorted(suite.hashes.items()))})")
    return 0
