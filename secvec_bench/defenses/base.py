"""The defense protocol: hooks around the attack fine-tuning.

- `prepare(ctx)` trains or builds whatever the defense needs (cached through the stage cache) and returns `Prepared`:
  adapters to keep *active and frozen* during the attack, and any extra metadata for provenance.
- `training_data(examples, ctx)` may change the user's data (e.g. mix in safety examples).
- Everything in `Prepared.frozen_adapters` is removed for inference: the pipeline evaluates the attacked weights alone.
- Optional `post_train(attack_dir, attack_key, ctx) -> (attack_dir, attack_key)`: a post-fine-tuning defense rewrites
  the attack's output (e.g. SafeLoRA projects the LoRA update) as its own cached stage. A defense whose `prepare`
  returns the default `Prepared()` shares the undefended attack's cache entry, so a post-hoc defense costs no training.

Each defense's docstring says in which stage it acts (alignment, fine-tuning, post-fine-tuning) and its threat model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from ..registry import Registry


@dataclass
class DefenseContext:
    """What a defense may use: the cache, the aligned model, the suite's data splits and the run's settings."""

    cache: Any  # StageCache
    aligned_path: Path
    aligned_key: str
    tokenizer: Any
    suite: Any  # Suite
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    base_path: Path | None = None  # the model before alignment (SafeLoRA's "unaligned" weights); None without align


@dataclass
class Prepared:
    frozen_adapters: dict[str, Path] = field(default_factory=dict)
    key: str = "none"  # identifies the prepared artefacts in downstream cache keys
    info: dict[str, Any] = field(default_factory=dict)


class Defense(Protocol):
    name: str

    def config(self) -> dict[str, Any]: ...

    def prepare(self, ctx: DefenseContext) -> Prepared: ...

    def training_data(self, examples: Sequence[Any], ctx: DefenseContext) -> list[Any]: ...


POST_TRAIN_REPORT = "post_train.json"  # a post-training stage's report, copied into the run's provenance


def post_train_report(attack_dir: Path) -> dict[str, Any]:
    """The report a post-training defense left beside its rewritten attack output ({} if none)."""
    import json

    p = Path(attack_dir) / POST_TRAIN_REPORT
    return json.loads(p.read_text()) if p.exists() else {}


def has_post_train(defense: Any) -> bool:
    """Whether a defense acts after fine-tuning (defines `post_train`)."""
    return callable(getattr(defense, "post_train", None))


DEFENSES: Registry = Registry("defense")


def get_defense(name: str, **options: Any) -> Defense:
    return DEFENSES.get(name)(**options)
