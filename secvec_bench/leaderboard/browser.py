"""Headless Chromium from the command line: dump a page's DOM after its scripts ran, or take a screenshot.

Used by the browser acceptance test and by `--screenshot` / `bench/screenshot_leaderboard.py`. Only the `chromium`
CLI is needed (Debian package `chromium`), no driver: `--dump-dom` prints the DOM once the page has loaded and its
deferred scripts have run, which is exactly what is needed to check that the filter script worked and that no
script from the data did. Every call gets a fresh throw-away profile and flags that keep the browser off the
network (no sync, no component updates, no background requests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--no-default-browser-check",
)


def find_chromium() -> str | None:
    """`SECVEC_BENCH_CHROMIUM` if set, else the first Chromium on PATH."""
    env = os.environ.get("SECVEC_BENCH_CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def file_url(path: Path, query: str = "") -> str:
    return Path(path).resolve().as_uri() + query


def _run(url: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise UserError("no Chromium found (install Debian's `chromium` or set SECVEC_BENCH_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="secvec-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"Chromium did not finish within {timeout:.0f} s on {url}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        raise UserError(f"Chromium failed on {url} (exit {proc.returncode}): {tail[0][:200]}")
    return proc


def dump_dom(url: str, timeout: float = 60) -> str:
    """The serialised DOM after load (scripts included)."""
    return _run(url, ["--dump-dom"], timeout).stdout


def screenshot(url: str, png: Path, width: int = 1280, height: int = 900, timeout: float = 60) -> Path:
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(url, [f"--screenshot={png.resolve()}", f"--window-size={width},{height}"], timeout)
    if not png.is_file() or png.stat().st_size == 0:
        raise UserError(f"Chromium wrote no screenshot to {png}")
    return png
