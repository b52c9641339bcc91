"""The grouped attention computes what transformers' eager attention computes (outputs and gradients, fp32 and bf16
autocast, padded batches, grouped-query heads), and only model families with plain attention use it."""

from __future__ import annotations

import pytest
import torch

from secvec_bench import grouped_attention
from secvec_bench.training import answer_loss, autocast_context, collate, encode_all
from tiny import CONVS


def _loss_and_grads(model, tok, implementation: str, bf16: bool):
    assert grouped_attention.register()
    model.set_attn_implementation(implementation)
    ids, mask, labels = collate(encode_all(tok, CONVS, 256), tok.pad_token_id)  # rows of different lengths: padding
    assert not bool(mask.all())
    model.zero_grad(set_to_none=True)
    with autocast_context(bf16):
        loss = answer_loss(model, ids, mask, labels)
    loss.backward()
    return float(loss.detach()), {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _model(tok):
    from tiny import tiny_model

    model = tiny_model(tok)
    assert model.config.num_attention_heads != model.config.num_key_value_heads  # grouped-query heads
    return model


@pytest.mark.parametrize("bf16", [False, True])
def test_matches_eager(tok, bf16):
    """fp32: equal to rounding; bf16 autocast: the same up to where each rounds (see grouped_attention.py)."""
    model = _model(tok)
    ref_loss, ref = _loss_and_grads(model, tok, "eager", bf16=bf16)
    loss, got = _loss_and_grads(model, tok, grouped_attention.IMPLEMENTATION, bf16=bf16)
    assert abs(loss - ref_loss) < (2e-3 if bf16 else 1e-5)
    for k in ref:
        if bf16:
            cos = torch.nn.functional.cosine_similarity(got[k].flatten().float(), ref[k].flatten().float(), dim=0)
            assert cos > 0.999, (k, float(cos))
        else:
            assert torch.allclose(got[k], ref[k], atol=1e-5, rtol=1e-4), k


def test_fully_masked_rows_stay_finite_in_bf16():
    """fp32's most negative value overflows to -inf in bf16; a query row that sees no key (left padding) must still
    give a finite output, as it does in eager attention, or NaN would reach the gradients."""
    q = torch.randn(1, 4, 3, 8)
    k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    mask = torch.zeros(1, 1, 3, 3)
    mask[..., 0, :] = torch.finfo(torch.float32).min  # the first query position sees nothing
    module = torch.nn.Module()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, weights = grouped_attention.grouped_attention_forward(module, q, k, v, mask, scaling=8 ** -0.5)
    assert out.dtype == torch.bfloat16 and weights.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    assert out.shape == (1, 3, 4, 8)


def test_unsupported_model_types_are_refused(tok):
    model = _model(tok)
    assert grouped_attention.supported(model)
    model.config.model_type = "gemma2"  # soft-capped attention: eager's arithmetic is not ours
    assert not grouped_attention.supported(model)
