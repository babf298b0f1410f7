"""``n_clusters="auto"``: choose K by the silhouette of FAISS KMeans over a sweep of K.

Method: cosine silhouette (scikit-learn, on a seeded sample of at most ``sample`` points) of
KMeans at a geometric grid of K between ``k_min`` and ``k_max``, then a finer pass between the
best grid point's neighbours; the K with the highest silhouette wins. Silhouette is cheap, has no
free parameter, and on sentence embeddings it tends to under-estimate K when clusters overlap
(fine intents) — the closing note of issue 6 reports estimated vs. true K on three datasets.
"""

from __future__ import annotations

import logging

import numpy as np

from coevo_ray.clustering.faiss_kmeans import FaissKMeans, check_embeddings, l2_normalize
from coevo_ray.errors import InputError

logger = logging.getLogger(__name__)


def _grid(lo: int, hi: int, points: int) -> list[int]:
    return sorted({int(round(k)) for k in np.geomspace(lo, hi, num=min(points, hi - lo + 1))})


def estimate_n_clusters(x: np.ndarray, k_min: int = 2, k_max: int = 200, seed: int = 0,
                        sample: int = 3000, points: int = 12) -> tuple[int, dict[int, float]]:
    """(best K, {K: silhouette}) for the rows of ``x``."""
    from sklearn.metrics import silhouette_score

    x = l2_normalize(check_embeddings(x))
    n = x.shape[0]
    k_max = min(k_max, n - 1)
    if n < 3 or k_max < max(2, k_min):
        raise InputError(f"cannot estimate n_clusters from {n} texts: need at least 3 and k_max >= k_min")
    k_min = max(2, k_min)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    scores: dict[int, float] = {}

    def score(k: int) -> float:
        if k not in scores:
            labels = FaissKMeans(k, seed=seed, normalize=False).fit(x).labels_
            sub = labels[idx]
            scores[k] = float(silhouette_score(x[idx], sub, metric="cosine")) if len(set(sub)) > 1 else -1.0
            logger.info("auto K: K=%d silhouette %.4f", k, scores[k])
        return scores[k]

    grid = _grid(k_min, k_max, points)
    best = max(grid, key=score)
    i = grid.index(best)
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = max(_grid(lo, hi, points), key=score)
    return best, dict(sorted(scores.items()))
