"""Sentence-transformers encoder shared by the embedding actors and in-process callers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from coevo_ray.errors import InputError


def load_encoder(model_dir: str, device: str = "cpu"):
    """A sentence-transformers model on ``device`` (the hardware plan's: "cuda" in a Ray worker
    given a GPU, the CPU everywhere else)."""
    from sentence_transformers import SentenceTransformer

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


def model_prompt(model_dir: str | Path, prompt_name: str | None = "auto") -> str:
    """The prompt text an embedder gets for clustering: ``"auto"`` is its "Clustering" task
    prompt when it defines one (EmbeddingGemma: "task: clustering | query: "), else none;
    ``None`` is none; another name must be one of the model's prompts. Read from the model's
    ``config_sentence_transformers.json``, without loading it."""
    if prompt_name is None:
        return ""
    config = Path(model_dir) / "config_sentence_transformers.json"
    prompts = json.loads(config.read_text()).get("prompts", {}) if config.exists() else {}
    if prompt_name == "auto":
        return prompts.get("Clustering", "")
    if prompt_name not in prompts:
        raise InputError(f"embedder {Path(model_dir).name} has no prompt {prompt_name!r}; "
                         f"its prompts: {', '.join(prompts) or 'none'}")
    return prompts[prompt_name]


def encode(model, texts: Sequence[str], batch_size: int = 64, normalize: bool = True,
           show_progress: bool = False, prompt: str = "") -> np.ndarray:
    emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize, prompt=prompt or None,
                       convert_to_numpy=True, show_progress_bar=show_progress)
    return np.asarray(emb, dtype=np.float32)
