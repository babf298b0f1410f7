"""Plain KMeans on sentence embeddings, at corpus scale: the baseline a co-evolved clustering has
to beat, and what to run on millions of texts.

read (Ray Data, validated on the cluster) → embed (an actor pool) → KMeans centres fitted on a
seeded sample (a Ray task) → every row assigned (``map_batches``) → assignments written as
Parquet shards by Ray Data. The driver holds the centres and one integer per input file; its
memory does not grow with the corpus. Embeddings and assignments are stages of the run directory:
a rerun on the same files with the same settings reuses them.
"""

from __future__ import annotations

import logging
import time
import uuid
from numbers import Integral
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coevo_ray.data import Corpus
from coevo_ray.data.corpus import DEFAULT_MAX_TEXT_CHARS
from coevo_ray.errors import InputError, NotFittedError
from coevo_ray.resources import StageResources

logger = logging.getLogger(__name__)

class EmbeddingKMeans:
    """KMeans on the embeddings of ``embedder``, fitted on at most ``sample_size`` rows.

    ``fit`` takes a list of texts, a :class:`~coevo_ray.data.Corpus`, a path / glob / directory /
    URI (JSON Lines, CSV, Parquet, text) or a ``ray.data.Dataset`` with a ``text`` column.
    Fitted attributes: ``cluster_centers_``, ``n_texts_``, ``n_fit_rows_`` (rows the centres were
    fitted on), ``corpus_stats_``, ``assignments_dir_`` (Parquet shards: id, text, cluster,
    distance[, label]), ``labels_`` (in-memory inputs only: a path or a Dataset can be larger than
    the driver; read ``assignments()`` instead), ``run_dir_``, ``timings_``.
    """

    def __init__(self, *, n_clusters: int, embedder: str = "all-minilm-l6-v2", prompt_name: str | None = "auto",
                 sample_size: int = 100_000, seed: int = 0, niter: int = 25, normalize: bool = True,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, output_dir: str | None = None,
                 resources: StageResources | None = None) -> None:
        self.n_clusters = n_clusters
        self.embedder = embedder
        self.prompt_name = prompt_name
        self.sample_size = sample_size
        self.seed = seed
        self.niter = niter
        self.normalize = normalize
        self.max_text_chars = max_text_chars
        self.output_dir = output_dir
        self.resources = resources

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("n_clusters", "embedder", "prompt_name", "sample_size", "seed",
                                                       "niter", "normalize", "max_text_chars", "output_dir",
                                                       "resources")}

    def _check_params(self) -> None:
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, Integral) or self.n_clusters < 2:
            raise InputError(f"n_clusters must be an integer >= 2, got {self.n_clusters!r}")
        if not isinstance(self.sample_size, Integral) or self.sample_size < self.n_clusters:
            raise InputError(f"sample_size must be an integer >= n_clusters ({self.n_clusters}), got {self.sample_size!r}")

    def fit(self, texts: Any, labels: Sequence[Any] | None = None, *, text_field: str = "text",
            label_field: str | None = None) -> "EmbeddingKMeans":
        import ray

        from coevo_ray.clustering import assign_dataset, fit_on_sample
        from coevo_ray.rundir import RunDir, fingerprint
        from coevo_ray.runtime import ensure_ray

        self._check_params()
        ensure_ray()
        timings: dict[str, float] = {}
        start = time.perf_counter()
        corpus, corpus_key, in_memory = _read(texts, labels, text_field, label_field, self.max_text_chars)
        timings["read"] = round(time.perf_counter() - start, 2)
        if self.n_clusters > len(corpus):
            raise InputError(f"n_clusters={self.n_clusters} exceeds the number of texts ({len(corpus)})")
        run = RunDir(self.output_dir)
        model_dir, prompt = self._model()
        embed_key = fingerprint("embed-kmeans/embed", corpus_key, str(model_dir), prompt, self.max_text_chars)
        embedded = self._stage(run, timings, "embed", embed_key, lambda out: self._embed(corpus.dataset, model_dir,
                                                                                          prompt).write_parquet(str(out)))
        vectors = ray.data.read_parquet(str(embedded))
        start = time.perf_counter()
        centers, fit_rows = fit_on_sample(vectors, "embedding", int(self.n_clusters), len(corpus), self.sample_size,
                                          self.seed, self.niter, self.normalize)
        timings["kmeans"] = round(time.perf_counter() - start, 2)
        logger.info("KMeans: %d centres fitted on %d of %d rows in %.1f s", self.n_clusters, fit_rows, len(corpus),
                    timings["kmeans"])
        assign_key = fingerprint("embed-kmeans/assign", embed_key, fingerprint(centers.tobytes().hex()))
        self.assignments_dir_ = self._stage(
            run, timings, "assign", assign_key,
            lambda out: assign_dataset(vectors, "embedding", centers, self.normalize).write_parquet(str(out)))
        self.cluster_centers_, self.n_texts_, self.n_fit_rows_ = centers, len(corpus), fit_rows
        self.corpus_stats_, self.embeddings_dir_, self.timings_ = corpus.stats, embedded, timings
        self._run, self.run_dir_ = run, run.root  # a temporary run directory lives as long as this object
        if in_memory:
            self.labels_ = self._labels_in_id_order(self.assignments_dir_)
        return self

    def fit_predict(self, texts: Any, labels: Sequence[Any] | None = None) -> np.ndarray:
        self.fit(texts, labels)
        if not hasattr(self, "labels_"):
            raise InputError("fit_predict returns labels for in-memory texts only; for a path or a Dataset "
                             "use fit() and assignments()")
        return self.labels_

    def assignments(self):
        """The written assignments as a Ray Dataset (id, text, cluster, distance[, label])."""
        import ray

        self._check_fitted()
        return ray.data.read_parquet(str(self.assignments_dir_))

    def predict(self, texts: Any, *, text_field: str = "text"):
        """Nearest fitted centre of new texts: a cluster-id array for in-memory texts; for a path or
        a Dataset, a lazy Ray Dataset (id, text, cluster, distance) to write or iterate."""
        from coevo_ray.clustering import assign_dataset
        from coevo_ray.runtime import ensure_ray

        self._check_fitted()
        ensure_ray()
        corpus, _, in_memory = _read(texts, None, text_field, None, self.max_text_chars)
        model_dir, prompt = self._model()
        assigned = assign_dataset(self._embed(corpus.dataset, model_dir, prompt), "embedding",
                                  self.cluster_centers_, self.normalize)
        if not in_memory:
            return assigned
        return _clusters_in_id_order(assigned.select_columns(["id", "cluster"]).to_arrow_refs())

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this EmbeddingKMeans is not fitted: call fit() first")

    def _model(self) -> tuple[Path, str]:
        from coevo_ray.embed import model_prompt
        from coevo_ray.models import resolve_model

        model_dir = resolve_model(self.embedder)
        return model_dir, model_prompt(model_dir, self.prompt_name)

    def _embed(self, ds, model_dir: Path, prompt: str):
        from coevo_ray.embed import embed_dataset

        resources = self.resources or StageResources(batch_size=256)
        return embed_dataset(ds, str(model_dir), resources, prompt=prompt)

    @staticmethod
    def _stage(run, timings: dict[str, float], name: str, key: str, build) -> Path:
        start = time.perf_counter()
        path, reused = run.run_stage(name, key, build)
        timings[name] = 0.0 if reused else round(time.perf_counter() - start, 2)
        logger.info("%s: %s", name, "reused from the run directory" if reused else f"done in {timings[name]:.0f} s")
        return path

    @staticmethod
    def _labels_in_id_order(assignments: Path) -> np.ndarray:
        import ray

        return _clusters_in_id_order(ray.data.read_parquet(str(assignments)).select_columns(["id", "cluster"])
                                     .to_arrow_refs())


