"""The HF backend: batched Hugging Face `generate` (secvec_bench.generation.hf_generate); the reference loop."""

from __future__ import annotations

from typing import Any, Sequence

from . import BACKENDS


@BACKENDS.register("transformers")
class TransformersBackend:
    """Batched HF generate with left padding and length-sorted batches (CPU or the model's device)."""

    name = "transformers"

    def check(self, cfg) -> None:
        return None

    def generate(self, model: Any, tokenizer: Any, prompts: Sequence[str], cfg, system: str | None = None,
                 desc: str = "generate", stats=None) -> list[str]:
        from ..generation import hf_generate

        return hf_generate(model, tokenizer, prompts, cfg, system=system, desc=desc, stats=stats)
