from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(os.environ.get("SECVEC_BENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture()
def tok():
    from tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture()
def shared_data() -> Path:
    if not (SHARED_DATA / "advbench" / "harmful_behaviors.csv").exists():
        pytest.skip(f"public data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own stage cache unless it sets one: tests never touch ~/.cache."""
    monkeypatch.setenv("SECVEC_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
