"""Generation backends, chosen by name (`--backend`): `torch` (default: our decode loop, secvec_bench.decode,
for Llama-family CPU models, HF generate for the rest), `transformers` (HF generate, CPU or GPU) and `vllm` (GPU,
optional).

A backend turns (model, tokenizer, prompts, GenConfig) into responses. The model handed over is the loaded model
state the pipeline built (aligned, or aligned + attack update with the defense removed); a backend that cannot run
a torch module (vLLM) serialises it, or is given an adapter path for native LoRA serving. Optional engines are
imported only inside the backend that needs them, so `import secvec_bench` never pulls in vLLM.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Backend

BACKENDS: Registry[type] = Registry("generation backend")


def get_backend(name: str) -> Backend:
    _load_builtins()
    return BACKENDS.get(name)()


def backend_names() -> list[str]:
    _load_builtins()
    return BACKENDS.names()


def _load_builtins() -> None:
    # register on import; vllm itself is not imported
    from . import torch_backend, transformers_backend, vllm_backend  # noqa: F401


__all__ = ["BACKENDS", "Backend", "get_backend", "backend_names"]
