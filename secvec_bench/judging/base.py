"""The judge protocol.

A judge maps a prompt and a model response to a `Verdict`. Fields a judge cannot know are None, and a verdict whose
`parse_ok` is False (an unparsable or out-of-range LLM score, a judge that refused to judge, an empty response) is
*unscored*: metrics leave it out of both numerator and denominator instead of counting it as safe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

from ..registry import Registry


@dataclass(frozen=True)
class Verdict:
    judge: str
    refused: bool | None
    harmful: bool | None
    score: float | None
    parse_ok: bool
    rationale: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        return cls(
            judge=str(d["judge"]),
            refused=d.get("refused"),
            harmful=d.get("harmful"),
            score=d.get("score"),
            parse_ok=bool(d.get("parse_ok")),
            rationale=str(d.get("rationale") or ""),
        )


class Judge(Protocol):
    name: str

    def config(self) -> dict[str, Any]:
        """Everything that determines the verdicts (for cache keys and provenance)."""

    def score(self, prompt: str, response: str) -> Verdict: ...

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]: ...


JUDGES: Registry = Registry("judge")


def get_judge(name: str, **options: Any) -> Judge:
    """Build a judge by registry name; options are judge-specific (ignored by judges that take none)."""
    factory = JUDGES.get(name)
    return factory(**options)
