"""Where the project's data folders live (`tasks/`, `judges/`, `leaderboard/`).

They sit beside the package in the source tree (the design card fixes the top level); `SECVEC_BENCH_HOME` points
elsewhere for installs that moved them.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("SECVEC_BENCH_HOME")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent


def tasks_dir() -> Path:
    return project_root() / "tasks"


def judges_dir() -> Path:
    return project_root() / "judges"


def leaderboard_dir() -> Path:
    return project_root() / "leaderboard"
