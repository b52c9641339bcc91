"""The default backend: our decode loop (secvec_bench.decode) where it applies, batched HF generate elsewhere."""

from __future__ import annotations

from typing import Any, Sequence

from . import BACKENDS


@BACKENDS.register("torch")
class TorchBackend:
    """Static-cache batched decoding for Llama-family models on the CPU; falls back to the transformers backend."""

    name = "torch"

    def check(self, cfg) -> None:
        return None

    def generate(self, model: Any, tokenizer: Any, prompts: Sequence[str], cfg, system: str | None = None,
                 desc: str = "generate", stats=None) -> list[str]:
        from ..generation import fast_generate

        return fast_generate(model, tokenizer, prompts, cfg, system=system, desc=desc, stats=stats)
