"""How reproducible a KMeans clustering of a representation is, without labels: the adjusted Rand
index between the partitions of several KMeans seeds (Ben-Hur, Elisseeff and Guyon, "A stability
based method for discovering structure in clustered data", PSB 2002), and the rule
``representation="auto"`` picks a representation by (pipeline/loop.py). Written here because
scikit-learn and FAISS give the partitions and the index, not the comparison."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from coevo_ray.clustering.faiss_kmeans import FaissKMeans

#: A representation within this many standard errors of the most stable one's mean pairwise ARI
#: is as stable as it: a difference inside the noise is no difference.
TIE_MARGIN_SE = 2.0


def pairwise_agreement(parts: list[np.ndarray]) -> np.ndarray:
    """The ARI of every pair of ``parts`` (label arrays of the same rows), in ``combinations`` order."""
    from sklearn.metrics import adjusted_rand_score

    if len(parts) < 2:
        raise ValueError(f"stability needs at least 2 partitions, got {len(parts)}")
    return np.array([adjusted_rand_score(a, b) for a, b in combinations(parts, 2)])


def kmeans_pairwise_stability(x: np.ndarray, n_clusters: int, seeds: tuple[int, ...], niter: int = 25,
                              normalize: bool = True) -> np.ndarray:
    """The ARI between the KMeans partitions of ``x`` for every pair of ``seeds``."""
    return pairwise_agreement([FaissKMeans(n_clusters, seed=s, niter=niter, normalize=normalize).fit(x).labels_
                               for s in seeds])


def choose_stable(pairwise: dict[str, np.ndarray], preference: tuple[str, ...],
                  margin_se: float = TIE_MARGIN_SE) -> tuple[str, dict]:
    """The first of ``preference`` among the representations as stable as the most stable one.

    ``pairwise``: each representation's ARIs over the same seed pairs, so that two representations
    compare pair by pair. One ties the leader when the mean of its paired differences to the
    leader is at most ``margin_se`` standard errors of that mean (the pairs share seeds, so the
    error is an estimate, not an exact one); with a single pair, only an equal ARI ties. Returns
    the choice and what it was chosen from: each mean, the leader, the tied ones and their gaps.
    """
    missing = [name for name in pairwise if name not in preference]
    if missing:
        raise ValueError(f"no preference given for {missing}")
    means = {name: float(np.mean(v)) for name, v in pairwise.items()}
    leader = max(means, key=lambda name: (means[name], -preference.index(name)))
    gaps = {}
    for name, values in pairwise.items():
        diff = np.asarray(pairwise[leader]) - np.asarray(values)
        se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        gaps[name] = {"gap": round(float(np.mean(diff)), 4), "se": round(se, 4)}
    tied = [name for name in preference if name in pairwise and gaps[name]["gap"] <= margin_se * gaps[name]["se"]]
    return tied[0], {"stability_ari": {k: round(v, 4) for k, v in means.items()}, "most_stable": leader,
                     "as_stable": tied, "gap_to_most_stable": gaps, "margin_se": margin_se}
