"""Security vectors (Zhou et al., "Making Harmful Behaviors Unlearnable for Large Language Models", arXiv 2311.02105).

Stage: fine-tuning (the provider controls the fine-tuning run). Threat model: a user uploads harmful (or harmful-mixed)
data to a fine-tuning service; the provider trains with the vectors active and serves the model without them. It does
not protect against an attacker who fine-tunes the weights without the vectors.

Recipe: (1) train a LoRA adapter `sv` on ~100 harmful (request, compliance) pairs disjoint from the attack and
evaluation data, with the aligned weights frozen, so that the model *with* `sv` already shows the harmful behaviour;
(2) during the user's fine-tuning keep `sv` active and frozen: the cross-entropy gradient, softmax(z) - onehot(y), is
near zero where `sv` already predicts the harmful target, so the core weights learn little of it; (3) remove `sv` for
inference. The SV-on model must itself be harmful, or the vectors encode nothing; the pipeline measures that.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from ..training import TrainConfig
from .base import DEFENSES, DefenseContext, Prepared

SV_DEFAULTS = TrainConfig(mode="lora", epochs=3, lr=2e-4, batch_size=8, lora_r=16, lora_alpha=32, seed=0)


@DEFENSES.register("security_vectors")
class SecurityVectors:
    """Security vectors: a frozen harmful LoRA active during the attack, removed for inference (arXiv 2311.02105)."""

    name = "security_vectors"
    adapter_name = "sv"

    def __init__(self, n_samples: int = 100, train: TrainConfig | None = None, sv_train: TrainConfig | None = None,
                 **_: Any) -> None:
        if n_samples <= 0:
            raise ValueError("n_samples must be positive")
        self.n_samples = n_samples
        self.train_cfg = sv_train or train or SV_DEFAULTS

    def config(self) -> dict[str, Any]:
        return {"defense": self.name, "n_samples": self.n_samples, "train": self.train_cfg.as_dict()}

    def sv_conversations(self, ctx: DefenseContext) -> list[list[dict]]:
        rows = ctx.suite.harmful["sv"][: self.n_samples]
        return [[{"role": "user", "content": r["goal"]}, {"role": "assistant", "content": r["target"] + "."}]
                for r in rows]

    def prepare(self, ctx: DefenseContext) -> Prepared:
        from ..stages import train_adapter

        convs = self.sv_conversations(ctx)
        cfg = replace(self.train_cfg, seed=ctx.seed)
        path, key = train_adapter(ctx, self.adapter_name, convs, cfg, label=f"security_vectors:seed{ctx.seed}")
        return Prepared(frozen_adapters={self.adapter_name: path}, key=key,
                        info={"sv_examples": len(convs), "sv_ids": [r["id"] for r in ctx.suite.harmful["sv"][: self.n_samples]]})

    def training_data(self, examples: Sequence[Any], ctx: DefenseContext) -> list[Any]:
        return list(examples)
