"""Attention for bf16 training on the CPU: grouped-query attention without repeated keys, soft-max in bf16.

Why: transformers' eager attention, which bf16 CPU stages use because torch's CPU flash-attention backward is slow
in bf16 (`training.bf16_attention`), spends most of its time outside its two matmuls. It copies keys and values
once per query head (`repeat_kv`), scales the [batch, heads, L, L] scores in a separate pass, adds the fp32 mask
(which turns the bf16 scores into an fp32 tensor), runs the soft-max in fp32 and copies the result back to bf16; the
backward pass mirrors each of these. In a bf16 LoRA step on SmolLM2 at 16 x 256 tokens (2-core AMX Xeon,
2026-12-05) these passes took about a fifth of the step. Here the query heads that share a key head are stacked
along the rows, so one batched matmul per key head needs no copies of keys or values; the scale (1/8 for SmolLM2's
64-wide heads, exact in bf16) is applied to the queries, a quarter of the scores' size at these lengths; the mask
is added in place in bf16, and the soft-max reads and writes bf16 (torch's CPU kernel accumulates in fp32).

The arithmetic is eager attention's: softmax(q k^T * scale + mask) v, with the same bf16 inputs. Rounding differs
only where eager rounds differently (the scale applied before the matmul, the soft-max output rounded once from
fp32 rather than computed and then cast: the same value). `tests/test_grouped_attention.py` compares outputs and
gradients with transformers' eager attention.

Registered under `IMPLEMENTATION` with transformers' `AttentionInterface`, with eager attention's additive mask.
Used only for model families whose attention is plain softmax attention (`SUPPORTED_MODEL_TYPES`); others keep eager.
"""

from __future__ import annotations

from typing import Any

import torch

IMPLEMENTATION = "secvec_grouped"
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})


def grouped_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                              **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """query [B, H, L, D], key/value [B, KV, S, D], additive mask [B, 1, L, >=S] -> ([B, L, H, D], weights).

    Computed in the autocast dtype when autocast is on (the rotary embedding leaves the queries and keys in fp32),
    else in the query's dtype; autocast itself is off inside, so that the soft-max is not moved to fp32.
    """
    device = query.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else query.dtype
    with torch.autocast(device, enabled=False):
        return _grouped(module, query.to(dtype), key.to(dtype), value.to(dtype), attention_mask, scaling, dropout)


def _grouped(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             attention_mask: torch.Tensor | None, scaling: float, dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
    b, h, q_len, d = query.shape
    kv, s = key.shape[1], key.shape[2]
    groups = h // kv
    dtype = query.dtype
    # rows of key head j: query heads j*groups .. (j+1)*groups-1, each over all L positions
    q = (query * scaling).reshape(b, kv, groups * q_len, d)
    scores = torch.matmul(q, key.transpose(2, 3))  # [B, KV, G*L, S]
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :s]
        if mask.dtype != dtype:  # fp32's minimum overflows bf16 to -inf; a fully masked row would give NaN
            mask = mask.clamp(min=torch.finfo(dtype).min).to(dtype)
        scores.view(b, kv, groups, q_len, s).add_(mask.unsqueeze(1))
    weights = torch.softmax(scores, dim=-1)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout, training=True)
    out = torch.matmul(weights, value)  # [B, KV, G*L, D]
    out = out.view(b, h, q_len, d).transpose(1, 2).contiguous()
    return out, weights.view(b, h, q_len, s)


def register() -> bool:
    """Make `IMPLEMENTATION` known to transformers (idempotent); False where this transformers has no interface."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    except ImportError:
        return False
    AttentionInterface.register(IMPLEMENTATION, grouped_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)
    return True


def supported(model: Any) -> bool:
    """Whether the transformers `model` (not a PEFT wrapper) can run `IMPLEMENTATION`, which is then registered."""
    config = getattr(model, "config", None)
    return (getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
            and hasattr(model, "set_attn_implementation") and register())
