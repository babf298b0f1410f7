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


def encode(model, texts: Sequence[str], batch_size: int = 64, normalize: bool = True,
           show_progress: bool = False) -> np.ndarray:
    emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                       convert_to_numpy=True, show_progress_bar=show_progress)
    return np.asarray(emb, dtype=np.float32)
