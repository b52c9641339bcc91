"""Generation throughput: our decode loop vs batched HF generate vs the naive per-prompt loop vs llama.cpp, one process.

Same prompts (the pipeline's held-out harmful prompts, built-in data unless --data-dir), same chat template (the
tokenizer's, rendered once per prompt by secvec_bench.chat.prompt_text), greedy, at most --max-new-tokens new
tokens, stopping at end-of-turn. Throughput counts the new tokens each generator actually produced (up to its end of
turn) over the wall time including prompt processing, so padding and finished rows in a batch are a cost, not a
credit. The naive loop (one `model.generate` per prompt, as the harmful-fine-tuning codebases do) is timed on a
subset, since its rate per prompt does not depend on how many prompts follow.

Also measured, because bf16 is only worth it if it does not change results: fp32 vs bf16 greedy agreement (identical
responses, common token prefix) and the keyword-judge refusal rate of each.

Ours is the pipeline's default backend `torch` (secvec_bench.decode); batched HF generate (backend `transformers`, what
the pipeline used before, and still its path for non-Llama models) is timed at the largest batch beside it.

    python bench/bench_generation.py            # full: 64 prompts, 64 tokens, batches 32 and 64, fp32 and bf16
    python bench/bench_generation.py --smoke    # 8 prompts, 8 tokens: checks the script, numbers meaningless
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common  # noqa: E402  (bench/common.py; puts the repo on sys.path)


GENERATORS = {"torch": "ours (static-cache decode loop)", "transformers": "batched HF generate"}


def run_ours(model, tok, prompts, max_new: int, batch: int, bf16: bool, backend: str = "torch") -> dict[str, Any]:
    """Our generator through the pipeline's own entry point; backend `transformers` is the batched HF baseline."""
    from secvec_bench.generation import GenConfig, GenStats, generate

    stats = GenStats()
    cfg = GenConfig(max_new_tokens=max_new, batch_size=batch, bf16=bf16, backend=backend)
    responses = generate(model, tok, prompts, cfg, desc=f"{backend} b{batch} {'bf16' if bf16 else 'fp32'}",
                         stats=stats)
    return {"generator": GENERATORS[backend], "backend": backend, "batch_size": batch,
            "dtype": "bf16" if bf16 else "fp32",
            "prompts": len(prompts), "new_tokens": stats.new_tokens, "seconds": round(stats.seconds, 3),
            "tokens_per_second": round(stats.tokens_per_second, 2), "responses": responses}


def run_naive(model, tok, prompts, max_new: int, bf16: bool) -> dict[str, Any]:
    """One prompt at a time through `model.generate`, the way per-prompt evaluation loops do it."""
    import torch

    from secvec_bench.chat import prompt_text
    from secvec_bench.training import autocast_context

    eos = tok.eos_token_id
    new_tokens, responses = 0, []
    t0 = time.perf_counter()
    for p in prompts:
        enc = tok(prompt_text(tok, p), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad(), autocast_context(bf16):
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=eos)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        if eos in new:
            new = new[: new.index(eos)]
        new_tokens += len(new)
        responses.append(tok.decode(new, skip_special_tokens=True).strip())
    seconds = time.perf_counter() - t0
    return {"generator": "naive per-prompt HF generate", "batch_size": 1, "dtype": "bf16" if bf16 else "fp32",
            "prompts": len(prompts), "new_tokens": new_tokens, "seconds": round(seconds, 3),
            "tokens_per_second": round(new_tokens / seconds, 2), "responses": responses}


