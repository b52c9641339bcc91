"""LoRA training throughput vs this CPU's measured matmul peak, and whether bf16 changes the training result.

1. Peak: best-of-N time of a 2048x2048 @ 2048x2048 torch.mm, fp32 and bf16 (2*n^3 FLOP each).
2. LoRA attack step on SmolLM2 (the pipeline's LoRA: r16 on q,k,v,o,gate,up,down; AdamW), batch 8 x 128 tokens of
   real text, the loss on the second half of each row (prompt/answer split as in chat training), through the same
   `answer_loss` the trainer uses, under the trainer's `training_speedups`; fp32 and bf16 autocast; and the same at
   a larger step (`--large`, default 16 x 256 tokens), since the share of peak a 576-wide model can reach grows
   with the rows per matmul. Achieved FLOP/s = counted FLOP / step time, where
   (T = tokens in the batch, T_a = labelled tokens, L = sequence length, B = batch):
     frozen linear layers   forward 2*N_lin*T + backward to inputs 2*N_lin*T  (no weight gradients: frozen)
     LoRA A,B               6 * r * (d_in + d_out) * T per adapted module       (forward, input grad, weight grad)
     attention scores       forward 4*B*L^2*d_attn, backward 8*B*L^2*d_attn per layer (QK^T and AV, no causal discount)
     LM head (tied, frozen) forward 2*V*d*T_a + backward 2*V*d*T_a              (only labelled positions projected)
   Elementwise work (norms, activations, softmax, optimizer) is not counted: it is bandwidth-bound, and counting it
   would flatter the share. The usual 6*N*T rule overcounts LoRA training by ~1/3 (no weight gradients).
3. bf16 vs fp32 within seed noise: `train()` on the same data for a few steps, fp32 seeds 0, 1 and 2, bf16 seed 0;
   bf16 is within noise when |loss_bf16 - loss_fp32| (seed 0; held-out and final training loss) is no larger than
   the widest gap between two fp32 seeds. The held-out loss is also scored in fp32 for every run
   (`held_out_loss_fp32_eval`), so a difference can be traced to bf16 training or to bf16 scoring.

    python bench/bench_training.py           # full
    python bench/bench_training.py --smoke   # tiny sizes: checks the script, numbers meaningless
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common  # noqa: E402


def matmul_peak(n: int, dtype_name: str, iters: int, repeat: int) -> dict[str, Any]:
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: oneDNN kernel selection

    def loop():
        for _ in range(iters):
            torch.mm(a, b)

    best, _ = common.timed(loop, repeat=repeat)
    flops = 2 * n**3 * iters
    return {"n": n, "dtype": dtype_name, "seconds_best": round(best, 4), "gflops": round(flops / best / 1e9, 1)}


def model_shape_rate(config, tokens: int, dtype_name: str, repeat: int = 3) -> dict[str, Any]:
    """GFLOP/s of torch.mm on the frozen linears' own shapes in one step: forward [T, d_in] x [d_in, d_out] and the
    backward to the inputs [T, d_out] x [d_out, d_in], for q, k, v, o, gate, up, down (T = tokens in the batch).

    Why: the 2048^2 peak is what large square matmuls reach; a 576-wide model's matmuls are thin, and their own
    rate bounds what any training loop can achieve on them. The step's share of this rate separates "the matmuls
    are slow at these shapes" from "time goes outside the matmuls".
    """
    import torch

    c = config
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    d, kv, ffn = c.hidden_size, c.num_key_value_heads * hd, c.intermediate_size
    shapes = [(d, c.num_attention_heads * hd), (d, kv), (d, kv), (c.num_attention_heads * hd, d), (d, ffn), (d, ffn),
              (ffn, d)]
    dtype = getattr(torch, dtype_name)
    pairs = []
    for d_in, d_out in shapes:
        for a, b in (((tokens, d_in), (d_in, d_out)), ((tokens, d_out), (d_out, d_in))):
            pairs.append((torch.randn(*a).to(dtype), torch.randn(*b).to(dtype)))
    for a, b in pairs:  # warm-up: oneDNN kernel selection per shape
        torch.mm(a, b)

    def loop():
        for a, b in pairs:
            torch.mm(a, b)

    best, _ = common.timed(loop, repeat=repeat)
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)
    return {"tokens": tokens, "dtype": dtype_name, "seconds_best": round(best, 5), "gflops": round(flops / best / 1e9, 1)}


def step_flops(model, batch: int, seq: int, labelled: int) -> dict[str, int]:
    """FLOP of one LoRA training step by the formula in the module docstring.

    `model` is the PEFT-wrapped base model: its frozen linears are the `nn.Linear`s outside the adapters (PEFT keeps
    them as `<name>.base_layer`), and each adapter's A and B are `nn.Linear`s under `.lora_A.`/`.lora_B.`, whose
    weights hold r*d_in + r*d_out parameters, the r*(d_in + d_out) of the formula.
    """
    import torch

    c = model.config
    d, layers = c.hidden_size, c.num_hidden_layers
    head_dim = getattr(c, "head_dim", None) or d // c.num_attention_heads
    d_attn = c.num_attention_heads * head_dim
    tokens = batch * seq
    n_lin, lora = 0, 0
    for name, mod in model.get_decoder().named_modules():
        if isinstance(mod, torch.nn.Linear):
            if ".lora_A." in f".{name}." or ".lora_B." in f".{name}.":
                lora += mod.in_features * mod.out_features
            else:
                n_lin += mod.in_features * mod.out_features
    vocab = model.get_output_embeddings().weight.shape[0]
    parts = {
        "frozen_linear": 4 * n_lin * tokens,
        "lora": 6 * lora * tokens,
        "attention": 12 * batch * seq * seq * d_attn * layers,
        "lm_head": 4 * vocab * d * labelled,
    }
    parts["total"] = sum(parts.values())
    parts["n_linear_params"] = n_lin
    parts["n_lora_params"] = lora
    return parts


def real_batch(tok, batch: int, seq: int):
    """B rows of exactly `seq` tokens of real chat text; labels on the second half of each row."""
    import torch

    from secvec_bench.chat import IGNORE, render
    from secvec_bench.suite import build_suite

    rows = build_suite(None).benign["attack"]
    stream: list[int] = []
    for r in rows:
        msgs = [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
        stream += tok(render(tok, msgs), add_special_tokens=False)["input_ids"]
    need = batch * seq
    while len(stream) < need:
        stream += stream
    ids = torch.tensor(stream[:need]).view(batch, seq)
    labels = ids.clone()
    labels[:, : seq // 2] = IGNORE
    return ids, torch.ones_like(ids), labels


def profile_ops(step, top: int = 8) -> list[dict[str, Any]]:
    """Where one step's time goes: the ops with the most self CPU time (matmuls vs the rest = the bottleneck)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1e3, 2),
             "share": round(e.self_cpu_time_total / total, 4)} for e in events[:top]]


