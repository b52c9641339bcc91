"""Safety-data mixing: add refusal examples to the user's fine-tuning data (the common baseline).

Stage: fine-tuning (the provider controls the training data that reaches the optimiser). Threat model: a user uploads
harmful or harmful-mixed data to a fine-tuning service; the provider appends a share of its own safety data (harmful
request -> refusal) before training, as in Qi et al. 2023 ("Fine-tuning Aligned Language Models Compromises Safety,
Even When Users Do Not Intend To!", arXiv 2310.03693, section 5) and the SFT-with-safety-data baselines of Lisa and
Vaccine. It does nothing against an attacker who trains the weights themselves.

The safety examples come from the suite's harmful `align` split (the provider's own safety data, disjoint from the
attack and evaluation prompts) with the same refusals used for alignment; `ratio` is the number of safety examples
relative to the user's examples (0.1 -> 21 refusals added to 210 attack pairs). The mix is shuffled with the run seed.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from .base import DEFENSES, DefenseContext, Prepared

DEFAULT_RATIO = 0.1


@DEFENSES.register("safety_mix")
class SafetyMix:
    """Safety-data mixing: refusal examples added to the user's data during fine-tuning (baseline)."""

    name = "safety_mix"

    def __init__(self, safety_ratio: float = DEFAULT_RATIO, **_: Any) -> None:
        if not 0 < safety_ratio <= 10:
            raise ValueError(f"safety_ratio must be in (0, 10], not {safety_ratio}")
        self.ratio = float(safety_ratio)

    def config(self) -> dict[str, Any]:
        return {"defense": self.name, "safety_ratio": self.ratio}

    def prepare(self, ctx: DefenseContext) -> Prepared:
        return Prepared(key=f"safety_mix:{self.ratio}", info={"safety_ratio": self.ratio})

    def safety_examples(self, n: int, ctx: DefenseContext) -> list[Any]:
        from ..data.builtin import refusal_for
        from ..scenarios import ChatExample

        pool = list(ctx.suite.harmful["align"])
        random.Random(ctx.seed).shuffle(pool)
        return [ChatExample([{"role": "user", "content": r["goal"]},
                             {"role": "assistant", "content": refusal_for(r["id"])}], f"safety/{r['id']}", False)
                for r in pool[:n]]

    def training_data(self, examples: Sequence[Any], ctx: DefenseContext) -> list[Any]:
        n = max(1, round(self.ratio * len(examples)))
        n = min(n, len(ctx.suite.harmful["align"]))
        out = list(examples) + self.safety_examples(n, ctx)
        random.Random(ctx.seed + 1).shuffle(out)
        return out
