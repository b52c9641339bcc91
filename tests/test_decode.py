"""Our decode loop (secvec_bench.decode) against HF generate on random tiny Llamas: same greedy tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from secvec_bench import decode

STOP = 3


def llama(seed: int, **over) -> LlamaForCausalLM:
    """A 2-layer Llama with large random weights, so greedy outputs vary and sometimes hit the stop token."""
    kw = dict(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.4, tie_word_embeddings=True)
    kw.update(over)
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**kw)).eval()


def hf_greedy(model, prompts, max_new):
    width = max(map(len, prompts))
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(prompts):
        ids[r, width - len(s):] = torch.tensor(s)
        mask[r, width - len(s):] = 1
    with torch.no_grad():
        g = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                           pad_token_id=0, eos_token_id=STOP, temperature=None, top_p=None, top_k=None)
    outs = []
    for r in range(len(prompts)):
        new = g[r, width:].tolist()
        outs.append(new[: new.index(STOP)] if STOP in new else new)
    return outs


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [4], [20, 21, 22, 23, 24, 25], [30, 31, 32]]


@pytest.mark.parametrize("seed", range(6))
def test_greedy_tokens_equal_hf_generate_with_left_padding_and_early_stops(seed):
    model = llama(seed)
    ours = decode.Decoder(model).generate(PROMPTS, 16, {STOP}, decode.greedy)
    assert ours == hf_greedy(model, PROMPTS, 16)


def test_the_cases_exercise_early_stops_and_row_dropping():
    """Guard on the test above: some rows stop early while others run to the limit (the compaction path)."""
    lengths = [len(o) for seed in range(6) for o in decode.Decoder(llama(seed)).generate(PROMPTS, 16, {STOP},
                                                                                         decode.greedy)]
    assert min(lengths) < 16 and max(lengths) == 16


SHARED = [7, 8, 9, 10, 11, 12, 13, 14]
PREFIXED = [SHARED + [20, 21, 22], SHARED + [5], SHARED + [30, 31, 32, 33, 34, 35], SHARED + [6, 6]]


@pytest.mark.parametrize("seed", range(4))
def test_shared_prefix_is_computed_once_and_gives_hf_tokens(seed):
    model = llama(seed)
    assert decode.common_prefix(PREFIXED) == len(SHARED)
    assert decode.Decoder(model).generate(PREFIXED, 12, {STOP}, decode.greedy) == hf_greedy(model, PREFIXED, 12)


def test_common_prefix_leaves_every_row_a_token_of_its_own():
    assert decode.common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert decode.common_prefix([[1, 2], [3, 4]]) == 0
    assert decode.common_prefix([[5, 6, 7]]) == 2  # a single row: all but its last token
    whole = [SHARED, SHARED + [4, 5]]  # one prompt is the other's prefix
    assert decode.Decoder(llama(1)).generate(whole, 10, {STOP}, decode.greedy) == hf_greedy(llama(1), whole, 10)


def test_unpacked_fallback_gives_the_same_tokens(monkeypatch):
    model = llama(2)
    x, w = torch.randn(3, 32), torch.randn(40, 32)
    torch.testing.assert_close(decode.Packed(w)(x), torch.nn.functional.linear(x, w))
    packed = decode.Decoder(model)
    assert packed.head.packed is not None  # this torch build has oneDNN: the fast path is the one under test above
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    plain = decode.Decoder(model)
    assert plain.head.packed is None and plain.head.plain is not None
    assert plain.generate(PROMPTS, 12, {STOP}, decode.greedy) == packed.generate(PROMPTS, 12, {STOP}, decode.greedy)
    torch.testing.assert_close(decode.Packed(w)(x), torch.nn.functional.linear(x, w))


def test_multi_query_and_untied_head_and_rope_scaling():
    model = llama(1, num_key_value_heads=1, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    assert decode.Decoder(model).generate(PROMPTS, 12, {STOP}, decode.greedy) == hf_greedy(model, PROMPTS, 12)


def test_bf16_runs_and_mostly_agrees_with_fp32():
    model = llama(2)
    fp = decode.Decoder(model).generate(PROMPTS, 8, {STOP}, decode.greedy)
    bf = decode.Decoder(model, bf16=True).generate(PROMPTS, 8, {STOP}, decode.greedy)
    assert len(bf) == len(fp) and all(len(o) <= 8 for o in bf)
    assert sum(a[:1] == b[:1] for a, b in zip(fp, bf)) >= len(fp) - 1  # first tokens: rounding rarely flips argmax


def test_sampling_is_seeded_and_respects_top_p():
    model = llama(3)
    run = lambda s, p: decode.Decoder(model).generate(  # noqa: E731
        PROMPTS, 10, {STOP}, decode.sampler(1.0, p, torch.Generator().manual_seed(s)))
    assert run(0, 0.9) == run(0, 0.9)
    assert run(0, 1.0) != run(1, 1.0)
    # a nucleus this small keeps only the top token: sampling becomes greedy
    assert run(5, 1e-6) == decode.Decoder(model).generate(PROMPTS, 10, {STOP}, decode.greedy)


def test_unsupported_models_are_declined():
    from peft import LoraConfig, get_peft_model

    assert decode.supported(llama(0))
    assert not decode.supported(llama(0, attention_bias=True))
    assert not decode.supported(get_peft_model(llama(0), LoraConfig(r=2, target_modules=["q_proj"])))


def test_fast_generate_falls_back_to_hf_for_peft_models():
    from peft import LoraConfig, get_peft_model
    from tiny import tiny_model, tiny_tokenizer

    from secvec_bench.generation import GenConfig, fast_generate, hf_generate

    tok = tiny_tokenizer()
    pm = get_peft_model(tiny_model(tok), LoraConfig(r=2, target_modules=["q_proj"]))
    cfg = GenConfig(max_new_tokens=4, batch_size=2)
    prompts = ["What is the capital of France?", "Spell apple."]
    assert fast_generate(pm, tok, prompts, cfg) == hf_generate(pm, tok, prompts, cfg)
