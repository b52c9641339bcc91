"""One autograd op per LoRA-adapted linear layer during training: the frozen projection and every active adapter.

Why: PEFT's `lora.Linear.forward` runs the base layer, casts the input to the adapter's dtype, applies A, B and the
scaling as separate modules and adds the result. Under bf16 autocast on the CPU that is a chain of copies and
elementwise passes over the [tokens, width] activations per adapted module (the input cast to fp32 by PEFT and
back to bf16 by autocast, the scaling multiply, the add, and their mirrors in the backward pass). With r16 adapters
on all seven projections of 30 layers these passes cost about as much as the matmuls they surround. Here the input
is cast once, the scaling is folded into B (a [d_out, r] matrix, not the activations), and each adapter's product is
added into the base output in place; the backward pass does the same in reverse. The sums stay separate passes, as in
PEFT: a bf16 `addmm_` that fuses product and sum rounds differently, and moved the gradients visibly away from
PEFT's (tests/test_fused_lora.py). The arithmetic
is PEFT's: y = x W^T + b + sum_a s_a (x A_a^T) B_a^T, gradients only for the tensors that require them (a frozen
security-vector adapter gets none), in the dtype autocast would use (bf16 under `--bf16`, else the input's).

Applied only where PEFT's forward is plain LoRA (no dropout, no DoRA or other variant, no adapter bias, no
per-row adapter names, frozen base weight, not merged); anything else goes through PEFT's forward unchanged.
`tests/test_fused_lora.py` checks outputs and gradients against PEFT's.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Any, Iterator

import torch


class _LoraLinear(torch.autograd.Function):
    """y = x W^T (+ b) + sum_a (x A_a^T)(s_a B_a)^T in `dtype`; A_a, B_a interleaved in `adapters`."""

    @staticmethod
    def forward(ctx, x, weight, bias, dtype, scalings, *adapters):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        w = weight.to(dtype)
        out = torch.mm(x2, w.t()) if bias is None else torch.addmm(bias.to(dtype), x2, w.t())
        factors = []
        for i, s in enumerate(scalings):
            a = adapters[2 * i].to(dtype)
            b = (adapters[2 * i + 1] * s).to(dtype)
            h = torch.mm(x2, a.t())
            out.add_(torch.mm(h, b.t()))
            factors += [a, b, h]
        ctx.save_for_backward(x2, w, *factors)
        ctx.meta = (shape, x.dtype, dtype, tuple(scalings), bias is not None,
                    tuple(t.dtype for t in adapters), bias.dtype if bias is not None else None)
        return out.reshape(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        shape, x_dtype, dtype, scalings, has_bias, adapter_dtypes, bias_dtype = ctx.meta
        x2, w, *factors = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(dtype)
        need = ctx.needs_input_grad
        gx = torch.mm(g, w) if need[0] else None
        grads: list[Any] = []
        for i, s in enumerate(scalings):
            a, b, h = factors[3 * i : 3 * i + 3]
            need_a, need_b = need[5 + 2 * i], need[6 + 2 * i]
            gh = torch.mm(g, b) if (need[0] or need_a) else None
            if gx is not None:
                gx.add_(torch.mm(gh, a))
            grads.append(torch.mm(gh.t(), x2).to(adapter_dtypes[2 * i]) if need_a else None)
            grads.append(torch.mm(g.t(), h).mul_(s).to(adapter_dtypes[2 * i + 1]) if need_b else None)
        gbias = g.sum(0).to(bias_dtype) if has_bias and need[2] else None
        if gx is not None:
            gx = gx.reshape(shape).to(x_dtype)
        return (gx, None, gbias, None, None, *grads)


def _plain_adapters(layer: Any) -> list[str] | None:
    """The active adapters of a PEFT `lora.Linear` when all are plain LoRA, else None (use PEFT's forward)."""
    if layer.merged or layer.disable_adapters or layer.base_layer.weight.requires_grad:
        return None
    if not isinstance(layer.base_layer, torch.nn.Linear):
        return None
    names = [a for a in layer.active_adapters if a in layer.lora_A]
    for a in names:
        if (a in getattr(layer, "lora_variant", {}) or not isinstance(layer.lora_dropout[a], torch.nn.Identity)
                or layer.lora_A[a].bias is not None or layer.lora_B[a].bias is not None):
            return None
    return names


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    names = None if (args or kwargs) else _plain_adapters(self)
    if names is None:
        return type(self).forward(self, x, *args, **kwargs)
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    adapters: list[torch.Tensor] = []
    for a in names:
        adapters += [self.lora_A[a].weight, self.lora_B[a].weight]
    base = self.base_layer
    with torch.autocast(device, enabled=False):  # dtypes are chosen above, as autocast would
        return _LoraLinear.apply(x, base.weight, base.bias, dtype, tuple(self.scaling[a] for a in names), *adapters)


@contextmanager
def fused_lora(model: Any, enabled: bool = True) -> Iterator[int]:
    """Route every PEFT LoRA linear layer of `model` through the fused op for the duration; yields how many.

    The layers keep their parameters and PEFT objects; only their `forward` is replaced on the instance and the
    replacement is removed on exit, so saving, merging and adapter switching afterwards see PEFT unchanged.
    """
    patched = []
    if enabled:
        try:
            from peft.tuners.lora.layer import Linear as LoraLinear
        except ImportError:  # no PEFT: no LoRA layers to fuse
            LoraLinear = None
        if LoraLinear is not None:
            for mod in model.modules():
                if type(mod) is LoraLinear and "forward" not in vars(mod):
                    mod.forward = types.MethodType(_fused_forward, mod)
                    patched.append(mod)
    try:
        yield len(patched)
    finally:
        for mod in patched:
            del mod.forward