def _clusters_in_id_order(refs) -> np.ndarray:
    import pyarrow as pa
    import ray

    table = pa.concat_tables(ray.get(refs))
    ids = table.column("id").to_numpy()
    clusters = np.empty(len(ids), dtype=np.int64)
    clusters[ids] = table.column("cluster").to_numpy()
    return clusters


def _read(texts: Any, labels: Sequence[Any] | None, text_field: str, label_field: str | None,
          max_chars: int):
    """(corpus dataset, a key for the run directory, whether the input was in memory)."""
    import ray

    from coevo_ray.data import as_corpus
    from coevo_ray.data.dataset import CorpusDataset, is_ray_dataset, read_corpus_dataset, source_key

    if is_ray_dataset(texts):
        return read_corpus_dataset(texts, text_field, label_field, max_chars), uuid.uuid4().hex, False
    if isinstance(texts, (str, Path)) and not (isinstance(texts, str) and "\n" in texts):
        corpus = read_corpus_dataset(texts, text_field, label_field, max_chars)
        return corpus, source_key(str(texts), text_field, label_field), False
    from coevo_ray.rundir import fingerprint

    corpus = as_corpus(texts if isinstance(texts, Corpus) else list(texts), labels, max_chars)
    rows = [{"id": i, "text": t} for i, t in enumerate(corpus.model_texts(max_chars))]
    if corpus.labels is not None:
        rows = [{**row, "label": y} for row, y in zip(rows, corpus.labels)]
    dataset = ray.data.from_items(rows)
    return (CorpusDataset(dataset, corpus.source, corpus.stats, corpus.labels is not None),
            fingerprint("corpus", corpus.texts, corpus.labels), True)
