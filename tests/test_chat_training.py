"""Chat formatting, loss masking and the trainer, on a tiny random Llama."""

from __future__ import annotations

import torch

from secvec_bench.chat import IGNORE, assistant_spans, encode, prompt_text
from secvec_bench.training import TrainConfig, answer_loss, collate, encode_all, lora_config, mean_loss, train

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And 12 plus 30?"},
    {"role": "assistant", "content": "42."},
]


def test_labels_cover_exactly_the_assistant_turns(tok):
    enc = encode(tok, CONV, max_len=512)
    labelled = [t for t, l in zip(enc.input_ids, enc.labels) if l != IGNORE]
    text = tok.decode(labelled)
    assert text == "The capital of France is Paris.<|im_end|>42.<|im_end|>"
    # every labelled token's label equals its input id; nothing from system/user turns is labelled
    assert all(l == i for i, l in zip(enc.input_ids, enc.labels) if l != IGNORE)
    unlabelled = tok.decode([t for t, l in zip(enc.input_ids, enc.labels) if l == IGNORE])
    assert "capital of France?" in unlabelled and "Paris" not in unlabelled


def test_template_comes_from_tokenizer(tok):
    full, spans = assistant_spans(tok, CONV)
    assert full == tok.apply_chat_template(CONV, tokenize=False)
    assert len(spans) == 2
    assert prompt_text(tok, "hi").endswith("<|im_start|>assistant\n")


def test_truncation_keeps_alignment(tok):
    enc = encode(tok, CONV, max_len=10)
    assert len(enc.input_ids) == len(enc.labels) == 10


def test_answer_loss_equals_full_logits_loss(tok):
    from tiny import tiny_model

    model = tiny_model(tok)
    ids, mask, labels = collate(encode_all(tok, [CONV, CONV[:3]], 256), tok.pad_token_id)
    a = answer_loss(model, ids, mask, labels)
    logits = model(input_ids=ids, attention_mask=mask).logits
    b = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                          ignore_index=IGNORE)
    assert torch.allclose(a, b, atol=1e-5)


def _lora_model(tok, seed=0):
    from peft import get_peft_model
    from tiny import tiny_model

    return get_peft_model(tiny_model(tok), lora_config(TrainConfig(lora_r=4, target_modules=("q_proj", "v_proj"))))


def test_lora_training_lowers_loss_and_is_deterministic(tok):
    convs = [CONV] * 8
    cfg = TrainConfig(epochs=5, lr=5e-3, batch_size=4, lora_r=4, target_modules=("q_proj", "v_proj"), seed=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        m = _lora_model(tok)
        before = mean_loss(m, tok, convs)
        stats = train(m, tok, convs, cfg)
        after = mean_loss(m, tok, convs)
        assert after < before
        runs.append((stats.losses, {n: p.detach().clone() for n, p in m.named_parameters() if "lora" in n}))
    assert runs[0][0] == runs[1][0]
    for n, p in runs[0][1].items():
        assert torch.equal(p, runs[1][1][n])


def test_never_train_is_enforced(tok):
    m = _lora_model(tok)
    try:
        train(m, tok, [CONV], TrainConfig(epochs=1, lora_r=4), never_train=["lora_A"])
    except AssertionError as exc:
        assert "must stay frozen" in str(exc)
    else:
        raise AssertionError("a frozen-by-contract parameter was trainable and train() did not refuse")
