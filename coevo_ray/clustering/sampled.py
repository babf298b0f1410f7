"""KMeans for corpora larger than one process should hold: centres fitted on a seeded sample in
a Ray task (on a GPU when the cluster has one), every row assigned in a Ray Data ``map_batches``.

Like NeMo Curator's ``fit_data_fraction``: below ``sample_size`` rows the sample is the whole
set (the same centres as an in-memory KMeans); above it, the centres are those of a uniform
sample, which places them as well as the full set does when each cluster keeps enough rows in
it, and a cluster smaller than about ``N / sample_size`` rows may go without its own centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coevo_ray.clustering.faiss_kmeans import FaissKMeans
from coevo_ray.errors import InputError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def in_sample(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whether each row id is in the seeded sample: a hash of (id, seed) below ``fraction``, so
    the sample is the same however the data is split into blocks, files or workers. (SplitMix64
    finaliser written here: numpy has no vectorised integer hash with a seed.)"""
    if fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    with np.errstate(over="ignore"):
        z = np.asarray(ids, dtype=np.uint64) * _GOLDEN + np.uint64(seed) * np.uint64(0xD1B54A32D192ED03)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def _sample_rows(batch: dict[str, np.ndarray], column: str, fraction: float, seed: int) -> dict[str, np.ndarray]:
    keep = in_sample(batch["id"], fraction, seed)
    return {"id": batch["id"][keep], column: batch[column][keep]}


def _fit_task(sample, column: str, n_clusters: int, seed: int, niter: int, normalize: bool,
              gpus: float = 0.0) -> dict[str, Any]:
    from coevo_ray.hardware import faiss_use_gpu

    ids, parts = [], []
    for batch in sample.iter_batches(batch_format="numpy", batch_size=16384):
        ids.append(batch["id"])
        parts.append(np.asarray(np.stack(batch[column]) if batch[column].dtype == object else batch[column],
                                dtype=np.float32))
    if not parts:
        raise InputError("the KMeans sample is empty: no rows to fit the centres on")
    order = np.argsort(np.concatenate(ids), kind="stable")  # block order must not change the fit
    x = np.concatenate(parts)[order]
    if n_clusters > len(x):
        raise InputError(f"n_clusters={n_clusters} exceeds the {len(x)} rows of the KMeans sample; "
                         "raise sample_size or lower n_clusters")
    km = FaissKMeans(n_clusters, seed=seed, niter=niter, normalize=normalize, use_gpu=faiss_use_gpu(gpus)).fit(x)
    return {"centers": km.cluster_centers_, "rows": len(x)}


def fit_on_sample(ds, column: str, n_clusters: int, n_rows: int, sample_size: int, seed: int = 0,
                  niter: int = 25, normalize: bool = True, task_gpus: float | None = None,
                  in_driver: bool = False) -> tuple[np.ndarray, int]:
    """KMeans centres (K × d) fitted on a seeded sample of about ``sample_size`` of the ``n_rows``
    rows of ``ds`` (all of them when ``n_rows <= sample_size``), in one Ray task (``task_gpus``
    GPUs: the hardware plan's, by default one when the cluster has GPUs) or, ``in_driver``, in
    this process (a small input on a one-node CPU cluster); returns the centres and the rows they
    were fitted on. ``ds`` needs ``id`` and ``column``."""
    import ray

    from coevo_ray.hardware import remote_task
    from coevo_ray.hardware import task_gpus as cluster_task_gpus

    fraction = min(1.0, sample_size / max(n_rows, 1))
    sample = ds.select_columns(["id", column]).map_batches(
        _sample_rows, fn_kwargs={"column": column, "fraction": fraction, "seed": seed}, batch_format="numpy")
    if in_driver:
        out = _fit_task(sample, column, n_clusters, seed, niter, normalize)
        return out["centers"], out["rows"]
    gpus = cluster_task_gpus() if task_gpus is None else task_gpus
    out = ray.get(remote_task(_fit_task, gpus).remote(sample, column, n_clusters, seed, niter, normalize, gpus))
    return out["centers"], out["rows"]


def _assign(batch: dict[str, np.ndarray], column: str, centers: np.ndarray, normalize: bool) -> dict[str, np.ndarray]:
    vectors = batch.pop(column)
    vectors = np.stack(vectors) if vectors.dtype == object else vectors
    batch["cluster"], batch["distance"] = FaissKMeans.from_centers(centers, normalize).assign(vectors)
    return batch


def assign_dataset(ds, column: str, centers: np.ndarray, normalize: bool = True, batch_size: int = 4096):
    """``ds`` with ``column`` replaced by ``cluster`` (nearest centre) and ``distance`` (to it)."""
    return ds.map_batches(_assign, fn_kwargs={"column": column, "centers": np.asarray(centers, np.float32),
                                              "normalize": normalize},
                          batch_size=batch_size, batch_format="numpy", udf_modifying_row_count=False)
