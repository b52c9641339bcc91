"""Fine-tuning: LoRA or full, loss on assistant tokens only, seeded and deterministic.

One small loop instead of the HF Trainer, so that what is trainable is explicit: the optimiser receives exactly the
parameters with `requires_grad=True`, and the security-vector defense relies on that (its frozen adapter must never
reach the optimiser; `train` asserts nothing named in `never_train` is in the optimiser).
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .chat import IGNORE, encode
from .progress import bar

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning stage (alignment, security vectors or attack)."""

    mode: str = "lora"  # "lora" or "full"
    epochs: int = 2
    lr: float = 2e-4
    batch_size: int = 8
    max_len: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    weight_decay: float = 0.0
    seed: int = 0
    bf16: bool = False  # autocast matmuls to bf16 on CPUs that support it

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass
class TrainStats:
    steps: int = 0
    examples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "examples": self.examples,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "mean_last_epoch_loss": self._tail_mean(),
        }

    def _tail_mean(self) -> float | None:
        if not self.losses:
            return None
        k = max(1, len(self.losses) // 2)
        return float(sum(self.losses[-k:]) / k)


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, mask, labels


def encode_all(tokenizer: Any, conversations: Sequence[Sequence[dict]], max_len: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for msgs in conversations:
        e = encode(tokenizer, msgs, max_len)
        if any(l != IGNORE for l in e.labels):
            out.append((e.input_ids, e.labels))
    return out


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def autocast_context(bf16: bool, device_type: str = "cpu"):
    """bf16 autocast on `device_type` (matmuls in bf16, reductions and norms kept in fp32), or nothing."""
    import torch

    if bf16:
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def frozen_linears_in_bf16(model: Any, enabled: bool):
    """Hold the frozen `nn.Linear` weights in bf16 for the duration of a bf16 training stage; restore fp32 after.

    Why: autocast casts every weight to bf16 at each use and forgets the copy when its context exits, which the
    trainer does once per step. At the pipeline's batches (8 rows of ~54 tokens) dtype copies, mostly these casts,
    took 28% of a bf16 LoRA step's op time on the 2-core AMX Xeon (2026-12-03), more than its matmuls; holding the
    weights cut the step time by 7% there (8.43 vs 9.02 s for 8 steps). A frozen weight does not change, so one
    cast per stage gives autocast the bf16 tensor it would have made (the same round-to-nearest cast: losses and
    gradients are unchanged, tests/test_perf_config.py checks it). Trainable weights (full fine-tuning, LoRA A/B)
    and embeddings (their lookup output would turn the fp32 residual stream into bf16) stay as they are.
    """
    import torch

    held = []
    if enabled:
        # a tied LM head shares its weight with the input embedding: casting it would cast the embedding too
        embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        for mod in model.modules():
            w = getattr(mod, "weight", None)
            if (isinstance(mod, torch.nn.Linear) and w is not None and not w.requires_grad
                    and w.dtype == torch.float32 and id(w) not in embedding_weights):
                held.append((w, w.data))
                w.data = w.data.to(torch.bfloat16)
    try:
        yield
    finally:
        for w, original in held:
            w.data = original


@contextmanager
def bf16_attention(model: Any, enabled: bool):
    """For a bf16 CPU training stage, replace SDPA by our grouped attention (`grouped_attention.py`), or by
    transformers' eager attention for model families it does not cover; restore the model's own after.

    Why not SDPA: torch's CPU flash-attention backward is slow in bf16 at training lengths. In a bf16 LoRA step on
    SmolLM2 (8 x 128 tokens, 2-core AMX Xeon, 2026-12-05) it took 320 ms of ~1.7 s, against 52 ms for eager
    attention's batched matmuls, and the step ran 1.33 s with eager attention against 1.55 s with SDPA. Why not
    eager: its copies and fp32 passes around those matmuls (`grouped_attention.py` says which) grow with the square
    of the length. In fp32 SDPA and eager are within noise, so fp32 stages keep SDPA. The arithmetic is the same
    attention; only rounding differs.
    """
    from . import grouped_attention

    base = base_model(model)
    before = getattr(getattr(base, "config", None), "_attn_implementation", None)
    switch = enabled and before is not None and hasattr(base, "set_attn_implementation")
    if switch:
        base.set_attn_implementation(grouped_attention.IMPLEMENTATION if grouped_attention.supported(base) else "eager")
    try:
        yield
    finally:
        if switch:
            base.set_attn_implementation(before)


@contextmanager
def training_speedups(model: Any, bf16: bool):
    """Everything a training stage runs under for speed; each part's docstring says why and what it measured.

    The fused LoRA op everywhere; on the CPU under bf16 also frozen weights held in bf16 and `bf16_attention`.
    `bench/bench_training.py` times its step under this same context.
    """
    from .fused_lora import fused_lora

    cpu_bf16 = bf16 and _on_cpu(model)
    with frozen_linears_in_bf16(model, cpu_bf16), bf16_attention(model, cpu_bf16), fused_lora(model):
        yield


def _on_cpu(model: Any) -> bool:
    """CPU autocast is where the per-step casts were measured; on a GPU they are cheap and left to autocast."""
    return all(p.device.type == "cpu" for p in model.parameters())


def answer_loss(model: Any, ids, mask, labels, reduction: str = "mean"):
    """Cross-entropy on answer tokens, with the LM head applied only where a label exists.

    The output projection (vocabulary 49k for SmolLM2) is a fifth of the model's FLOPs; prompt tokens carry no loss,
    so projecting only the labelled positions saves that work on every step without changing the loss. A plain
    linear head goes through `head_cross_entropy`, which never holds the [labelled, vocabulary] logits.
    """
    import torch

    from .head_loss import head_cross_entropy

    base = base_model(model)
    device = base.get_output_embeddings().weight.device  # batches are built on the CPU; follow the model
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != IGNORE
    h = hidden[:, :-1][keep]
    head = base.get_output_embeddings()
    if type(head) is torch.nn.Linear and head.bias is None:  # a plain head: blockwise, no logits kept
        return head_cross_entropy(h, head.weight, target[keep], reduction=reduction)
    logits = head(h).float()
    return torch.nn.functional.cross_entropy(logits, target[keep], reduction=reduction)


def train(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict]],
    cfg: TrainConfig,
    desc: str = "train",
    never_train: Sequence[str] = (),
    accelerator: Any = None,
) -> TrainStats:
    """Train the parameters of `model` that require grad, on assistant tokens only.

    `never_train`: substrings of parameter names that must not be trainable (e.g. ".sv." for the security-vector
    adapter); asserted before the first step so a PEFT default that flips requires_grad cannot slip through.

    `accelerator` (an `accelerate.Accelerator`, under `accelerate launch`): data parallel over its processes. Every
    process builds the same shuffled batches; process r takes rows r, r+W, ... of each batch, its loss is its
    labelled tokens' summed cross-entropy over the whole batch's labelled-token count, and the trainable gradients
    are summed across processes before the step, so the update equals the single-process one (up to float order).
    Only trainable parameters are reduced (a few MB for LoRA), so no DDP wrapper is needed.
    """
    import torch

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    data = encode_all(tokenizer, conversations, cfg.max_len)
    if not data:
        raise ValueError("no training example has assistant tokens")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for n, _ in params:
        for bad in never_train:
            if bad in n:
                raise AssertionError(f"parameter {n} is trainable but must stay frozen")
    if not params:
        raise AssertionError("nothing to train")
    optim = torch.optim.AdamW([p for _, p in params], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0 - s / max(1, total))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stats = TrainStats()
    t0 = time.perf_counter()
    model.train()
    # data parallel steps run the same autocast (shard_loss), so the held bf16 weights serve both paths
    with training_speedups(model, cfg.bf16), bar(total=total, desc=desc, unit="step") as pb:
        for _epoch in range(cfg.epochs):
            order = list(range(len(data)))
            rng.shuffle(order)
            for s in range(0, len(order), cfg.batch_size):
                batch = [data[i] for i in order[s : s + cfg.batch_size]]
                ids, mask, labels = collate(batch, pad_id)
                if accelerator is None:
                    with autocast_context(cfg.bf16):
                        loss = answer_loss(model, ids, mask, labels)
                    loss.backward()
                else:
                    loss = _data_parallel_step(model, ids, mask, labels, cfg.bf16, accelerator,
                                               [p for _, p in params])
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
                stats.steps += 1
                stats.examples += len(batch)
                stats.tokens += int(mask.sum())
                stats.losses.append(float(loss.detach()))
                pb.update(1)
                pb.set_postfix(loss=f"{stats.losses[-1]:.3f}")
    model.eval()
    stats.seconds = time.perf_counter() - t0
    return stats


