"""secvec_bench.embeddings: unit norm, batch-size and padding invariance, order preserved, semantic sanity."""

from __future__ import annotations

import numpy as np
import pytest

from secvec_bench.embeddings import Embedder, get_embedder, minilm_dir
from secvec_bench.errors import UserError

TEXTS = [
    "How do I bake bread?",
    "A recipe for baking a loaf of bread at home, step by step, with flour, water, yeast and salt.",
    "The stock market fell sharply today.",
    "x",
]


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return get_embedder()


def test_unit_norm_and_shape(emb):
    v = emb.encode(TEXTS)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_batch_size_invariance_and_order(emb):
    a = emb.encode(TEXTS, batch_size=1)
    b = emb.encode(TEXTS, batch_size=8)
    assert np.abs(a - b).max() < 1e-5
    rev = emb.encode(TEXTS[::-1], batch_size=3)
    assert np.abs(rev[::-1] - a).max() < 1e-5


def test_semantic_sanity(emb):
    v = emb.encode(TEXTS)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_empty_input(emb):
    assert emb.encode([]).shape == (0, 384)


def test_missing_folder_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Embedder(tmp_path / "nope")


def test_shared_instance():
    assert get_embedder() is get_embedder(minilm_dir())
