"""Defenses against harmful fine-tuning, chosen by name from the DEFENSES registry."""

from .base import DEFENSES, Defense, DefenseContext, Prepared, get_defense, has_post_train, post_train_report  # noqa: F401
from . import none, random_adapter, safelora, safety_mix, security_vectors  # noqa: F401  (register)