def shard_loss(model: Any, ids, mask, labels, rank: int, world: int, bf16: bool = False, device_type: str = "cpu"):
    """This process's share of a batch's mean answer loss: rows rank::world, summed, over the batch's label count.

    Summing shard_loss over ranks gives exactly the batch's token-mean loss, so summed gradients equal the full-batch
    gradient. A rank with no rows (batch smaller than the world) returns None.
    """
    count = int((labels[:, 1:] != IGNORE).sum())
    ids, mask, labels = ids[rank::world], mask[rank::world], labels[rank::world]
    if ids.shape[0] == 0 or count == 0 or not bool((labels[:, 1:] != IGNORE).any()):
        return None
    device = next(model.parameters()).device
    with autocast_context(bf16, device_type):
        return answer_loss(model, ids.to(device), mask.to(device), labels.to(device), reduction="sum") / count


def _data_parallel_step(model: Any, ids, mask, labels, bf16: bool, accelerator: Any, trainable: list) -> Any:
    import torch

    rank, world = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    loss = shard_loss(model, ids, mask, labels, rank, world, bf16, device.type)
    if loss is not None:
        loss.backward()
    local = loss.detach() if loss is not None else torch.zeros((), device=device)
    for p in trainable:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if world > 1:
            p.grad.copy_(accelerator.reduce(p.grad, reduction="sum"))
    return accelerator.reduce(local, reduction="sum") if world > 1 else local


def mean_loss(model: Any, tokenizer: Any, conversations: Sequence[Sequence[dict]], max_len: int = 256,
              batch_size: int = 16, bf16: bool = False) -> float:
    """Token-weighted cross-entropy on assistant tokens (held-out loss for utility)."""
    import torch

    from .fused_lora import fused_lora

    data = encode_all(tokenizer, conversations, max_len)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), fused_lora(model):
        for s in range(0, len(data), batch_size):
            ids, mask, labels = collate(data[s : s + batch_size], pad_id)
            with autocast_context(bf16):
                loss = answer_loss(model, ids, mask, labels, reduction="sum")
            total += float(loss)
            count += int((labels[:, 1:] != IGNORE).sum())
    return total / count if count else float("nan")
