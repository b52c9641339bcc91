"""vLLM generation on a GPU (optional extra `secvec-bench[vllm]`); vLLM is imported only when this backend runs.

Two routes, both built from our GenConfig by pure functions (unit-tested without vLLM installed):

* merged weights (what the pipeline uses): the model state it built (aligned, or aligned + attack update, defense
  removed) is saved as safetensors into a temporary folder and served by vLLM; nothing about it is vLLM-specific.
* native LoRA (`generate_with_adapter`): the aligned base folder plus the attack adapter folder through vLLM's
  LoRA support (`enable_lora=True`, a `LoRARequest`), no merge, several adapters can share one engine.

Prompts are rendered with the tokenizer's own chat template by `secvec_bench.chat.prompt_text` and handed to vLLM as
token ids, so vLLM cannot re-template or add a BOS token differently from the transformers backend. Greedy decoding
is `temperature=0`; our end-of-turn id is a stop token; `max_tokens` is GenConfig.max_new_tokens.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from . import BACKENDS

# max_lora_rank values vLLM accepts; an adapter's rank is rounded up to the next one.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class VllmPlan:
    """Everything handed to vLLM: `LLM(**engine)`, `SamplingParams(**sampling)`, `LoRARequest(*lora)` if any."""

    engine: dict[str, Any]
    sampling: dict[str, Any]
    lora: tuple[str, int, str] | None = None
    prompt_token_ids: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("prompt_token_ids")
        return d


def lora_rank_for(rank: int) -> int:
    for r in VLLM_LORA_RANKS:
        if rank <= r:
            return r
    raise UserError(f"LoRA rank {rank} exceeds vLLM's maximum {VLLM_LORA_RANKS[-1]}")


def sampling_params(cfg, eos_token_id: int | None) -> dict[str, Any]:
    """SamplingParams kwargs equivalent to our GenConfig (greedy = temperature 0)."""
    out: dict[str, Any] = {
        "max_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature if cfg.do_sample else 0.0,
        "top_p": cfg.top_p if cfg.do_sample else 1.0,
        "seed": cfg.seed,
        "skip_special_tokens": True,
    }
    if eos_token_id is not None:
        out["stop_token_ids"] = [int(eos_token_id)]
    return out


def build_plan(cfg, model_path: str | Path, tokenizer: Any, prompts: Sequence[str], system: str | None = None,
               adapter_path: str | Path | None = None, lora_rank: int | None = None, tensor_parallel_size: int = 1,
               gpu_memory_utilization: float = 0.85, trust_remote_code: bool = False) -> VllmPlan:
    """The engine/sampling/LoRA configuration for one generation call. Pure: never imports vLLM."""
    from ..chat import prompt_text

    ids = [tokenizer(prompt_text(tokenizer, p, system), add_special_tokens=False)["input_ids"] for p in prompts]
    longest = max((len(x) for x in ids), default=0)
    engine: dict[str, Any] = {
        "model": str(model_path),
        "tokenizer": str(model_path),
        "dtype": "bfloat16" if cfg.bf16 else "float32",
        "seed": cfg.seed,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": longest + cfg.max_new_tokens,
        "max_num_seqs": max(1, cfg.batch_size),
        "trust_remote_code": trust_remote_code,
    }
    lora = None
    if adapter_path is not None:
        if lora_rank is None:
            raise ValueError("lora_rank is required with adapter_path")
        engine.update(enable_lora=True, max_lora_rank=lora_rank_for(lora_rank), max_loras=1)
        lora = ("attack", 1, str(adapter_path))
    return VllmPlan(engine, sampling_params(cfg, tokenizer.eos_token_id), lora, ids)


def check_available() -> None:
    """One-line UserError when vLLM cannot run here; never imports vLLM itself."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError("--backend vllm needs the vllm package: pip install 'secvec-bench[vllm]' (on a CUDA machine)")
    import torch

    if not torch.cuda.is_available():
        raise UserError("--backend vllm needs a CUDA GPU, and none is visible (use --backend transformers)")


def run_plan(plan: VllmPlan) -> list[list[int]]:
    """Execute a plan with vLLM; token ids of each response, in prompt order."""
    from vllm import LLM, SamplingParams  # the only vLLM imports: reached after check_available()

    llm = LLM(**plan.engine)
    request = None
    if plan.lora is not None:
        from vllm.lora.request import LoRARequest

        request = LoRARequest(*plan.lora)
    prompts = [{"prompt_token_ids": ids} for ids in plan.prompt_token_ids]
    outputs = llm.generate(prompts, SamplingParams(**plan.sampling), lora_request=request, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outputs]


def _decode(tokenizer: Any, token_lists: list[list[int]], stats, t0: float) -> list[str]:
    eos = tokenizer.eos_token_id
    out = []
    n = 0
    for toks in token_lists:
        if eos in toks:
            toks = toks[: toks.index(eos)]
        n += len(toks)
        out.append(tokenizer.decode(toks, skip_special_tokens=True).strip())
    if stats is not None:
        stats.add(len(token_lists), n, time.perf_counter() - t0)
    return out


@BACKENDS.register("vllm")
class VllmBackend:
    """vLLM on CUDA (optional extra): merged weights, or native LoRA via generate_with_adapter."""

    name = "vllm"

    def check(self, cfg) -> None:
        check_available()

    def generate(self, model: Any, tokenizer: Any, prompts: Sequence[str], cfg, system: str | None = None,
                 desc: str = "generate", stats=None) -> list[str]:
        check_available()
        t0 = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="secvec-vllm-"))
        try:
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            plan = build_plan(cfg, folder, tokenizer, prompts, system)
            return _decode(tokenizer, run_plan(plan), stats, t0)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def generate_with_adapter(self, base_path: Path, adapter_path: Path, lora_rank: int, tokenizer: Any,
                              prompts: Sequence[str], cfg, system: str | None = None, stats=None) -> list[str]:
        check_available()
        t0 = time.perf_counter()
        plan = build_plan(cfg, base_path, tokenizer, prompts, system, adapter_path=adapter_path, lora_rank=lora_rank)
        return _decode(tokenizer, run_plan(plan), stats, t0)
