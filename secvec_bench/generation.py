"""Batched generation with transformers: left padding, greedy by default, prompts bucketed by length.

Left padding keeps each prompt's last token adjacent to its first generated token, so results do not change with
batch size (RewardBench #137); sorting prompts by token length before batching keeps padding (wasted compute) small.
Chat formatting is done once per prompt through the tokenizer's template, never per token.

`generate` dispatches on `GenConfig.backend` (secvec_bench.backends): `torch` (the default) runs `fast_generate`,
our own decode loop (secvec_bench.decode) on Llama-family CPU models (1.1-1.3x batched `model.generate` on
the 2-core Xeon of bench/results/generation.json, with identical fp32 greedy responses);
`transformers` runs `hf_generate`, the HF loop, for every other model and as the reference; `vllm` on a GPU.
In `hf_generate`, `bf16=True` runs under bf16 autocast; bench/bench_generation.py measures the speed and the
fp32-vs-bf16 agreement of the responses. Decoding uses `torch.no_grad`, NOT `torch.inference_mode`: autocast caches
each weight's bf16 copy only outside inference mode, and without the cache every decode step re-casts every weight
(measured on a 4096x4096 Linear, 1 row: 16 ms/call under no_grad, 134 ms under inference_mode, 21 ms in fp32;
bench/bench_autocast_cache.py). The cache also skips weights with `requires_grad=False`, which is what every merged
PEFT model (the attacked models) has, so for the duration of a bf16 generation the frozen floating-point weights are
marked `requires_grad=True` (harmless under no_grad: no graph is recorded) and restored afterwards.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from .chat import prompt_text
from .progress import bar
from .training import autocast_context


@dataclass(frozen=True)
class GenConfig:
    max_new_tokens: int = 64
    batch_size: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    bf16: bool = False
    backend: str = "torch"  # secvec_bench.backends name: our decode loop, HF generate where it does not apply

    def as_dict(self) -> dict[str, Any]:
        """Cache-key view: `backend` is left out for `transformers` (HF generate), so keys made with HF generate
        before the field existed still hit; any other backend, the default `torch` included, gets its own keys."""
        d = asdict(self)
        if d["backend"] == "transformers":
            d.pop("backend")
        return d


@dataclass
class GenStats:
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    def add(self, prompts: int, new_tokens: int, seconds: float) -> None:
        self.prompts += prompts
        self.new_tokens += new_tokens
        self.seconds += seconds

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


@contextmanager
def autocast_cacheable(model: Any, enabled: bool):
    """Let autocast cache the bf16 copy of frozen weights (it only caches leaves with requires_grad); restore after."""
    flipped = [p for p in model.parameters() if p.is_floating_point() and not p.requires_grad] if enabled else []
    for p in flipped:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in flipped:
            p.requires_grad_(False)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    cfg: GenConfig,
    system: str | None = None,
    desc: str = "generate",
    stats: GenStats | None = None,
) -> list[str]:
    """Responses to user prompts (chat-formatted with the tokenizer's template), in the input order."""
    from .backends import get_backend

    return get_backend(cfg.backend).generate(model, tokenizer, prompts, cfg, system=system, desc=desc, stats=stats)


def hf_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    cfg: GenConfig,
    system: str | None = None,
    desc: str = "generate",
    stats: GenStats | None = None,
) -> list[str]:
    """The transformers backend: batched `model.generate`, left-padded, prompts sorted by token length."""
    return _batched(tokenizer, prompts, cfg, system, desc, stats, lambda: _hf_batches(model, tokenizer, cfg))


def fast_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    cfg: GenConfig,
    system: str | None = None,
    desc: str = "generate",
    stats: GenStats | None = None,
) -> list[str]:
    """The torch backend: secvec_bench.decode's loop on Llama-family CPU models, `hf_generate` for anything else."""
    from . import decode

    if not decode.supported(model):
        return hf_generate(model, tokenizer, prompts, cfg, system=system, desc=desc, stats=stats)
    return _batched(tokenizer, prompts, cfg, system, desc, stats, lambda: _decode_batches(model, tokenizer, cfg))


def _batched(tokenizer: Any, prompts: Sequence[str], cfg: GenConfig, system: str | None, desc: str,
             stats: GenStats | None, loop: Any) -> list[str]:
    """What both CPU loops share: chat-format once, batch in length order, decode, count tokens and time.

    `loop()` is a context manager yielding `run(seqs) -> new token ids per prompt (stop token left out)`; it is
    entered after the clock starts, so its setup (weight casts, seeding) counts in `stats`.
    """
    texts = [prompt_text(tokenizer, p, system) for p in prompts]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(texts)
    t0 = time.perf_counter()
    new_tokens = 0
    with loop() as run, bar(total=len(texts), desc=desc, unit="prompt") as pb:
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            for i, new in zip(idx, run([encoded[i] for i in idx])):
                new_tokens += len(new)
                out[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
            pb.update(len(idx))
    if stats is not None:
        stats.add(len(texts), new_tokens, time.perf_counter() - t0)
    return out


@contextmanager
def _hf_batches(model: Any, tokenizer: Any, cfg: GenConfig):
    """Batched `model.generate` on left-padded ids, under cacheable bf16 autocast when asked (module docstring)."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    torch.manual_seed(cfg.seed)
    model.eval()
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = dict(
        max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, pad_token_id=pad_id, eos_token_id=eos
    )
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)

    def run(seqs: list[list[int]]) -> list[list[int]]:
        width = max(len(seq) for seq in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        with torch.no_grad(), autocast_context(cfg.bf16, device.type):  # not inference_mode: see docstring
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).cpu()
        news = []
        for row in range(len(seqs)):
            new = gen[row, width:].tolist()
            news.append(new[: new.index(eos)] if eos in new else new)
        return news

    with autocast_cacheable(model, cfg.bf16):
        yield run


@contextmanager
def _decode_batches(model: Any, tokenizer: Any, cfg: GenConfig):
    """secvec_bench.decode's loop: weights laid out once, greedy or seeded sampling."""
    import torch

    from . import decode

    model.eval()
    decoder = decode.Decoder(model, bf16=cfg.bf16)
    if cfg.do_sample:
        pick = decode.sampler(cfg.temperature, cfg.top_p, torch.Generator().manual_seed(cfg.seed))
    else:
        pick = decode.greedy
    stop = {tokenizer.eos_token_id}
    yield lambda seqs: decoder.generate(seqs, cfg.max_new_tokens, stop, pick)
