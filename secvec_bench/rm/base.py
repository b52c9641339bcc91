"""The reward-model protocol and registry.

A reward model maps (prompt, response) to one float: **higher means better, and for safety data, safer**. Every kind
(sequence-classification RMs, implicit DPO-style rewards, embedding Bradley-Terry heads, null baselines) implements
the same two methods so the evaluator never needs to know which kind it holds:

- `score(prompt, response) -> float`
- `score_batch(prompts, responses) -> list[float]` (same values as `score`, whatever the batch size)

`reward_is_logit` says whether a reward difference is meant as a Bradley-Terry logit (sigmoid(r_a - r_b) = P(a wins)):
true for trained RMs, false for length or random scores, whose differences are only ordinal. The evaluator reports
calibration on a temperature-fitted scale for every RM, and also on the raw scale for logit RMs.

An RM with `slow = True` (one or two transformer forward passes per response: `seqcls`, `implicit`) is scored on a
seeded prefix of the evaluation units (`--max-pairs-slow`), and compared with the baselines on exactly that prefix.

A *trainable* RM also has `fit(pairs)` (preference pairs from a train split) and `is_fitted`; the evaluator calls it
before scoring and asserts the train and evaluation splits share no prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from ..registry import Registry


@dataclass(frozen=True)
class Pair:
    """One human preference: `chosen` was judged better (for harmlessness data: less harmful) than `rejected`."""

    prompt: str
    chosen: str
    rejected: str
    group: str  # split key: pairs with the same group (same prompt) always land in the same split
    category: str | None = None


@dataclass(frozen=True)
class Item:
    """One pointwise human label: `harmful` is the human (majority) judgement of `response` to `prompt`."""

    prompt: str
    response: str
    harmful: bool
    group: str
    category: str | None = None


@runtime_checkable
class RewardModel(Protocol):
    name: str
    reward_is_logit: bool

    def config(self) -> dict[str, Any]:
        """Everything that determines the scores (model hashes, options), for provenance."""

    def score(self, prompt: str, response: str) -> float: ...

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]: ...


@runtime_checkable
class TrainableRewardModel(RewardModel, Protocol):
    is_fitted: bool

    def fit(self, pairs: Sequence[Pair]) -> None: ...


class BatchFromSingle:
    """Mixin for RMs whose natural unit is one pair: `score_batch` loops over `score`."""

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        return [self.score(p, r) for p, r in zip(prompts, responses)]  # type: ignore[attr-defined]


class SingleFromBatch:
    """Mixin for model-backed RMs whose natural unit is a batch: `score` is a batch of one."""

    def score(self, prompt: str, response: str) -> float:
        return self.score_batch([prompt], [response])[0]  # type: ignore[attr-defined]


RMS: Registry = Registry("reward model")


def get_rm(name: str, **options: Any) -> RewardModel:
    """Build a reward model by registry name. Options are kind-specific; a kind ignores options it does not take."""
    factory = RMS.get(name)
    return factory(**options)
