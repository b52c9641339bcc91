"""Judges: turn (prompt, response) into a Verdict. See `base` for the protocol and registry."""

from .base import JUDGES, Judge, Verdict, get_judge  # noqa: F401
from . import keyword  # noqa: F401  (registers "keyword")
from . import coherence  # noqa: F401  (registers "coherence")
from . import classifier  # noqa: F401  (registers "classifier")
from . import llm  # noqa: F401  (registers "llm")
