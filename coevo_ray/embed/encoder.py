"""Sentence-transformers encoder shared by the embedding actors and in-process callers."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def load_encoder(model_dir: str, device: str | None = None):
    import torch
    from sentence_transformers import SentenceTransformer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return SentenceTransformer(str(model_dir), device=device, trust_remote_code=False,
                               local_files_only=True)


def driver_encoder(model_dir: str):
    """A CPU encoder for in-process use, kept while the same directory is asked for again (the
    small-stage embedding path and the on-text guard load the same model each iteration)."""
    global _DRIVER_ENCODER
    if _DRIVER_ENCODER is None or _DRIVER_ENCODER[0] != str(model_dir):
        _DRIVER_ENCODER = (str(model_dir), load_encoder(model_dir, device="cpu"))
    return _DRIVER_ENCODER[1]


_DRIVER_ENCODER: tuple[str, object] | None = None


def encode(model, texts: Sequence[str], batch_size: int = 64, normalize: bool = True,
           show_progress: bool = False) -> np.ndarray:
    emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                       convert_to_numpy=True, show_progress_bar=show_progress)
    return np.asarray(emb, dtype=np.float32)
