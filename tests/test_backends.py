"""Generation backends: registry, the transformers backend, and the vLLM configuration built without vLLM."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from secvec_bench.backends import backend_names, get_backend
from secvec_bench.backends.vllm_backend import build_plan, check_available, lora_rank_for, sampling_params
from secvec_bench.chat import prompt_text
from secvec_bench.errors import UserError
from secvec_bench.generation import GenConfig, generate, hf_generate

PROMPTS = ["What is the capital of France?", "What is 12 plus 30? Spell apple backwards.", "Hi"]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_registry_lists_all_and_rejects_unknown():
    assert {"torch", "transformers", "vllm"} <= set(backend_names())
    with pytest.raises(UserError, match="unknown generation backend 'nope'"):
        get_backend("nope")


def test_default_backend_is_our_loop_and_agrees_with_the_hf_loop(tok):
    from tiny import tiny_model

    model = tiny_model(tok)
    cfg = GenConfig(max_new_tokens=5, batch_size=2)
    assert cfg.backend == "torch"
    assert generate(model, tok, PROMPTS, cfg) == hf_generate(model, tok, PROMPTS, cfg)


def test_cache_key_view_keeps_old_keys_and_separates_backends():
    # keys computed with HF generate before `backend` existed stay valid; the new default loop gets its own keys
    assert "backend" not in GenConfig(backend="transformers").as_dict()
    assert GenConfig().as_dict()["backend"] == "torch"
    assert GenConfig(backend="vllm").as_dict()["backend"] == "vllm"
    assert GenConfig(backend="vllm").as_dict() != GenConfig().as_dict()


def test_vllm_plan_greedy_matches_genconfig(tok, tmp_path):
    cfg = GenConfig(max_new_tokens=7, batch_size=16, seed=3)
    plan = build_plan(cfg, tmp_path, tok, PROMPTS)
    assert plan.sampling == {"max_tokens": 7, "temperature": 0.0, "top_p": 1.0, "seed": 3,
                             "skip_special_tokens": True, "stop_token_ids": [tok.eos_token_id]}
    assert plan.engine["model"] == plan.engine["tokenizer"] == str(tmp_path)
    assert plan.engine["dtype"] == "float32" and plan.engine["max_num_seqs"] == 16
    assert plan.engine["trust_remote_code"] is False
    assert "enable_lora" not in plan.engine and plan.lora is None
    # prompts are our template's token ids, so vLLM cannot template differently
    expected = [tok(prompt_text(tok, p), add_special_tokens=False)["input_ids"] for p in PROMPTS]
    assert plan.prompt_token_ids == expected
    assert plan.engine["max_model_len"] == max(map(len, expected)) + 7


def test_vllm_plan_sampling_bf16_and_lora(tok, tmp_path):
    cfg = GenConfig(do_sample=True, temperature=0.7, top_p=0.9, bf16=True)
    plan = build_plan(cfg, tmp_path / "base", tok, PROMPTS, adapter_path=tmp_path / "adapter", lora_rank=12)
    assert plan.engine["dtype"] == "bfloat16"
    assert plan.sampling["temperature"] == 0.7 and plan.sampling["top_p"] == 0.9
    assert plan.engine["enable_lora"] is True and plan.engine["max_lora_rank"] == 16
    assert plan.lora == ("attack", 1, str(tmp_path / "adapter"))
    assert "prompt_token_ids" not in plan.as_dict()
    with pytest.raises(ValueError):
        build_plan(cfg, tmp_path, tok, PROMPTS, adapter_path=tmp_path)


def test_lora_rank_rounds_up_to_supported():
    assert [lora_rank_for(r) for r in (1, 8, 9, 16, 17, 64, 300)] == [8, 8, 16, 16, 32, 64, 320]
    with pytest.raises(UserError):
        lora_rank_for(1024)


def test_sampling_params_without_eos():
    assert "stop_token_ids" not in sampling_params(GenConfig(), None)


@pytest.mark.skipif(HAS_VLLM, reason="vllm installed: the missing-package error cannot occur")
def test_vllm_missing_is_one_line_user_error_and_never_imported(tok):
    from tiny import tiny_model

    with pytest.raises(UserError) as e:
        check_available()
    assert "pip install 'secvec-bench[vllm]'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError):
        generate(tiny_model(tok), tok, PROMPTS, GenConfig(backend="vllm"))
    assert "vllm" not in sys.modules


def test_vllm_without_cuda_is_user_error(monkeypatch):
    import torch

    from secvec_bench.backends import vllm_backend

    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        check_available()
