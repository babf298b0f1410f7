"""Does the LLM stay on the text? A label-free guard reported every iteration.

Cosine similarity between E(text) and E(its interpretation), against the same texts paired with
a shuffled interpretation. When the gap is small, the interpretations carry little of their
texts (a 135M model answering "I'm ready to assist…" to everything), and clustering them will
be worse than clustering the raw texts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Below this matched-minus-shuffled gap the run logs a warning.
ON_TEXT_MIN_GAP = 0.1
#: Texts the guard embeds (with their interpretations) per iteration.
ON_TEXT_SAMPLE = 256


def on_text_similarity(text_emb: np.ndarray, interp_emb: np.ndarray, seed: int = 0) -> dict[str, float]:
    """``matched``: mean cos(text_i, interp_i); ``shuffled``: mean cos(text_i, interp_π(i));
    ``gap``: their difference. Inputs are row-aligned and L2-normalised."""
    n = len(text_emb)
    if n < 2:
        return {"matched": float("nan"), "shuffled": float("nan"), "gap": float("nan"), "n": n}
    perm = np.random.default_rng(seed).permutation(n)
    fixed = perm == np.arange(n)
    perm[fixed] = (perm[fixed] + 1) % n  # no text paired with its own interpretation
    matched = float(np.mean(np.sum(text_emb * interp_emb, axis=1)))
    shuffled = float(np.mean(np.sum(text_emb * interp_emb[perm], axis=1)))
    return {"matched": round(matched, 4), "shuffled": round(shuffled, 4), "gap": round(matched - shuffled, 4), "n": n}


def sample_on_text_similarity(encoder_dir: str, texts: Sequence[str], interpretations: Sequence[str],
                              sample: int = ON_TEXT_SAMPLE, seed: int = 0, prompt: str = "",
                              in_driver: bool = True, task_gpus: float | None = None) -> dict[str, float]:
    """:func:`on_text_similarity` on a seeded sample (a few seconds on a CPU): embedded in the
    driver, or with ``in_driver=False`` in a Ray task, so that a large fit's driver never loads
    torch and the embedder for it. The task gets ``task_gpus`` GPUs (the hardware plan's; by
    default one when the cluster has GPUs)."""
    n = len(texts)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    args = (encoder_dir, [texts[i] for i in idx], [interpretations[j] for j in idx], prompt, seed)
    if in_driver:
        return _embedded_similarity(*args)
    import ray

    from coevo_ray.hardware import remote_task
    from coevo_ray.hardware import task_gpus as cluster_task_gpus

    gpus = cluster_task_gpus() if task_gpus is None else task_gpus
    return ray.get(remote_task(_embedded_similarity, gpus).remote(*args, device="cuda" if gpus else "cpu"))


def _embedded_similarity(encoder_dir: str, texts: list[str], interpretations: list[str], prompt: str, seed: int,
                         device: str | None = None) -> dict[str, float]:
    """In the driver (``device`` None) or a Ray task (on ``device``)."""
    from coevo_ray.embed import driver_encoder, encode, load_encoder

    # The driver keeps its encoder for the next iteration; a task's worker is not kept.
    encoder = driver_encoder(encoder_dir) if device is None else load_encoder(encoder_dir, device)
    return on_text_similarity(encode(encoder, texts, prompt=prompt), encode(encoder, interpretations, prompt=prompt),
                              seed)
