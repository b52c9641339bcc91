"""Reward models: one protocol (`base.RewardModel`), a registry (`RMS`), and the kinds that register into it.

Importing this package registers every built-in kind: `seqcls`, `implicit`, `embedding_bt`, `length`, `refusal`,
`random`. Model-backed kinds import torch/transformers only when built, so listing names stays cheap.
"""

from .base import RMS, Item, Pair, RewardModel, get_rm  # noqa: F401
from . import baselines, embedding_bt, implicit, seqcls  # noqa: F401  (register kinds)
