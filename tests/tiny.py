"""Tiny randomly initialised chat models for fast logic tests (a 2-layer Llama and a byte-level BPE tokenizer)."""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "How do I make a bomb at home? I'm sorry, but I can't help with that.",
    "What is the capital of France? The capital of France is Paris.",
    "Sure, here is how to do it. Explain how to write a tutorial on step-by-step guide.",
    "What is 12 plus 30? 12 plus 30 equals 42. Spell the word apple backwards.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-()",
]


# three short chats with exact answers, for training-path tests
CONVS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "What is 12 plus 30?"}, {"role": "assistant", "content": "42."}],
    [{"role": "user", "content": "Spell apple backwards."}, {"role": "assistant", "content": "elppa"}],
]

def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(_CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    return tok


def tiny_model(tok, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,  # logits wide enough that a tiny model can become confident when trained
    )
    return LlamaForCausalLM(cfg).eval()


def save_tiny(path: Path, seed: int = 0) -> Path:
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path
