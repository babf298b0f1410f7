"""Step 3 of the pipeline: density-guided preferences (paper section 3.2, eqs. 2–9, and A.1).

Written by hand because no library has it: KMeans on the temperature-0 interpretation
embeddings is repeated R times (seeds 0..R−1); every candidate's distance to its nearest centroid
is averaged over the runs; per text the candidate with the smallest average is *chosen* and
every other candidate is *rejected*. The KMeans and nearest-centroid searches are FAISS.
"""

from __future__ import annotations

import logging

import numpy as np

from coevo_ray.clustering import FaissKMeans, l2_normalize
from coevo_ray.clustering.faiss_kmeans import check_embeddings
from coevo_ray.choices import PreferenceRule, options
from coevo_ray.errors import InputError

logger = logging.getLogger(__name__)

PREFERENCE_RULES = options(PreferenceRule)


def averaged_nearest_centroid_distances(
    greedy: np.ndarray,
    candidates: np.ndarray,
    n_clusters: int,
    n_runs: int = 100,
    normalize: bool = True,
    chunk_rows: int = 65_536,
    seed_offset: int = 0,
    init: str = "k-means++",
    use_gpu: bool = False,
) -> np.ndarray:
    """``d[i, m]`` = mean over R KMeans runs of ``min_k ||e_i^(m) − μ_k||`` (eq. 6, averaged).

    ``greedy`` is (N, D): the temperature-0 embeddings the centroids are fitted on (eq. 3);
    ``candidates`` is (N, C, D) with candidate 0 the greedy one (e_i^(0) ≜ e_i^+).
    """
    import faiss

    greedy = check_embeddings(greedy, "temperature-0 embeddings")
    if candidates.ndim != 3 or candidates.shape[0] != greedy.shape[0] or candidates.shape[2] != greedy.shape[1]:
        raise InputError(f"candidates must be (N, C, D) = ({greedy.shape[0]}, C, {greedy.shape[1]}), got {candidates.shape}")
    n, c, d = candidates.shape
    flat = check_embeddings(candidates.reshape(n * c, d), "candidate embeddings")
    if normalize:
        flat = l2_normalize(flat)
    total = np.zeros(n * c, dtype=np.float64)
    for run in range(n_runs):
        km = FaissKMeans(n_clusters, seed=seed_offset + run, normalize=normalize, init=init, use_gpu=use_gpu).fit(greedy)
        index = faiss.IndexFlatL2(d)
        index.add(km.cluster_centers_)
        for start in range(0, n * c, chunk_rows):
            sq, _ = index.search(flat[start : start + chunk_rows], 1)
            total[start : start + chunk_rows] += np.sqrt(np.maximum(sq[:, 0], 0.0))
        if (run + 1) % 10 == 0 or run + 1 == n_runs:
            logger.info("preferences: KMeans run %d/%d", run + 1, n_runs)
    return (total / n_runs).reshape(n, c)


def choose_winners(distances: np.ndarray, rule: str = "density", seed: int = 0,
                   eligible: np.ndarray | None = None) -> np.ndarray:
    """Index of the chosen candidate per text (eq. 7), or -1 where no candidate is ``eligible``
    (an (N, C) mask: the answers that may be chosen). Ties go to the lowest index, i.e. the
    greedy candidate first."""
    eligible = np.ones(distances.shape, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    # "random" is the paper's ablation: a uniformly random eligible candidate wins.
    score = distances if rule == "density" else np.random.default_rng(seed).random(distances.shape)
    winners = np.argmin(np.where(eligible, score, np.inf), axis=1)
    return np.where(eligible.any(axis=1), winners, -1)


def pair_mask(winners: np.ndarray, distances: np.ndarray, rule: str = "density",
              rejectable: np.ndarray | None = None) -> np.ndarray:
    """(N, C) mask of the candidates that form a pair (y_w, y_l) with their text's winner: every
    other candidate (eq. 8) that may be rejected and, under the density rule, lies strictly
    farther from its nearest centroids (eq. 9: d_w < d_l; equal distances are no preference)."""
    n, c = distances.shape
    has = winners >= 0
    w = np.where(has, winners, 0)
    mask = has[:, None] & (np.arange(c)[None, :] != w[:, None])
    if rejectable is not None:
        mask &= np.asarray(rejectable, dtype=bool)
    if rule == "density":
        mask &= distances > distances[np.arange(n), w][:, None]
    return mask


def sample_pairs(mask: np.ndarray, winners: np.ndarray, max_pairs: int, seed: int = 0) -> np.ndarray:
    """(row, chosen, rejected) triples for the pairs in ``mask`` (see :func:`pair_mask`), at most
    ``max_pairs`` of them, sampled without replacement."""
    if mask.shape[1] < 2:
        raise InputError("need at least 2 candidates per text to form preference pairs")
    flat = np.flatnonzero(mask)
    if len(flat) > max_pairs:
        flat = np.sort(np.random.default_rng(seed).choice(flat, size=max_pairs, replace=False))
    rows, rejected = np.divmod(flat, mask.shape[1])
    return np.stack([rows, winners[rows], rejected], axis=1).astype(np.int64)
