"""Atomic writes, strict readers and content hashes.

Every file the harness produces goes through `atomic_write_*`: the bytes land in a temporary file in the same folder,
are fsynced, then renamed over the target, so a kill at any instant leaves either the old file or the new one, never a
torn one. Readers turn bad input (missing file, non-UTF-8, malformed JSON line) into a `UserError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import UserError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps(obj: Any) -> str:
    """Stable JSON: sorted keys, no NaN (NaN is not JSON; we write null instead)."""
    return json.dumps(_clean(obj), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    text = json.dumps(_clean(obj), sort_keys=True, ensure_ascii=False, allow_nan=False, indent=indent)
    atomic_write_text(path, text + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in rows))


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if path.is_dir():
        raise UserError(f"{what} is a directory, not a file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} is not valid UTF-8: {path} (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON: line {exc.lineno}: {exc.msg}") from None


def read_jsonl(path: str | os.PathLike, what: str = "JSONL file") -> list[dict]:
    return parse_jsonl_lines(read_text(path, what).splitlines(), path, what)


def parse_jsonl_lines(lines: Iterable[str], path: str | os.PathLike, what: str = "JSONL file") -> list[dict]:
    """JSON objects from lines already read (plain or gzipped files alike); blank lines skipped."""
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{what} {path} line {lineno} is not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise UserError(f"{what} {path} line {lineno} is not a JSON object")
        rows.append(row)
    return rows


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(dumps(obj).encode("utf-8"))
