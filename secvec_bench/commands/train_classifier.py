"""`secvec-bench train-classifier`: fit the classifier judge's head on human-labelled completions.

    secvec-bench train-classifier --data-dir ../shared/data          # HarmBench val set, majority of 3 labels
    secvec-bench train-classifier --labels mine.jsonl --weights w.json

Weights go to the cache dir ($SECVEC_BENCH_CACHE or ~/.cache/secvec-bench)/judges/ unless --weights is given. To
know how good the result is, run `judge-agreement --judge classifier`, which cross-validates by behaviour.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..judging.classifier import DEFAULT_C, default_weights_path, save_weights, train
from ..judging.labelled import load_harmbench_val, load_labels_jsonl


def add_to(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-classifier", help="train the classifier judge on human-labelled completions")
    p.add_argument("--data-dir", help="data directory with harmbench/text_behaviors_val_set.json "
                   "(default env SECVEC_BENCH_DATA)")
    p.add_argument("--labels", help="JSONL with prompt, response, human_label (instead of HarmBench)")
    p.add_argument("--weights", help=f"output weights JSON (default {default_weights_path()})")
    p.add_argument("--C", dest="c", type=float, default=DEFAULT_C, help="inverse L2 strength (default 1.0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.c > 0:
        raise UserError("--C must be > 0")
    ds = load_labels_jsonl(args.labels) if args.labels else load_harmbench_val(args.data_dir)
    items = [it for it in ds.items if it.response.strip()]
    doc = train(items, ds.sha256, ds.origin, args.c)
    out = Path(args.weights) if args.weights else default_weights_path()
    save_weights(doc, out)
    td = doc["training_data"]
    print(f"trained on {td['n']} items ({td['n_harmful']} harmful) from {ds.origin} (sha256 {ds.sha256[:12]}); "
          f"wrote {out}")
    return 0
