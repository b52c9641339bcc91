"""`seqcls`: any Hugging Face `AutoModelForSequenceClassification` reward model, by hub id or local folder.

Input formatting follows the RM's own tokenizer, never a hand-written template (hand-written templates drifting from
the tokenizer's are a known source of wrong RM numbers, RewardBench #226): when the tokenizer has a chat template,
the text is `apply_chat_template([user: prompt, assistant: response])`; otherwise (BERT/DeBERTa-style cross-encoder
RMs) the tokenizer gets `(prompt, response)` as a text pair. The template's sha256 is part of `config()`.

Padding must not change a score (RewardBench #137): we pad, pass the attention mask, and pass explicit position ids
(cumulative sum of the mask) so left padding does not shift positions; decoder classifiers pool the last non-pad
token, so a tokenizer without a pad token gets its EOS as pad *and* the model config learns that id. Inputs longer
than `max_length` are truncated from the left, keeping the response (what is being judged) intact.

The reward is logit column `label_index` (default 0; a 2-class classifier can point at its "safe"/"good" column).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from ..io import sha256_bytes, sha256_file
from .base import RMS, SingleFromBatch


def _load_seqcls(model: str, trust_remote_code: bool = False):
    """(tokenizer, model) from a local folder or hub id; errors become UserError naming the model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    where = Path(model)
    if not where.exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise UserError(f"--rm-model {model}: folder not found")
    try:
        tok = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        net = AutoModelForSequenceClassification.from_pretrained(
            model, trust_remote_code=trust_remote_code, use_safetensors=True if where.is_dir() else None
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load sequence-classification RM {model!r}: {str(exc).splitlines()[0]}") from None
    return tok, net


@RMS.register("seqcls")
class SeqClsRM(SingleFromBatch):
    """Any AutoModelForSequenceClassification RM (hub id or folder; its own chat template). Option: model=..."""

    name = "seqcls"
    reward_is_logit = True
    slow = True  # a transformer forward per response: evaluated on the --max-pairs-slow prefix

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 8,
        max_length: int = 1024,
        label_index: int = 0,
        trust_remote_code: bool = False,
        padding_side: str | None = None,
        **_: Any,
    ) -> None:
        import torch

        if not model:
            raise UserError("--rm seqcls needs --rm-model ID_OR_FOLDER (a sequence-classification reward model)")
        self.model_id = str(model)
        self.tokenizer, self.model = _load_seqcls(self.model_id, trust_remote_code)
        self.model.eval()
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        self.label_index = int(label_index)
        n_labels = int(getattr(self.model.config, "num_labels", 1))
        if not 0 <= self.label_index < n_labels:
            raise UserError(f"--rm-label-index {self.label_index} out of range for a {n_labels}-label model")
        tok = self.tokenizer
        if tok.pad_token_id is None:
            if tok.eos_token_id is None:
                raise UserError(f"RM tokenizer of {self.model_id} has neither pad nor eos token")
            tok.pad_token = tok.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = tok.pad_token_id
        tok.truncation_side = "left"
        if padding_side is not None:
            if padding_side not in ("left", "right"):
                raise UserError(f"padding side must be left or right, got {padding_side!r}")
            tok.padding_side = padding_side
        self.template = getattr(tok, "chat_template", None) or None
        self._pass_positions = "position_ids" in inspect.signature(self.model.forward).parameters
        self._torch = torch

    def config(self) -> dict[str, Any]:
        folder = Path(self.model_id)
        weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        return {
            "rm": self.name,
            "model": self.model_id,
            "weights_sha256": sha256_bytes("".join(sha256_file(w) for w in weights).encode()) if weights else None,
            "chat_template_sha256": sha256_bytes(self.template.encode()) if self.template else None,
            "max_length": self.max_length,
            "label_index": self.label_index,
            "padding_side": self.tokenizer.padding_side,
        }

    def _encode(self, prompts: Sequence[str], responses: Sequence[str]):
        tok = self.tokenizer
        if self.template:
            texts = [
                tok.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
                )
                for p, r in zip(prompts, responses)
            ]
            # the template already wrote any BOS/special tokens: do not add them twice
            return tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                       add_special_tokens=False)
        return tok(list(prompts), list(responses), padding=True, truncation="longest_first",
                   max_length=self.max_length, return_tensors="pt")

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        torch = self._torch
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                enc = self._encode(prompts[start : start + self.batch_size], responses[start : start + self.batch_size])
                kwargs = dict(enc)
                if self._pass_positions:
                    mask = enc["attention_mask"]
                    kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
                logits = self.model(**kwargs).logits
                out.extend(float(x) for x in logits[:, self.label_index].float())
        return out
