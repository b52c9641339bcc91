"""Why generation runs under `torch.no_grad` and not `torch.inference_mode` when bf16 autocast is on.

Autocast keeps a bf16 copy of each fp32 weight for the duration of the autocast block, but not in inference mode
and not for weights with requires_grad=False (frozen, as in merged PEFT models), where every call re-casts the
weight (secvec_bench.generation.autocast_cacheable works around the second). For decoding (a few rows per step, every weight used every step) the cast
dominates. This times one Linear(4096, 4096) on one row: autocast under no_grad, autocast under inference_mode,
bf16 weights, and fp32.

    python bench/bench_autocast_cache.py
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: E402


def per_call_ms(module, x, grad_ctx, autocast: bool, calls: int) -> float:
    import torch

    with grad_ctx(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        module(x)
        t0 = time.perf_counter()
        for _ in range(calls):
            module(x)
        return (time.perf_counter() - t0) / calls * 1e3


def _frozen(lin, x, calls: int) -> float:
    """Weights with requires_grad=False (as in every merged PEFT model): autocast does not cache their casts."""
    import torch

    lin.requires_grad_(False)
    try:
        return per_call_ms(lin, x, torch.no_grad, True, calls)
    finally:
        lin.requires_grad_(True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.calls = 1024, 5

    import torch

    contention = common.Contention()
    common.machine()
    lin = torch.nn.Linear(args.size, args.size)
    x = torch.randn(1, args.size)
    lin_bf = torch.nn.Linear(args.size, args.size).to(torch.bfloat16)
    rows = {
        "autocast_no_grad": per_call_ms(lin, x, torch.no_grad, True, args.calls),
        "autocast_inference_mode": per_call_ms(lin, x, torch.inference_mode, True, args.calls),
        "autocast_no_grad_frozen_weights": _frozen(lin, x, args.calls),
        "bf16_weights_inference_mode": per_call_ms(lin_bf, x.bfloat16(), torch.inference_mode, False, args.calls),
        "fp32_inference_mode": per_call_ms(lin, x, torch.inference_mode, False, args.calls),
    }
    payload = {"config": {"linear": [args.size, args.size], "rows": 1, "calls": args.calls, "smoke": args.smoke},
               "ms_per_call": {k: round(v, 3) for k, v in rows.items()},
               "inference_mode_slowdown": round(rows["autocast_inference_mode"] / rows["autocast_no_grad"], 2)}
    common.write_result("autocast_cache" + ("_smoke" if args.smoke else ""), payload, contention,
                        torch.get_num_threads(), args.out_dir)
    print(payload["ms_per_call"], "slowdown", payload["inference_mode_slowdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
