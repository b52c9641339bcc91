"""Random frozen adapter: the control for security vectors (rules out "any frozen adapter helps").

Stage: fine-tuning, exactly like security vectors: the adapter is active and frozen during the attack and removed for
inference. Threat model: the same as security vectors (provider-controlled fine-tuning of user data). It is a
*control*, not a defense one would deploy.

The adapter has the security vectors' architecture (rank, alpha, target modules: the same adapter_config.json) and,
tensor by tensor, random Gaussian weights rescaled to the Frobenius norm of the trained SV tensor it replaces. So it
perturbs the forward pass by a comparable amount but encodes no harmful behaviour; if it protected as well as SV, the
SV effect would be a generic "frozen perturbation" effect rather than the unlearnability the paper claims.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from .base import DEFENSES, DefenseContext, Prepared
from .security_vectors import SecurityVectors

ADAPTER_NAME = "randadapter"


def randomise_adapter(src: Path, dst: Path, seed: int) -> dict[str, Any]:
    """Write a norm-matched random copy of the PEFT adapter in `src` to `dst` (same config, same tensor names)."""
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "adapter_config.json", dst / "adapter_config.json")
    tensors = load_file(str(src / "adapter_model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    out, norms = {}, []
    for name in sorted(tensors):
        t = tensors[name].float()
        r = torch.randn(t.shape, generator=gen)
        norm = float(t.norm())
        out[name] = (r * (norm / float(r.norm()))).to(tensors[name].dtype).contiguous() if norm > 0 else t.clone()
        norms.append(norm)
    save_file(out, str(dst / "adapter_model.safetensors"))
    return {"tensors": len(out), "total_norm": float(sum(n * n for n in norms) ** 0.5)}


@DEFENSES.register("random_adapter")
class RandomAdapter:
    """Control: a frozen random LoRA, norm-matched to the security vectors, active during the attack, then removed."""

    name = "random_adapter"

    def __init__(self, n_samples: int = 100, sv_train: Any = None, **_: Any) -> None:
        self.sv = SecurityVectors(n_samples=n_samples, sv_train=sv_train)

    def config(self) -> dict[str, Any]:
        return {"defense": self.name, "norm_matched_to": self.sv.config()}

    def prepare(self, ctx: DefenseContext) -> Prepared:
        from ..stages import _find_adapter

        sv = self.sv.prepare(ctx)
        sv_path = sv.frozen_adapters[self.sv.adapter_name]
        key = ctx.cache.key("adapter", random_like=sv.key, seed=ctx.seed)
        info: dict[str, Any] = {}

        def build(tmp: Path) -> dict:
            info.update(randomise_adapter(sv_path, tmp / "adapter", seed=ctx.seed))
            return info

        folder = ctx.cache.build_dir("adapter", key, f"random_adapter:seed{ctx.seed}", build)
        manifest = {"norm_matched_to_sv_key": sv.key, "seed": ctx.seed}
        return Prepared(frozen_adapters={ADAPTER_NAME: _find_adapter(folder)}, key=key, info=manifest)

    def training_data(self, examples: Sequence[Any], ctx: DefenseContext) -> list[Any]:
        return list(examples)