def run_llama_cpp(gguf_path, tok, prompts, max_new: int, threads: int) -> dict[str, Any]:
    """llama.cpp single stream on the same GGUF file (Q4_1 weights), same rendered chat prompts, greedy."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # not installed, or installed without its dependencies (--no-deps)
        return {"generator": "llama.cpp (llama-cpp-python)", "skipped": f"llama-cpp-python does not import ({exc}); "
                "pip install llama-cpp-python builds it from source, ~5.5 min on 2 cores"}
    import importlib.metadata as md

    from secvec_bench.chat import prompt_text

    llm = Llama(model_path=str(gguf_path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512,
                seed=0, verbose=False)
    eot = {llm.token_eos(), *llm.tokenize(b"<|im_end|>", add_bos=False, special=True)}
    new_tokens, responses = 0, []
    t0 = time.perf_counter()
    for p in prompts:
        ids = llm.tokenize(prompt_text(tok, p).encode("utf-8"), add_bos=False, special=True)
        out: list[int] = []
        for t in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if t in eot:
                break
            out.append(t)
            if len(out) >= max_new:  # stop before llama.cpp evaluates one more token
                break
        new_tokens += len(out)
        responses.append(llm.detokenize(out).decode("utf-8", "replace").strip())
    seconds = time.perf_counter() - t0
    return {"generator": "llama.cpp (llama-cpp-python)", "version": md.version("llama-cpp-python"),
            "weights": f"{gguf_path.name} (quantised)", "batch_size": 1, "threads": threads,
            "prompts": len(prompts), "new_tokens": new_tokens, "seconds": round(seconds, 3),
            "tokens_per_second": round(new_tokens / seconds, 2), "responses": responses}


def _llama_child(queue, gguf_path, tok_path, prompts, max_new, threads) -> None:
    from secvec_bench.models import load_tokenizer

    queue.put(run_llama_cpp(gguf_path, load_tokenizer(tok_path), prompts, max_new, threads))


def run_llama_cpp_isolated(gguf_path, tok_path, prompts, max_new: int, threads: int) -> dict[str, Any]:
    """llama.cpp in a child process: a crash in the native library (seen: a segfault in a native build on an AMX
    CPU) becomes a row that says so instead of losing every other measurement of the run."""
    import multiprocessing as mp
    import queue as _queue

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_llama_child, args=(queue, gguf_path, tok_path, prompts, max_new, threads))
    child.start()
    result = None
    while result is None:
        try:
            result = queue.get(timeout=2)
        except _queue.Empty:
            if not child.is_alive():
                break
    child.join(timeout=60)
    if result is None:
        return {"generator": "llama.cpp (llama-cpp-python)",
                "skipped": f"llama.cpp process died (exit code {child.exitcode}); rebuild llama-cpp-python"}
    return result


def agreement(tok, a: list[str], b: list[str]) -> dict[str, Any]:
    """How far two sets of greedy responses agree: identical share and mean common token prefix."""
    same = sum(x == y for x, y in zip(a, b))
    prefixes, lengths = [], []
    for x, y in zip(a, b):
        tx, ty = tok(x, add_special_tokens=False)["input_ids"], tok(y, add_special_tokens=False)["input_ids"]
        k = 0
        while k < min(len(tx), len(ty)) and tx[k] == ty[k]:
            k += 1
        prefixes.append(k)
        lengths.append(max(len(tx), len(ty), 1))
    return {"identical_responses": same, "of": len(a), "identical_share": round(same / len(a), 4),
            "mean_common_prefix_tokens": round(sum(prefixes) / len(a), 2),
            "mean_common_prefix_share": round(sum(p / n for p, n in zip(prefixes, lengths)) / len(a), 4)}


def compute_limit(model, tok, prompts: list[str], new_tokens: int, peak_gflops: float) -> dict[str, Any]:
    """Upper bound on useful tokens/s if every matmul ran at the measured peak.

    Work per useful new token = (2 * N_linear * (prompt tokens + new tokens) + 2 * V*d * new tokens) / new tokens:
    the prompts must be processed too, but only the last prompt position needs the output projection. Attention
    scores (~4*ctx*d per layer per token) are left out (< 5% at these lengths), as is padding: a bound, not a
    prediction.
    """
    import torch

    from secvec_bench.chat import prompt_text

    n_lin = sum(m.in_features * m.out_features for m in model.get_decoder().modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings().weight.numel()
    prompt_tokens = sum(len(tok(prompt_text(tok, p), add_special_tokens=False)["input_ids"]) for p in prompts)
    per_useful = (2 * n_lin * (prompt_tokens + new_tokens) + 2 * head * new_tokens) / max(1, new_tokens)
    return {"flop_per_token_forward": 2 * (n_lin + head), "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "flop_per_useful_token": round(per_useful), "peak_gflops": peak_gflops,
            "limit_tokens_per_second": round(peak_gflops * 1e9 / per_useful, 1)}


def refusal_rate(prompts: list[str], responses: list[str]) -> float:
    from secvec_bench.judging import get_judge

    verdicts = get_judge("keyword").score_batch(prompts, responses)
    refused = [v for v in verdicts if getattr(v, "refused", None) is not None]
    return round(sum(bool(v.refused) for v in refused) / max(1, len(refused)), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--naive-prompts", type=int, default=8, help="subset timed with the per-prompt loop")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-sizes", default="32,64")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows")
    ap.add_argument("--no-llama-cpp", action="store_true")
    ap.add_argument("--data-dir", default=None, help="data directory (default: the built-in prompts)")
    ap.add_argument("--cache-dir", default=None, help="stage cache holding the converted SmolLM2")
    ap.add_argument("--out-dir", default=None, help="where to write generation.json (default bench/results)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes to check the script works")
    args = ap.parse_args(argv)
    if args.smoke:
        args.prompts, args.naive_prompts, args.max_new_tokens, args.batch_sizes = 8, 2, 8, "4,8"

    import torch

    from secvec_bench.models import load_model, load_tokenizer

    contention = common.Contention()
    ref, gguf = common.resolve_smollm2(args.cache_dir)
    tok = load_tokenizer(ref.path)
    model = load_model(ref.path).requires_grad_(False)  # frozen, like the merged models the pipeline generates from
    threads = torch.get_num_threads()
    prompts = common.eval_prompts(args.prompts, args.data_dir)
    dtypes = [False] if args.no_bf16 or not common.bf16_supported() else [False, True]
    batches = [int(b) for b in args.batch_sizes.split(",")]

    rows: list[dict[str, Any]] = []
    rows.append(run_naive(model, tok, prompts[: args.naive_prompts], args.max_new_tokens, bf16=False))
    ours: dict[tuple[int, bool], dict] = {}
    for bf16 in dtypes:
        for b in batches:
            ours[(b, bf16)] = run_ours(model, tok, prompts, args.max_new_tokens, b, bf16)
            rows.append(ours[(b, bf16)])
    hf: dict[bool, dict] = {}
    for bf16 in dtypes:  # the batched HF loop this replaced (and still the path for non-Llama models)
        hf[bf16] = run_ours(model, tok, prompts, args.max_new_tokens, batches[-1], bf16, backend="transformers")
        rows.append(hf[bf16])
    llama = None if args.no_llama_cpp else run_llama_cpp_isolated(gguf, ref.path, prompts, args.max_new_tokens,
                                                                   threads)
    if llama is not None:
        rows.append(llama)

    best = max(ours.values(), key=lambda r: r["tokens_per_second"])
    naive = rows[0]
    ratios = {"best_ours": {k: best[k] for k in ("batch_size", "dtype", "tokens_per_second")},
              "ours_over_naive": round(best["tokens_per_second"] / naive["tokens_per_second"], 2),
              "target_ours_over_naive": 30,
              "ours_over_batched_hf_generate": round(best["tokens_per_second"] / max(
                  r["tokens_per_second"] for r in hf.values()), 2)}
    if llama is not None and "tokens_per_second" in llama:
        ratios["ours_over_llama_cpp"] = round(best["tokens_per_second"] / llama["tokens_per_second"], 2)
        ratios["target_ours_over_llama_cpp"] = 4
    from bench_training import matmul_peak

    limits = {}
    for (b, bf16), r in ours.items():
        dt = "bfloat16" if bf16 else "float32"
        if dt not in limits:
            peak = matmul_peak(2048 if not args.smoke else 512, dt, iters=3, repeat=3)["gflops"]
            limits[dt] = compute_limit(model, tok, prompts, r["new_tokens"], peak)
        r["share_of_compute_limit"] = round(r["tokens_per_second"] / limits[dt]["limit_tokens_per_second"], 4)
    for bf16, r in hf.items():
        r["share_of_compute_limit"] = round(
            r["tokens_per_second"] / limits["bfloat16" if bf16 else "float32"]["limit_tokens_per_second"], 4)
    quality: dict[str, Any] = {}
    b0 = batches[0]
    fp32 = ours[(b0, False)]["responses"]
    quality["refusal_rate_fp32"] = refusal_rate(prompts, fp32)
    if len(batches) > 1:
        quality["fp32_batch_%d_vs_%d" % (batches[0], batches[-1])] = agreement(tok, fp32, ours[(batches[-1], False)]["responses"])
    if True in dtypes:
        bf = ours[(b0, True)]["responses"]
        quality["fp32_vs_bf16"] = agreement(tok, fp32, bf)
        quality["refusal_rate_bf16"] = refusal_rate(prompts, bf)
    quality["ours_fp32_vs_hf_generate_fp32"] = agreement(tok, fp32, hf[False]["responses"])
    if True in hf:
        quality["ours_bf16_vs_hf_generate_bf16_autocast"] = agreement(tok, ours[(b0, True)]["responses"],
                                                                      hf[True]["responses"])
    naive_resp = naive["responses"]
    quality["naive_vs_ours_fp32_same_prompts"] = agreement(tok, naive_resp, fp32[: len(naive_resp)])
    if llama is not None and "responses" in llama:
        quality["llama_cpp_vs_ours_fp32"] = agreement(tok, llama["responses"], fp32)

    payload = {
        "config": {"prompts": args.prompts, "naive_prompts": args.naive_prompts,
                   "max_new_tokens": args.max_new_tokens, "greedy": True, "batch_sizes": batches,
                   "backends": {"ours": "torch", "baseline": "transformers (batched HF generate)"},
                   "model": "smollm2-135m (GGUF Q4_1 de-quantised to fp32 for torch; the GGUF itself for llama.cpp)",
                   "prompt_source": args.data_dir or "built-in", "smoke": args.smoke},
        "rows": [{k: v for k, v in r.items() if k != "responses"} for r in rows],
        "ratios": ratios,
        "compute_limit": limits,
        "quality": quality,
        "examples": [{"prompt": prompts[i], "ours_fp32": fp32[i],
                      **({"ours_bf16": ours[(b0, True)]["responses"][i]} if True in dtypes else {}),
                      **({"llama_cpp": llama["responses"][i]} if llama and "responses" in llama else {})}
                     for i in range(min(3, len(prompts)))],
    }
    common.write_result("generation" + ("_smoke" if args.smoke else ""), payload, contention, threads, args.out_dir)
    for r in payload["rows"]:
        print(f"{r['generator']:<34} b={r.get('batch_size', '-')!s:<3} {r.get('dtype', 'q4_1'):<5} "
              f"{r.get('tokens_per_second', r.get('skipped'))} tok/s")
    print(ratios)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
