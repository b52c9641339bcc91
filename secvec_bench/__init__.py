"""secvec-bench: how fine-tuning breaks the safety of aligned LLMs, and how well defenses stop it."""

__version__ = "0.1.0"
