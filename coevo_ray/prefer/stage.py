"""The preference step as a Ray task (asks for a GPU when the cluster has one, for FAISS GPU)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from coevo_ray.prefer.density import (
    PreferenceConfig,
    averaged_nearest_centroid_distances,
    choose_winners,
    sample_pairs,
)


def select_preferences(
    ids: np.ndarray,
    texts: Sequence[str],
    candidate_texts: Sequence[Sequence[str]],
    candidate_embeddings: np.ndarray,
    n_clusters: int,
    config: PreferenceConfig,
    seed: int = 0,
) -> tuple[pa.Table, pa.Table]:
    """Return (pairs, distances) tables. ``candidate_embeddings`` is (N, C, D), candidate 0 greedy."""
    dist = averaged_nearest_centroid_distances(
        candidate_embeddings[:, 0, :], candidate_embeddings, n_clusters, config.n_runs,
        config.normalize, config.chunk_rows,
    )
    winners = choose_winners(dist, config.rule, seed)
    triples = sample_pairs(winners, candidate_embeddings.shape[1], config.max_pairs, seed)
    rows, chosen, rejected = triples.T
    chosen_txt = [candidate_texts[r][c] for r, c in zip(rows, chosen)]
    rejected_txt = [candidate_texts[r][c] for r, c in zip(rows, rejected)]
    keep = np.ones(len(rows), dtype=bool)
    if config.skip_identical:
        keep = np.array([a != b for a, b in zip(chosen_txt, rejected_txt)], dtype=bool)
    pairs = pa.table({
        "id": np.asarray(ids)[rows][keep],
        "text": [texts[r] for r, k in zip(rows, keep) if k],
        "chosen": [t for t, k in zip(chosen_txt, keep) if k],
        "rejected": [t for t, k in zip(rejected_txt, keep) if k],
        "chosen_candidate": chosen[keep],
        "rejected_candidate": rejected[keep],
        "chosen_distance": dist[rows, chosen][keep],
        "rejected_distance": dist[rows, rejected][keep],
    })
    n, c = dist.shape
    distances = pa.table({
        "id": np.repeat(np.asarray(ids), c),
        "candidate": np.tile(np.arange(c), n),
        "avg_distance": dist.reshape(-1),
        "chosen": (np.arange(c)[None, :] == winners[:, None]).reshape(-1),
    })
    return pairs, distances


def select_preferences_on_ray(*args, **kwargs) -> tuple[pa.Table, pa.Table]:
    """Run :func:`select_preferences` as a Ray task, on a GPU when the cluster reports one."""
    import ray

    from coevo_ray.runtime import cluster_gpus

    task = ray.remote(num_cpus=1, num_gpus=1 if cluster_gpus() > 0 else 0)(select_preferences)
    return ray.get(task.remote(*args, **kwargs))
