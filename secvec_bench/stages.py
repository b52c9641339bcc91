"""The stages of the pipeline, each cached under a key of everything that determines it.

align     base model + refusal/benign data  -> merged aligned model (safetensors folder)
adapter   aligned model + data              -> a LoRA adapter (security vectors, controls)
attack    aligned model + scenario data + defense's frozen adapters -> attack LoRA (or full weights)
generate  a model state + prompts           -> responses
judge     responses + judge config          -> verdicts
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from .cache import StageCache
from .defenses.base import DefenseContext, Prepared
from .generation import GenConfig, GenStats, generate
from .io import atomic_write_json, sha256_json
from .models import load_model
from .progress import status
from .training import TrainConfig, lora_config, train

ATTACK_ADAPTER = "attack"


def _find_adapter(folder: Path) -> Path:
    """PEFT saves a non-default adapter in a subfolder named after it; return the folder with adapter_config.json."""
    hits = sorted(p.parent for p in folder.rglob("adapter_config.json"))
    if not hits:
        raise RuntimeError(f"no adapter saved in {folder}")
    return hits[0]


def seed_init(seed: int) -> None:
    """Seed torch before adapters are created: PEFT draws LoRA A matrices from the global RNG, which torch seeds
    differently in every process, so without this a rebuilt (e.g. resumed-after-kill) stage gives other weights."""
    import torch

    torch.manual_seed(seed)


def align(cache: StageCache, base_path: Path, base_key: str, tokenizer: Any, conversations: list[list[dict]],
          cfg: TrainConfig, trust_remote_code: bool = False) -> tuple[Path, str]:
    """LoRA-align the base model on refusals + benign answers, merge, and save a full safetensors model."""
    key = cache.key("align", base=base_key, data=sha256_json(conversations), cfg=cfg.as_dict())

    def build(tmp: Path) -> dict:
        from peft import get_peft_model

        status(f"aligning the base model on {len(conversations)} examples (LoRA r{cfg.lora_r}, {cfg.epochs} epochs)")
        model = load_model(base_path, trust_remote_code=trust_remote_code)
        seed_init(cfg.seed)
        peft_model = get_peft_model(model, lora_config(cfg))
        stats = train(peft_model, tokenizer, conversations, cfg, desc="align")
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        return {"train": stats.as_dict()}

    return cache.build_dir("align", key, "align", build), key


def train_adapter(ctx: DefenseContext, name: str, conversations: list[list[dict]], cfg: TrainConfig,
                  label: str) -> tuple[Path, str]:
    """A LoRA adapter trained on the aligned model (weights frozen), saved alone. Used by security vectors."""
    key = ctx.cache.key("adapter", aligned=ctx.aligned_key, name=name, data=sha256_json(conversations),
                        cfg=cfg.as_dict())

    def build(tmp: Path) -> dict:
        from peft import get_peft_model

        status(f"training adapter {name!r} on {len(conversations)} examples")
        model = load_model(ctx.aligned_path, trust_remote_code=ctx.trust_remote_code)
        seed_init(cfg.seed)
        peft_model = get_peft_model(model, lora_config(cfg), adapter_name=name)
        stats = train(peft_model, ctx.tokenizer, conversations, cfg, desc=name)
        peft_model.save_pretrained(tmp / "adapter", selected_adapters=[name])
        return {"train": stats.as_dict()}

    folder = ctx.cache.build_dir("adapter", key, label, build)
    return _find_adapter(folder), key


def attach_frozen(model: Any, frozen: dict[str, Path]):
    """Wrap `model` in PEFT with every frozen adapter loaded, returning the PeftModel (or `model` if none)."""
    from peft import PeftModel

    if not frozen:
        return model
    names = list(frozen)
    pm = PeftModel.from_pretrained(model, str(frozen[names[0]]), adapter_name=names[0], is_trainable=False)
    for n in names[1:]:
        pm.load_adapter(str(frozen[n]), adapter_name=n, is_trainable=False)
    return pm


def build_attack_model(model: Any, frozen: dict[str, Path], cfg: TrainConfig):
    """The model to attack: frozen adapters active (never trainable) plus the trainable part.

    LoRA mode: a new `attack` adapter is the only trainable thing. Full mode: every base weight is trainable, the
    frozen adapters are not. PEFT's `set_adapter([...])` marks all listed adapters trainable (DESIGN.md pitfall), so
    requires_grad is set by hand afterwards, and `train` asserts it.
    """
    from peft import get_peft_model

    frozen_tags = [f".{n}." for n in frozen]
    seed_init(cfg.seed)
    if cfg.mode == "lora":
        if frozen:
            pm = attach_frozen(model, frozen)
            pm.add_adapter(ATTACK_ADAPTER, lora_config(cfg))
            pm.base_model.set_adapter([*frozen, ATTACK_ADAPTER])
        else:
            pm = get_peft_model(model, lora_config(cfg), adapter_name=ATTACK_ADAPTER)
        for n, p in pm.named_parameters():
            p.requires_grad = f".{ATTACK_ADAPTER}." in n
        return pm, frozen_tags
    if cfg.mode == "full":
        pm = attach_frozen(model, frozen)
        if frozen:
            pm.base_model.set_adapter(list(frozen))
        for n, p in pm.named_parameters():
            p.requires_grad = not any(t in n for t in frozen_tags) and "lora_" not in n
        return pm, frozen_tags
    raise ValueError(f"unknown training mode {cfg.mode!r}")


def attack(ctx: DefenseContext, prepared: Prepared, conversations: list[list[dict]], cfg: TrainConfig,
           label: str) -> tuple[Path, str]:
    key = ctx.cache.key("attack", aligned=ctx.aligned_key, defense=prepared.key, data=sha256_json(conversations),
                        cfg=cfg.as_dict())

    def build(tmp: Path) -> dict:
        status(f"attack fine-tuning ({cfg.mode}) on {len(conversations)} examples [{label}]")
        model = load_model(ctx.aligned_path, trust_remote_code=ctx.trust_remote_code)
        pm, frozen_tags = build_attack_model(model, prepared.frozen_adapters, cfg)
        stats = train(pm, ctx.tokenizer, conversations, cfg, desc="attack", never_train=frozen_tags)
        if cfg.mode == "lora":
            pm.save_pretrained(tmp / "adapter", selected_adapters=[ATTACK_ADAPTER])
        else:
            base = pm.unload() if prepared.frozen_adapters else pm  # drop frozen adapters without merging them
            base.save_pretrained(tmp / "model", safe_serialization=True)
            ctx.tokenizer.save_pretrained(tmp / "model")
        atomic_write_json(tmp / "attack.json", {"mode": cfg.mode})
        return {"train": stats.as_dict(), "mode": cfg.mode}

    return ctx.cache.build_dir("attack", key, label, build), key


def load_attacked(aligned_path: Path, attack_dir: Path, trust_remote_code: bool = False):
    """The attacked model for inference, defense removed: aligned weights + attack update only."""
    from peft import PeftModel

    mode = json.loads((attack_dir / "attack.json").read_text())["mode"]
    if mode == "full":
        return load_model(attack_dir / "model", trust_remote_code=trust_remote_code)
    model = load_model(aligned_path, trust_remote_code=trust_remote_code)
    pm = PeftModel.from_pretrained(model, str(_find_adapter(attack_dir / "adapter")))
    return pm.merge_and_unload()


def load_with_adapters(aligned_path: Path, adapters: dict[str, Path], trust_remote_code: bool = False):
    """Aligned model with adapters merged in (e.g. the SV-on control)."""
    model = load_model(aligned_path, trust_remote_code=trust_remote_code)
    pm = attach_frozen(model, adapters)
    if adapters:
        pm.base_model.set_adapter(list(adapters))
        return pm.merge_and_unload()
    return pm


def generate_stage(cache: StageCache, state_key: str, loader, tokenizer: Any, prompts: Sequence[str],
                   cfg: GenConfig, template_hash: str, label: str, gen_stats: GenStats) -> list[str]:
    """Responses of a model state to prompts; `loader()` is only called on a cache miss."""
    key = cache.key("generate", state=state_key, prompts=sha256_json(list(prompts)), cfg=cfg.as_dict(),
                    template=template_hash)

    def compute() -> list[str]:
        status(f"generating {len(prompts)} responses [{label}]")
        model = loader()
        return generate(model, tokenizer, prompts, cfg, desc=f"generate {label}", stats=gen_stats)

    return cache.json_stage("generate", key, label, compute)


def judge_stage(cache: StageCache, judge: Any, prompts: Sequence[str], responses: Sequence[str],
                label: str) -> list[dict]:
    key = cache.key("judge", judge=judge.config(), data=sha256_json([list(prompts), list(responses)]))
    return cache.json_stage("judge", key, f"{judge.name}:{label}",
                            lambda: [v.as_dict() for v in judge.score_batch(prompts, responses)])


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
