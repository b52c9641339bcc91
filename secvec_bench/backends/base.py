"""The backend protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from ..generation import GenConfig, GenStats


class Backend(Protocol):
    name: str

    def check(self, cfg: "GenConfig") -> None:
        """Raise UserError (one line) when this backend cannot run here (missing package, no GPU)."""

    def generate(self, model: Any, tokenizer: Any, prompts: Sequence[str], cfg: "GenConfig",
                 system: str | None = None, desc: str = "generate", stats: "GenStats | None" = None) -> list[str]:
        """Responses to user prompts, chat-formatted with the tokenizer's template, in input order."""
