"""``n_clusters="auto"``: choose K by the eigengap of a k-nearest-neighbour similarity graph.

Method (spectral eigengap heuristic, von Luxburg 2007 §8.3): on a seeded sample of at most
``sample`` L2-normalised embeddings, build a symmetric kNN graph weighted by cosine similarity,
take the smallest eigenvalues of its normalised Laplacian, and pick the K in [k_min, k_max] after
which the next eigenvalue jumps the most. Chosen over a silhouette sweep, which on MiniLM
embeddings ran to the ends of the range (K=200 or 2) on all of bank77, clinc_domain and goemo;
the eigengap found 66 for bank77 (77) and 16 for massive_domain (18), but still 2 where
clusters overlap heavily (goemo, reddit) — see benchmarks/results/auto_k.json.
"""

from __future__ import annotations

import logging

import numpy as np

from coevo_ray.clustering.faiss_kmeans import check_embeddings, l2_normalize
from coevo_ray.errors import InputError

logger = logging.getLogger(__name__)


def estimate_n_clusters(x: np.ndarray, k_min: int = 2, k_max: int = 200, seed: int = 0,
                        sample: int = 2000, neighbours: int = 10) -> tuple[int, dict[int, float]]:
    """(best K, {K: eigengap after the K-th eigenvalue}) for the rows of ``x``."""
    from scipy.sparse.csgraph import laplacian

    x = l2_normalize(check_embeddings(x))
    n = x.shape[0]
    if n < 3:
        raise InputError(f"cannot estimate n_clusters from {n} texts: need at least 3")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    x = x[idx]
    m = len(x)
    k_min, k_max = max(2, k_min), min(k_max, m - 1)
    if k_max < k_min:
        raise InputError(f"cannot estimate n_clusters from {n} texts with k_min={k_min}")
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    q = min(neighbours, m - 1)
    nn = np.argpartition(-sim, q - 1, axis=1)[:, :q]
    rows = np.repeat(np.arange(m), q)
    w = np.zeros((m, m), dtype=np.float64)
    w[rows, nn.ravel()] = np.maximum(sim[rows, nn.ravel()], 0.0)
    w = np.maximum(w, w.T)
    eig = np.sort(np.linalg.eigvalsh(laplacian(w, normed=True)))[: k_max + 1]
    gaps = {k: float(eig[k] - eig[k - 1]) for k in range(k_min, k_max + 1)}  # gap after the K-th value
    best = max(gaps, key=gaps.get)
    logger.info("auto K: eigengap %.4f after K=%d (range %d-%d, %d points)", gaps[best], best, k_min, k_max, m)
    return best, gaps
