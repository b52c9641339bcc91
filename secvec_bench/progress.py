"""Progress output: tqdm bars on stderr for long stages, and one-line status messages."""

from __future__ import annotations

import sys
import time
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def bar(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it"):
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=_QUIET, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def status(message: str) -> None:
    if not _QUIET:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
