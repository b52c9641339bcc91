"""Studies: named experiment sweeps built on the pipeline (`secvec-bench study NAME ...`).

Each study module registers a `Study` in STUDIES: `add_arguments(parser)` adds its own flags and `run(args)` executes
it and writes tidy rows plus a markdown table under its results directory. Every module in this package is imported
by `load_all`, so adding a study never edits the command.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Protocol

from ..registry import Registry


class Study(Protocol):
    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


STUDIES: Registry = Registry("study")



def load_all() -> None:
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
