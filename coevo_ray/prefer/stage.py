"""The preference step as a Ray task (one GPU when the hardware plan gives it one, for FAISS GPU):
reads the candidates and their embeddings from the run directory, writes ``pairs.parquet`` and
``distances.parquet`` beside them, and returns summary figures. Only paths cross the driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from coevo_ray.config import PreferenceConfig
from coevo_ray.errors import InputError
from coevo_ray.prefer.density import (
    averaged_nearest_centroid_distances,
    choose_winners,
    pair_mask,
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
    complete: np.ndarray | None = None,
    use_gpu: bool = False,
) -> tuple[pa.Table, pa.Table]:
    """Return (pairs, distances) tables. ``candidate_embeddings`` is (N, C, D), candidate 0 greedy;
    ``candidate_texts`` are the strings that were embedded, and DPO trains on the same strings.
    ``complete`` (N, C) marks answers that kept the format and ended by themselves: only those
    are chosen or rejected (the others' embedded string is not what the LLM wrote, or TRL would
    train a cut answer as if it ended)."""
    dist = averaged_nearest_centroid_distances(
        candidate_embeddings[:, 0, :], candidate_embeddings, n_clusters, config.n_runs,
        config.normalize, config.chunk_rows, init=config.init, use_gpu=use_gpu,
    )
    winners = choose_winners(dist, config.rule, seed, eligible=complete)
    mask = pair_mask(winners, dist, config.rule, rejectable=complete)
    rows, chosen, rejected = sample_pairs(mask, winners, config.max_pairs, seed).T
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
        "complete": (np.ones((n, c), dtype=bool) if complete is None else np.asarray(complete, bool)).reshape(-1),
    })
    return pairs, distances


def preference_stage(generated: str, embedded: str, out_dir: str, n_clusters: int, config: PreferenceConfig,
                     seed: int = 0, gpus: float = 0.0) -> dict[str, Any]:
    """Pairs from the candidates in ``generated`` (id, candidate, text, interpretation, fallback,
    finish_reason) and their vectors in ``embedded`` (id, candidate, embedding). The DPO targets
    are the embedded ``interpretation`` strings of answers that kept the format and were not cut.
    ``gpus``: what Ray gave this process (FAISS runs on a GPU only then)."""
    import pyarrow.parquet as pq

    from coevo_ray.hardware import faiss_use_gpu

    from coevo_ray.tables import column_matrix, read_table

    order = (("id", "ascending"), ("candidate", "ascending"))
    gen = read_table(generated, columns=["id", "candidate", "text", "interpretation", "fallback", "finish_reason"],
                     sort_by=order)
    emb = read_table(embedded, columns=["id", "candidate", "embedding"], sort_by=order)
    ids = np.asarray(gen.column("id"))
    n_cand = int(np.asarray(gen.column("candidate")).max()) + 1
    n = len(np.unique(ids))
    if gen.num_rows != n * n_cand or emb.num_rows != gen.num_rows:
        raise InputError(f"preferences need {n_cand} candidates for each of {n} texts; got {gen.num_rows} "
                         f"generated and {emb.num_rows} embedded rows")
    vectors = column_matrix(emb, "embedding").reshape(n, n_cand, -1)
    interpretations = gen.column("interpretation").to_pylist()
    candidate_texts = [interpretations[i * n_cand:(i + 1) * n_cand] for i in range(n)]
    complete = ((np.asarray(gen.column("fallback")) == "") & (np.asarray(gen.column("finish_reason")) != "length"))
    pairs, distances = select_preferences(ids[::n_cand], gen.column("text").to_pylist()[::n_cand],
                                          candidate_texts, vectors, n_clusters, config, seed,
                                          complete.reshape(n, n_cand), use_gpu=faiss_use_gpu(gpus))
    out = Path(out_dir)
    pq.write_table(pairs, out / "pairs.parquet")
    pq.write_table(distances, out / "distances.parquet")
    winners = np.asarray(distances.column("candidate"))[np.asarray(distances.column("chosen"))]
    return {"pairs": pairs.num_rows, "texts": n, "candidates": n_cand,
            "chosen_by_candidate": np.bincount(winners, minlength=n_cand).tolist(),
            "incomplete_by_candidate": (~complete.reshape(n, n_cand)).sum(axis=0).tolist(),
            "texts_without_a_winner": int(n - len(winners)),
            "mean_chosen_distance": float(np.mean(np.asarray(pairs.column("chosen_distance")))) if pairs.num_rows else None,
            "mean_rejected_distance": float(np.mean(np.asarray(pairs.column("rejected_distance")))) if pairs.num_rows else None}


def preference_stage_on_ray(*args, task_gpus: float | None = None, **kwargs) -> dict[str, Any]:
    """Run :func:`preference_stage` as a Ray task with ``task_gpus`` GPUs (the hardware plan's; by
    default one when the cluster has GPUs)."""
    import ray

    from coevo_ray.hardware import remote_task
    from coevo_ray.hardware import task_gpus as cluster_task_gpus

    gpus = cluster_task_gpus() if task_gpus is None else task_gpus
    return ray.get(remote_task(preference_stage, gpus).remote(*args, gpus=gpus, **kwargs))
