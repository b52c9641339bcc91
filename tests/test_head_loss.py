"""Blockwise LM-head cross-entropy equals `cross_entropy(head(h).float(), target)`: loss and gradients, fp32 and
bf16 autocast, a frozen head and a trained one, more rows than one block."""

from __future__ import annotations

import math

import pytest
import torch

from secvec_bench import head_loss
from secvec_bench.head_loss import head_cross_entropy


def _case(rows: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(rows, 24, generator=g)
    w = torch.randn(300, 24, generator=g) * 0.3
    t = torch.randint(0, 300, (rows,), generator=g)
    return h, w, t


def _run(fn, h, w, t, bf16: bool, train_head: bool, reduction: str):
    h = h.clone().requires_grad_(True)
    w = w.clone().requires_grad_(train_head)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = fn(h, w, t, reduction)
    (loss * 1.5).backward()  # a non-unit upstream gradient
    return float(loss), h.grad, (w.grad if train_head else None)


def _reference(h, w, t, reduction):
    return torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, w).float(), t, reduction=reduction)


@pytest.mark.parametrize("train_head", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fp32_equals_cross_entropy(monkeypatch, train_head, reduction):
    monkeypatch.setattr(head_loss, "BLOCK_ROWS", 16)  # 50 rows: three full blocks and a partial one
    h, w, t = _case(50)
    ref = _run(_reference, h, w, t, False, train_head, reduction)
    got = _run(head_cross_entropy, h, w, t, False, train_head, reduction)
    assert math.isclose(got[0], ref[0], rel_tol=1e-5)
    assert torch.allclose(got[1], ref[1], atol=1e-6, rtol=1e-4)
    if train_head:
        assert torch.allclose(got[2], ref[2], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("train_head", [False, True])
def test_bf16_autocast_matches_the_unblocked_path(monkeypatch, train_head):
    monkeypatch.setattr(head_loss, "BLOCK_ROWS", 16)
    h, w, t = _case(50, seed=1)
    ref = _run(_reference, h, w, t, True, train_head, "mean")
    got = _run(head_cross_entropy, h, w, t, True, train_head, "mean")
    assert math.isclose(got[0], ref[0], rel_tol=1e-4)  # same bf16 logits, same fp32 soft-max
    for a, b in zip(got[1:], ref[1:]):
        if b is not None:
            assert a.dtype == b.dtype
            cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
            assert cos > 0.999 and torch.allclose(a, b, atol=2e-3, rtol=2e-2)


def test_no_grad_and_bad_reduction():
    h, w, t = _case(5)
    with torch.no_grad():
        assert math.isclose(float(head_cross_entropy(h, w, t, "sum")), float(_reference(h, w, t, "sum")), rel_tol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        head_cross_entropy(h, w, t, "none")
