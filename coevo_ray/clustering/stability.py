"""How reproducible a KMeans clustering of a representation is, without labels: the mean
adjusted Rand index between the partitions of several KMeans seeds (Ben-Hur, Elisseeff and Guyon,
"A stability based method for discovering structure in clustered data", PSB 2002). What
``representation="auto"`` compares the representations of one fit by (pipeline/loop.py). Written
here because scikit-learn and FAISS give the partitions and the index, not the comparison."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from coevo_ray.clustering.faiss_kmeans import FaissKMeans


def partition_agreement(parts: list[np.ndarray]) -> float:
    """Mean pairwise ARI of ``parts`` (label arrays of the same rows; 1.0: all agree)."""
    from sklearn.metrics import adjusted_rand_score

    if len(parts) < 2:
        raise ValueError(f"stability needs at least 2 partitions, got {len(parts)}")
    return float(np.mean([adjusted_rand_score(a, b) for a, b in combinations(parts, 2)]))


def kmeans_stability(x: np.ndarray, n_clusters: int, seeds: tuple[int, ...], niter: int = 25,
                     normalize: bool = True) -> float:
    """Mean pairwise ARI of the KMeans partitions of ``x`` for ``seeds`` (1.0: every seed agrees)."""
    return partition_agreement([FaissKMeans(n_clusters, seed=s, niter=niter, normalize=normalize).fit(x).labels_
                                for s in seeds])
