"""Chat formatting, only through the tokenizer's own `apply_chat_template`.

Hand-written templates drift from the tokenizer's (HarmBench #89, RewardBench #226), so we never write one. To train
on assistant tokens only we render the conversation twice per assistant turn (the prefix with the generation prompt,
and the prefix through that turn) and label the characters in between; token offsets map characters to tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE outside assistant turns


def render(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def prompt_text(tokenizer: Any, user: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return render(tokenizer, messages, add_generation_prompt=True)


def assistant_spans(tokenizer: Any, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Full text and the character spans of every assistant turn (content through its end-of-turn marker)."""
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not full.startswith(through) or not through.startswith(before):
            raise ValueError("chat template is not prefix-stable; cannot locate assistant tokens")
        end = len(through.rstrip())  # keep the end-of-turn token, drop the trailing newline
        spans.append((len(before), end))
    return full, spans


def encode(tokenizer: Any, messages: Sequence[dict], max_len: int) -> Encoded:
    """Token ids and labels; labels are IGNORE except on assistant content and its end-of-turn token."""
    full, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        if b <= a:
            continue
        for s, e in spans:
            if a >= s and b <= e:
                labels[t] = ids[t]
                break
    ids, labels = ids[:max_len], labels[:max_len]
    return Encoded(ids, labels)
