"""`secvec-bench judge`: score stored responses with a judge, without regenerating them.

    secvec-bench judge --judge keyword --input in.jsonl --output out.jsonl   # each line: {prompt, response, ...}
    secvec-bench judge --judge llm --run runs/<run_id>                       # adds verdicts, recomputes results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..judging import JUDGES, get_judge
from ..judging.runner import judge_file, judge_run


def add_judge_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Flags shared by every command that builds a judge (judge, judge-agreement)."""
    p.add_argument("--judge", required=required, help=f"judge name ({', '.join(JUDGES.names())})")
    g = p.add_argument_group("judge options (each judge reads the ones it needs)")
    g.add_argument("--keywords-file", help="keyword judge: YAML with 'prefixes' and 'substrings' (default judges/)")
    g.add_argument("--weights", help="classifier judge: weights file (default: the cache dir, see train-classifier)")
    g.add_argument("--judge-url", help="llm judge: base URL of an OpenAI-compatible server (e.g. http://host:8000/v1)")
    g.add_argument("--judge-model", help="llm judge: with --judge-url, the model name sent to the server; without it, a local "
                   "chat model (built-in name such as smollm2-135m, the default, or a folder of safetensors)")
    g.add_argument(
        "--api-key-env",
        help="llm judge: environment variable holding the API key (default SECVEC_JUDGE_API_KEY); never a literal key",
    )
    g.add_argument("--timeout", type=float, help="llm judge: per-request timeout in seconds (default 60)")
    g.add_argument("--retries", type=int, help="llm judge: retries per request on errors (default 3)")
    g.add_argument("--concurrency", type=int, help="llm judge: parallel HTTP requests (default 4)")
    g.add_argument("--max-new-tokens", type=int, help="llm judge: tokens to generate per verdict (default 160)")
    g.add_argument("--judge-max-chars", type=int,
                   help="llm judge: clip prompt and response to this many characters each (default 2000)")
    g.add_argument("--llm-scoring", choices=("generate", "logprob"),
                   help="llm judge: 'generate' (reason then '#thescore: N', parsed; default) or 'logprob' (local "
                        "model only: the most probable of 1-5 after '#thescore:', for models too small to follow "
                        "the format)")


def judge_options(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "keywords_file",
        "weights",
        "judge_url",
        "judge_model",
        "api_key_env",
        "timeout",
        "retries",
        "concurrency",
        "max_new_tokens",
        "judge_max_chars",
        "llm_scoring",
    )
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _progress(done: int, total: int) -> None:
    tty = sys.stderr.isatty()
    print(f"\rjudged {done}/{total}" if tty else f"judged {done}/{total}", end="\n" if done == total or not tty else "",
          file=sys.stderr, flush=True)


def add_to(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("judge", help="score stored responses with a judge (a JSONL file or a run directory)")
    add_judge_arguments(p)
    p.add_argument("--input", help="JSONL with 'prompt' and 'response' per line")
    p.add_argument("--output", help="where to write the input lines plus a 'verdict' field (JSONL)")
    p.add_argument("--run", help="run directory: adds verdicts to samples.jsonl and recomputes results.json")
    p.add_argument("--batch-size", type=int, default=16, help="responses per judge call (default 16)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.input) == bool(args.run):
        raise UserError("give exactly one of --input (with --output) or --run")
    if args.input and not args.output:
        raise UserError("--input needs --output")
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    JUDGES.get(args.judge)  # unknown name -> one-line error before any file is read
    if args.input:
        if not Path(args.input).exists():
            raise UserError(f"input file not found: {args.input}")
        judge = get_judge(args.judge, **judge_options(args))
        rows = judge_file(judge, Path(args.input), Path(args.output), args.batch_size, _progress)
        unscored = sum(1 for r in rows if not r["verdict"]["parse_ok"])
        print(f"wrote {len(rows)} verdicts ({unscored} unscored) to {args.output}")
        return 0
    if not (Path(args.run) / "samples.jsonl").is_file():
        raise UserError(f"--run {args.run} has no samples.jsonl")
    judge = get_judge(args.judge, **judge_options(args))
    samples, results = judge_run(judge, Path(args.run), args.batch_size, _progress)
    print(f"judged {len(samples)} samples with {judge.name}; {len(results['rows'])} result rows in {args.run}/results.json")
    return 0
