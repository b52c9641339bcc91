"""Defenses against harmful fine-tuning, chosen by name from the DEFENSES registry."""

from .base import DEFENSES, Defense, DefenseContext, Prepared, get_defense  # noqa: F401
from . import none, security_vectors  # noqa: F401  (register)
