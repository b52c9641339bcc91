"""Text helpers shared by judges: chat-template tags that can appear inside a model's response.

A response may contain its own template's tags (`<|im_end|>`, `<|im_start|>assistant`, `[/INST]`, `</s>`), either
because a fine-tuned model leaks them or because an attack plants them to fool the judge (HarmBench #91). Judges
that read the text strip them before matching; the llm judge instead breaks them up (`llm.defang`) so the judge
model still sees that they were there.
"""

from __future__ import annotations

import re

TEMPLATE_TAG = re.compile(
    r"<\|im_start\|>\s*(?:system|user|assistant)?|<\|[^|<>]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>"
    r"(?:\s*(?:model|user))?"
)


def strip_template_tags(text: str) -> str:
    return TEMPLATE_TAG.sub(" ", text)
