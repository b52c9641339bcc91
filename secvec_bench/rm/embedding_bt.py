"""`embedding_bt`: MiniLM sentence embeddings + a Bradley-Terry logistic head. The cheapest trained RM there is.

    reward(x, y) = w · e("x\\ny"),   P(chosen beats rejected) = sigmoid(w · (e_chosen - e_rejected))

`e` is the L2-normalised mean-pooled all-MiniLM-L6-v2 embedding (`secvec_bench.embeddings`), truncated from the left to
`embed_max_length` word pieces (default 128: the response and the end of the prompt, at half the CPU cost of 256) so
the response survives long dialogues. `w` is fitted by L2-regularised logistic regression **without intercept** on the
embedding differences of the train pairs (each pair enters once as (d, 1) and once as (-d, 0), which is the same
likelihood and gives sklearn both classes). An intercept would be meaningless: it cancels in every difference.

The head is stored as plain arrays in JSON (never pickle): `{format, w, dim, C, n_train, train_sha256, embedder}`,
where `train_sha256` hashes the exact train pairs, so a reader can tell which data a head was fitted on. The evaluator
asserts the train pairs share no prompt with the pairs it evaluates on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UserError
from ..io import atomic_write_json, read_json, sha256_json
from .base import RMS, Pair, SingleFromBatch

FORMAT = "secvec-bench/embedding-bt/v1"


def join(prompt: str, response: str) -> str:
    return f"{prompt}\n{response}"


def train_hash(pairs: Sequence[Pair]) -> str:
    return sha256_json([[p.prompt, p.chosen, p.rejected] for p in pairs])


def fit_bt(diffs: np.ndarray, C: float = 1.0, seed: int = 0) -> np.ndarray:
    """Logistic-regression weights (no intercept) for P(win) = sigmoid(w · d), from difference vectors of winners."""
    from sklearn.linear_model import LogisticRegression

    if diffs.ndim != 2 or diffs.shape[0] == 0:
        raise UserError("embedding_bt: no training pairs")
    x = np.concatenate([diffs, -diffs]).astype(np.float64)
    y = np.concatenate([np.ones(len(diffs)), np.zeros(len(diffs))])
    clf = LogisticRegression(C=C, fit_intercept=False, max_iter=2000, random_state=seed)
    clf.fit(x, y)
    return clf.coef_[0].astype(np.float64)


@RMS.register("embedding_bt")
class EmbeddingBTRM(SingleFromBatch):
    """MiniLM embedding + Bradley-Terry logistic head, trained on a train split (or loaded with bt_weights=FILE)."""

    name = "embedding_bt"
    reward_is_logit = True

    def __init__(
        self,
        bt_weights: str | None = None,
        C: float = 1.0,
        embedder_dir: str | None = None,
        batch_size: int = 32,
        embed_max_length: int = 128,
        **_: Any,
    ) -> None:
        from ..embeddings import get_embedder

        self.embedder = get_embedder(embedder_dir, max_length=embed_max_length)
        self.batch_size = int(batch_size)
        self.C = float(C)
        self.w: np.ndarray | None = None
        self.n_train = 0
        self.train_sha256: str | None = None
        self.weights_file: str | None = None
        if bt_weights:
            self.load(Path(bt_weights))

    @property
    def is_fitted(self) -> bool:
        return self.w is not None

    def config(self) -> dict[str, Any]:
        return {
            "rm": self.name,
            "C": self.C,
            "n_train": self.n_train,
            "train_sha256": self.train_sha256,
            "weights_file": self.weights_file,
            "embedder": self.embedder.config(),
        }

    def embed(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        texts = [join(p, r) for p, r in zip(prompts, responses)]
        return self.embedder.encode(texts, batch_size=self.batch_size, truncation_side="left")

    def fit(self, pairs: Sequence[Pair]) -> None:
        if not pairs:
            raise UserError("embedding_bt: the train split is empty")
        ec = self.embed([p.prompt for p in pairs], [p.chosen for p in pairs])
        er = self.embed([p.prompt for p in pairs], [p.rejected for p in pairs])
        self.w = fit_bt(ec - er, C=self.C)
        self.n_train = len(pairs)
        self.train_sha256 = train_hash(pairs)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if self.w is None:
            raise RuntimeError("embedding_bt scored before fit() or load()")
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        return [float(v) for v in self.embed(prompts, responses).astype(np.float64) @ self.w]

    def save(self, path: Path) -> None:
        if self.w is None:
            raise RuntimeError("nothing to save: embedding_bt is not fitted")
        atomic_write_json(
            path,
            {
                "format": FORMAT,
                "w": [float(v) for v in self.w],
                "dim": int(self.w.size),
                "C": self.C,
                "n_train": self.n_train,
                "train_sha256": self.train_sha256,
                "embedder": self.embedder.config(),
            },
            indent=None,
        )
        self.weights_file = str(path)

    def load(self, path: Path) -> None:
        data = read_json(path, "embedding_bt weights file")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"embedding_bt weights file {path}: not a {FORMAT} file")
        w = data.get("w")
        if not isinstance(w, list) or not w or not all(isinstance(v, (int, float)) for v in w):
            raise UserError(f"embedding_bt weights file {path}: field 'w' must be a list of numbers")
        if len(w) != self.embedder.dim:
            raise UserError(f"embedding_bt weights file {path}: {len(w)} weights for a {self.embedder.dim}-d embedder")
        self.w = np.asarray(w, dtype=np.float64)
        self.C = float(data.get("C", self.C))
        self.n_train = int(data.get("n_train", 0))
        self.train_sha256 = data.get("train_sha256")
        self.weights_file = str(path)
