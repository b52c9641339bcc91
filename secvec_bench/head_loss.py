"""Cross-entropy through the LM head, a block of rows at a time, without keeping the logits.

Why: the answer loss projects every labelled position onto the 49k-word vocabulary. Done in one piece (PEFT-style
`lm_head(h).float()` then `cross_entropy`) that is a [labelled tokens, 49152] tensor in bf16, its fp32 copy, the
log-softmax output kept for the backward pass, and in the backward pass the same again: hundreds of MB written and
read per step. In a bf16 LoRA step on SmolLM2 (8 x 128 tokens, half labelled; 2-core AMX Xeon, 2026-12-05) the two
dtype copies of those logits alone took 150 ms of a 1.36 s step. Here each block of rows is projected, its
log-sum-exp and its gradient with respect to the hidden states (and to the head weight, when that is trained) are
computed while the block is in cache, and only those gradients are kept: the backward pass scales them.

The arithmetic is that of `cross_entropy(lm_head(h).float(), target)` under the same autocast: logits in the
autocast dtype, soft-max in fp32, the gradient of the logits cast back to the autocast dtype before its matmuls.
`tests/test_head_loss.py` checks loss and gradients against that.
"""

from __future__ import annotations

import torch

BLOCK_ROWS = 128


class _HeadLoss(torch.autograd.Function):
    """Summed cross-entropy of `h @ weight.T` against `target`; gradients computed in the forward pass."""

    @staticmethod
    def forward(ctx, h, weight, target, dtype, want_h, want_w):
        hd, w = h.to(dtype), weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        gh = torch.empty_like(hd) if want_h else None
        gw = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if want_w else None
        for s in range(0, hd.shape[0], BLOCK_ROWS):
            rows, t = hd[s : s + BLOCK_ROWS], target[s : s + BLOCK_ROWS]
            logits = torch.mm(rows, w.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None])[:, 0]).sum()
            if want_h or want_w:
                grad = logits.sub_(lse[:, None]).exp_()  # soft-max, in place of the logits
                grad[torch.arange(len(t), device=t.device), t] -= 1.0
                grad = grad.to(dtype)
                if want_h:
                    torch.mm(grad, w, out=gh[s : s + BLOCK_ROWS])
                if want_w:
                    gw += torch.mm(grad.t(), rows).float()
        ctx.save_for_backward(*(g for g in (gh, gw) if g is not None))
        ctx.meta = (want_h, want_w, h.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        want_h, want_w, h_dtype, w_dtype = ctx.meta
        saved = list(ctx.saved_tensors)
        # cast first: in fp32 the scaling by the upstream gradient (1/N for a mean) adds no bf16 rounding
        gh = saved.pop(0).to(h_dtype) * grad_total if want_h else None
        gw = saved.pop(0).to(w_dtype) * grad_total if want_w else None
        return gh, gw, None, None, None, None


def head_cross_entropy(h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                       reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the LM head `weight` applied to hidden states `h` [N, d] against `target` [N]."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    grad = torch.is_grad_enabled()
    with torch.autocast(device, enabled=False):
        total = _HeadLoss.apply(h, weight, target, dtype, grad and h.requires_grad, grad and weight.requires_grad)
    return total / target.numel() if reduction == "mean" else total  # mean of nothing: nan, as cross_entropy