def lora_steps(ref_path, batch: int, seq: int, steps: int, bf16: bool) -> dict[str, Any]:
    import torch
    from peft import get_peft_model

    from secvec_bench.models import load_model, load_tokenizer
    from secvec_bench.training import TrainConfig, answer_loss, autocast_context, lora_config, training_speedups

    cfg = TrainConfig(bf16=bf16)
    tok = load_tokenizer(ref_path)
    torch.manual_seed(0)
    model = get_peft_model(load_model(ref_path), lora_config(cfg))
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr)
    ids, mask, labels = real_batch(tok, batch, seq)
    labelled = int((labels[:, 1:] != -100).sum())
    model.train()

    def step():
        with autocast_context(bf16):
            loss = answer_loss(model, ids, mask, labels)
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return float(loss.detach())

    with training_speedups(model, bf16):  # as train() does
        step()  # warm-up (allocations, oneDNN primitive cache)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        top_ops = profile_ops(step)
    best, median = min(times), sorted(times)[len(times) // 2]
    flops = step_flops(model.get_base_model(), batch, seq, labelled)
    return {"dtype": "bf16" if bf16 else "fp32", "batch": batch, "seq_len": seq, "labelled_tokens": labelled,
            "steps_timed": steps, "step_seconds_best": round(best, 4), "step_seconds_median": round(median, 4),
            "tokens_per_second": round(batch * seq / median, 1), "flop_per_step": flops,
            "achieved_gflops": round(flops["total"] / median / 1e9, 1), "top_ops_by_self_time": top_ops}


def seed_noise(ref_path, steps: int, batch: int, max_len: int, with_bf16: bool = True) -> dict[str, Any]:
    """Short `train()` runs: fp32 seeds 0, 1 and 2, bf16 seed 0, on the same data; final and held-out loss.

    `with_bf16=False` (a CPU without native bf16, where emulated bf16 matmuls run hundreds of times slower than
    fp32) keeps the fp32 runs, which still measure the seed noise, and records why the comparison is absent.
    """
    from peft import get_peft_model

    from secvec_bench.models import load_model, load_tokenizer
    from secvec_bench.suite import build_suite
    from secvec_bench.training import TrainConfig, lora_config, mean_loss, train

    suite = build_suite(None)

    def conv(r):
        return [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]

    train_convs = [conv(r) for r in suite.benign["attack"][: steps * batch]]
    held_out = [conv(r) for r in suite.benign["eval"]]
    tok = load_tokenizer(ref_path)
    out = {}
    runs = (("fp32_seed0", 0, False), ("fp32_seed1", 1, False), ("fp32_seed2", 2, False)) + (
        (("bf16_seed0", 0, True),) if with_bf16 else ())
    for label, seed, bf16 in runs:
        cfg = TrainConfig(epochs=1, batch_size=batch, max_len=max_len, seed=seed, bf16=bf16)
        model = get_peft_model(load_model(ref_path), lora_config(cfg))
        st = train(model, tok, train_convs, cfg, desc=label)
        out[label] = {"steps": st.steps, "seconds": round(st.seconds, 2), "final_train_loss": round(st.losses[-1], 5),
                      "held_out_loss": round(mean_loss(model, tok, held_out, max_len=max_len, bf16=bf16), 5),
                      # the same model scored in fp32: separates what bf16 training changed from bf16 scoring
                      "held_out_loss_fp32_eval": round(mean_loss(model, tok, held_out, max_len=max_len), 5)}
    if not with_bf16:
        return {"runs": out, "skipped": "no native bf16 on this CPU (oneDNN reports none): bf16 not compared"}
    verdict = {}
    for key in ("final_train_loss", "held_out_loss", "held_out_loss_fp32_eval"):
        fp32 = [out[f"fp32_seed{i}"][key] for i in range(3)]
        noise = max(fp32) - min(fp32)  # the widest gap between two fp32 seeds
        diff = abs(out["bf16_seed0"][key] - out["fp32_seed0"][key])
        verdict[key] = {"bf16_minus_fp32": round(diff, 5), "seed_noise": round(noise, 5), "within_noise": diff <= noise}
    return {"runs": out, "comparison": verdict}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--matmul-iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="rows of the step (and of the bf16-vs-seed check)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--large", default="16x256", help="a second, larger step BxL (empty: none): how the share of "
                    "peak grows with tokens per step")
    ap.add_argument("--steps", type=int, default=5, help="timed LoRA steps per dtype (after one warm-up)")
    ap.add_argument("--noise-steps", type=int, default=8, help="train() steps per run in the bf16-vs-seed check")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.matmul_n, args.matmul_iters, args.batch, args.seq_len, args.steps, args.noise_steps = 512, 2, 2, 32, 1, 1
        args.large = "2x64"

    import torch

    contention = common.Contention()
    common.machine()  # sets threads
    threads = torch.get_num_threads()
    ref, _ = common.resolve_smollm2(args.cache_dir)
    dtypes = ["float32", "bfloat16"] if common.bf16_supported() else ["float32"]
    peaks = {dt: matmul_peak(args.matmul_n, dt, args.matmul_iters, repeat=3) for dt in dtypes}
    rows = []
    from transformers import AutoConfig

    model_cfg = AutoConfig.from_pretrained(ref.path)
    sizes = [(args.batch, args.seq_len)]
    if args.large:
        b, l = (int(v) for v in args.large.lower().split("x"))
        sizes.append((b, l))
    shape_rates = {}
    for dt in dtypes:
        for b, l in sizes:
            rate = model_shape_rate(model_cfg, b * l, dt)
            shape_rates[f"{dt}@{b * l}"] = rate
            r = lora_steps(ref.path, b, l, args.steps, bf16=dt == "bfloat16")
            r["share_of_matmul_peak"] = round(r["achieved_gflops"] / peaks[dt]["gflops"], 4)
            r["model_shape_matmul_gflops"] = rate["gflops"]
            r["share_of_model_shape_rate"] = round(r["achieved_gflops"] / rate["gflops"], 4)
            rows.append(r)
    noise = seed_noise(ref.path, args.noise_steps, args.batch, max_len=256,  # the pipeline default
                       with_bf16="bfloat16" in dtypes)
    payload = {
        "config": {"model": "smollm2-135m", "lora": "r16 alpha32 on q,k,v,o,gate,up,down", "optimizer": "AdamW",
                   "smoke": args.smoke},
        "matmul_peak": peaks,
        "matmul_at_model_shapes": shape_rates,
        "lora_step": rows,
        "target_bf16_share_of_peak": 0.6,
        "bf16_vs_seed_noise": noise,
    }
    common.write_result("training" + ("_smoke" if args.smoke else ""), payload, contention, threads, args.out_dir)
    for dt, p in peaks.items():
        print(f"matmul {p['n']}^2 {dt}: {p['gflops']} GFLOP/s")
    for r in rows:
        print(f"LoRA step {r['dtype']}: {r['tokens_per_second']} tok/s, {r['achieved_gflops']} GFLOP/s "
              f"= {100 * r['share_of_matmul_peak']:.1f}% of peak, {100 * r['share_of_model_shape_rate']:.1f}% of "
              f"torch.mm on the model's own shapes ({r['model_shape_matmul_gflops']} GFLOP/s)")
    print(noise.get("comparison", noise.get("skipped")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
