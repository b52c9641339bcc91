"""The fused LoRA op computes what PEFT's forward computes: loss and every trainable gradient, fp32 and bf16 autocast,
one trainable adapter or a frozen one beside it (the security-vector setting), and falls back where it must."""

from __future__ import annotations

import pytest
import torch

from secvec_bench.fused_lora import fused_lora
from secvec_bench.training import TrainConfig, answer_loss, autocast_context, collate, encode_all, lora_config
from tiny import CONVS


def _model(tok, frozen_second: bool = False, dropout: float = 0.0, bias: bool = False):
    from peft import get_peft_model
    from tiny import tiny_model

    base = tiny_model(tok)
    if bias:  # a base projection with a bias (Qwen-style q/k/v)
        for layer in base.model.layers:
            old = layer.self_attn.q_proj
            new = torch.nn.Linear(old.in_features, old.out_features, bias=True)
            new.weight.data.copy_(old.weight.data)
            torch.nn.init.normal_(new.bias, std=0.1)
            layer.self_attn.q_proj = new
    cfg = TrainConfig(lora_r=4, lora_dropout=dropout)
    model = get_peft_model(base, lora_config(cfg))
    if frozen_second:  # a frozen adapter active beside the trained one, as the security-vector attack runs
        model.add_adapter("sv", lora_config(cfg))
        model.base_model.set_adapter(["default", "sv"])
        for n, p in model.named_parameters():
            p.requires_grad = "lora_" in n and ".sv." not in n
    torch.manual_seed(1)
    for n, p in model.named_parameters():  # non-zero B so that every path carries signal
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.2)
    return model


def _loss_and_grads(model, tok, fused: bool, bf16: bool):
    ids, mask, labels = collate(encode_all(tok, CONVS, 256), tok.pad_token_id)
    model.zero_grad(set_to_none=True)
    with fused_lora(model, fused) as n, autocast_context(bf16):
        loss = answer_loss(model, ids, mask, labels)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    return n, float(loss.detach()), grads


@pytest.mark.parametrize("frozen_second", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_matches_peft_in_fp32(tok, frozen_second, bias):
    model = _model(tok, frozen_second=frozen_second, bias=bias)
    n0, ref_loss, ref = _loss_and_grads(model, tok, fused=False, bf16=False)
    n, loss, got = _loss_and_grads(model, tok, fused=True, bf16=False)
    assert n0 == 0 and n == 14  # 7 projections x 2 layers
    assert abs(loss - ref_loss) < 1e-5
    assert set(got) == set(ref) and all(".sv." not in k for k in got)
    for k in ref:
        assert torch.allclose(got[k], ref[k], atol=1e-5, rtol=1e-4), k


def test_fused_matches_peft_under_bf16_autocast(tok):
    """Same rounding points as PEFT under autocast (bf16 products, sums of a base and an adapter output in separate
    passes): an in-place bf16 `addmm_` instead gave gradient cosines down to 0.93 against PEFT here."""
    model = _model(tok, frozen_second=True)
    _, ref_loss, ref = _loss_and_grads(model, tok, fused=False, bf16=True)
    _, loss, got = _loss_and_grads(model, tok, fused=True, bf16=True)
    assert abs(loss - ref_loss) < 1e-3
    for k in ref:
        cos = torch.nn.functional.cosine_similarity(got[k].flatten().float(), ref[k].flatten().float(), dim=0)
        assert cos > 0.995, (k, float(cos))


def test_the_patch_is_removed_and_training_still_works_after(tok):
    model = _model(tok)
    with fused_lora(model):
        pass
    assert not any("forward" in vars(m) for m in model.modules())
    n, _, _ = _loss_and_grads(model, tok, fused=False, bf16=False)
    assert n == 0


def test_dropout_falls_back_to_peft(tok):
    """LoRA dropout is random per call: the fused op does not implement it, so PEFT's forward runs (same result
    under the same seed)."""
    model = _model(tok, dropout=0.1)
    model.train()
    torch.manual_seed(5)
    _, ref_loss, ref = _loss_and_grads(model, tok, fused=False, bf16=False)
    torch.manual_seed(5)
    _, loss, got = _loss_and_grads(model, tok, fused=True, bf16=False)
    assert loss == ref_loss
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_disabled_adapters_fall_back(tok):
    model = _model(tok)
    with model.disable_adapter():
        with fused_lora(model):
            ids, mask, labels = collate(encode_all(tok, CONVS, 256), tok.pad_token_id)
            fused = float(answer_loss(model, ids, mask, labels))
        plain = float(answer_loss(model, ids, mask, labels))
    assert fused == plain
