"""No defense: the attack fine-tunes the aligned model as the user asks. The baseline every run reports."""

from __future__ import annotations

from typing import Any, Sequence

from .base import DEFENSES, DefenseContext, Prepared


@DEFENSES.register("none")
class NoDefense:
    """No defense (the undefended attack; always run as the baseline)."""

    name = "none"

    def __init__(self, **_: Any) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {"defense": self.name}

    def prepare(self, ctx: DefenseContext) -> Prepared:
        return Prepared()

    def training_data(self, examples: Sequence[Any], ctx: DefenseContext) -> list[Any]:
        return list(examples)
