"""`secvec-bench list [models|scenarios|defenses|judges]`: what can be chosen by name."""

from __future__ import annotations

import argparse
from typing import Any, Callable


def _models() -> list[tuple[str, str]]:
    from ..models import BUILTIN_MODELS

    return [(k, v["description"]) for k, v in BUILTIN_MODELS.items()] + [
        ("<folder>", "a local folder with config.json, tokenizer and *.safetensors"),
        ("<owner/name>", "a Hugging Face model id (needs network)"),
    ]


def _scenarios() -> list[tuple[str, str]]:
    from ..scenarios import available, load_scenario_file

    return [(name, load_scenario_file(path).description) for name, path in available().items()]


def _registry(module: str, attr: str) -> Callable[[], list[tuple[str, str]]]:
    def items() -> list[tuple[str, str]]:
        import importlib

        reg = getattr(importlib.import_module(module, __package__), attr)
        return [(n, reg.describe(n)) for n in reg.names()]

    return items


KINDS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "models": _models,
    "scenarios": _scenarios,
    "defenses": _registry("..defenses", "DEFENSES"),
    "judges": _registry("..judging", "JUDGES"),
}


def add_to(sub: Any) -> None:
    p = sub.add_parser("list", help="list models, scenarios, defenses and judges")
    p.add_argument("kind", nargs="?", choices=sorted(KINDS), help="one kind only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        print(f"{kind}:")
        for name, doc in KINDS[kind]():
            print(f"  {name:<24} {doc}")
    return 0
