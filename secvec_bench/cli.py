"""The `secvec-bench` command line.

Subcommands live one per module in `secvec_bench/commands/`; each module defines `add_to(subparsers)` which adds its
parser and sets `func`. They are discovered here, so adding a command never edits this file.

Errors: a `UserError` (bad flag, file, field, model path...) prints one line on stderr and exits 2; argparse usage
errors also exit 2. Ctrl-C exits 130 without a traceback (finished stages are already on disk).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys

from . import __version__
from .errors import UserError
from .hardware import keep_freed_memory


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print one line naming the problem (exit status 2 as argparse)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="secvec-bench",
        description="Measure how fine-tuning breaks LLM safety, and how well defenses stop it.",
    )
    parser.add_argument("--version", action="version", version=f"secvec-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        add_to = getattr(module, "add_to", None)
        if add_to is not None:
            add_to(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    global _SIGINT_SEEN
    _SIGINT_SEEN = False  # per call: main() also runs in-process (tests, embedding programs)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()  # no page faults on every training step's large tensors (hardware.py says why)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:  # not the main thread (an embedding program): keep Python's handler
            pass
    try:
        args = build_parser().parse_args(argv)  # inside the try: Ctrl-C during the slow imports is no traceback
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"secvec-bench: error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except OSError as exc:  # the file system refused a path the user gave (a file where a folder goes, permissions)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"secvec-bench: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:  # Ctrl-C inside a lazy import comes back as another error (transformers: ModuleNotFoundError)
        if _SIGINT_SEEN:
            return _interrupted()
        raise


_SIGINT_SEEN = False


def _on_sigint(signum, frame) -> None:
    """Remember the Ctrl-C, then raise it as usual: libraries that turn it into another error cannot hide it."""
    global _SIGINT_SEEN
    _SIGINT_SEEN = True
    raise KeyboardInterrupt


def _interrupted() -> int:
    print("secvec-bench: interrupted (finished stages are kept; run the same command to resume)", file=sys.stderr)
    return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
