"""Plain KMeans on sentence embeddings, at corpus scale: the baseline a co-evolved clustering has
to beat, and what to run on millions of texts.

read (Ray Data, validated on the cluster) → embed (an actor pool) → KMeans centres fitted on a
seeded sample (a Ray task) → every row assigned (``map_batches``) → assignments written as
Parquet shards by Ray Data → the clusters described from a seeded sample of at most
``DESCRIBE_ROWS`` rows (c-TF-IDF keywords of the texts, the texts nearest each centre, and a name:
the LLM's when ``llm`` is given, else the top keywords) → ``summary.json`` and ``report.html``. The
driver holds the centres, that sample and one integer per input file; its memory does not grow
with the corpus. Embeddings, assignments and names are stages of the run directory: a rerun on
the same files with the same settings reuses them. A small input on a one-node CPU cluster is
embedded and its centres fitted in the driver instead, as ``CoEvolver``'s small stages are.
"""

from __future__ import annotations

import logging
import time
from numbers import Integral
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coevo_ray.data.corpus import DEFAULT_MAX_TEXT_CHARS
from coevo_ray.data.dataset import read_input
from coevo_ray.estimator import Params
from coevo_ray.errors import InputError, NotFittedError
from coevo_ray.resources import StageResources

logger = logging.getLogger(__name__)

#: Rows the clusters are described from (keywords, representative texts, the report's map).
DESCRIBE_ROWS = 20_000
#: A generic naming task for corpora without a task description.
DEFAULT_NAMING_TASK = "topic: shared subject"
_PARAMS = ("n_clusters", "embedder", "prompt_name", "sample_size", "seed", "niter", "normalize", "max_text_chars",
           "output_dir", "llm", "task", "keywords_per_cluster", "verbose", "resources")


class EmbeddingKMeans(Params):
    """KMeans on the embeddings of ``embedder``, fitted on at most ``sample_size`` rows.

    ``fit`` takes what :meth:`CoEvolver.fit <coevo_ray.CoEvolver.fit>` takes, with the same
    signature: a list of texts, a :class:`~coevo_ray.data.Corpus`, a file, a directory, glob or
    URI (JSON Lines, CSV, Parquet, text) or a ``ray.data.Dataset`` with a text column. ``llm``: an
    LLM alias or directory that names the clusters (``task`` says what they group; without an LLM
    the name is the top two keywords). Fitted attributes: ``cluster_centers_``, ``n_texts_``,
    ``n_fit_rows_`` (rows the centres were fitted on), ``cluster_sizes_``, ``cluster_names_``,
    ``cluster_keywords_``, ``cluster_examples_``, ``corpus_stats_``, ``assignments_dir_`` (Parquet
    shards: id, text, cluster, distance[, label]), ``labels_`` (in-memory inputs only: a path or a
    Dataset can be larger than the driver; read ``assignments()`` instead), ``run_dir_``,
    ``report_path_``, ``timings_``.
    """

    _PARAMS = _PARAMS  # the constructor's parameters, for get_params/set_params

    def __init__(self, *, n_clusters: int, embedder: str = "all-minilm-l6-v2", prompt_name: str | None = "auto",
                 sample_size: int = 100_000, seed: int = 0, niter: int = 25, normalize: bool = True,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, output_dir: str | None = None, llm: str | None = None,
                 task: str | None = None, keywords_per_cluster: int = 8, verbose: int = 1,
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
        self.llm = llm
        self.task = task
        self.keywords_per_cluster = keywords_per_cluster
        self.verbose = verbose
        self.resources = resources

    def _check_params(self) -> None:
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, Integral) or self.n_clusters < 2:
            raise InputError(f"n_clusters must be an integer >= 2, got {self.n_clusters!r}")
        if not isinstance(self.sample_size, Integral) or self.sample_size < self.n_clusters:
            raise InputError(f"sample_size must be an integer >= n_clusters ({self.n_clusters}), got {self.sample_size!r}")
        if self.task is not None:
            from coevo_ray.interpret.prompts import TaskDescription

            TaskDescription.parse(self.task)

    def fit(self, texts: Any, labels: Sequence[Any] | str | None = None, *, text_field: str = "text",
            label_field: str | None = None, resume: bool = False) -> "EmbeddingKMeans":
        """Embed, fit the centres, assign every row, describe the clusters. ``labels``: a sequence
        for in-memory texts, or a column name (as ``label_field``) for the other inputs; they are
        kept in the assignments. Every stage is reused whenever its inputs match a finished one in
        ``output_dir`` (``resume`` is accepted for :meth:`CoEvolver.fit`'s signature: nothing here
        depends on the rest of the configuration)."""
        import ray

        from coevo_ray.clustering import assign_dataset, fit_on_sample
        from coevo_ray.console import library_logging
        from coevo_ray.rundir import RunDir, fingerprint
        from coevo_ray.runtime import ensure_ray

        self._check_params()
        if isinstance(labels, str):
            labels, label_field = None, labels
        with library_logging(self.verbose):
            ensure_ray(quiet=self.verbose < 2, log_to_driver=self.verbose >= 2)
            timings: dict[str, float] = {}
            start = time.perf_counter()
            corpus, corpus_key, in_memory = read_input(texts, labels, text_field, label_field, self.max_text_chars)
            timings["read"] = round(time.perf_counter() - start, 2)
            if self.n_clusters > len(corpus):
                raise InputError(f"n_clusters={self.n_clusters} exceeds the number of texts ({len(corpus)})")
            run = RunDir(self.output_dir)
            model_dir, prompt = self._model()
            small = self._small(len(corpus))
            embed_key = fingerprint("embed-kmeans/embed", corpus_key, str(model_dir), prompt, self.max_text_chars)
            embedded = self._stage(run, timings, "embed", embed_key,
                                   lambda out: self._embed(corpus.dataset, model_dir, prompt, small).write_parquet(str(out)))
            vectors = ray.data.read_parquet(str(embedded))
            start = time.perf_counter()
            centers, fit_rows = fit_on_sample(vectors, "embedding", int(self.n_clusters), len(corpus), self.sample_size,
                                              self.seed, self.niter, self.normalize, in_driver=small)
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
            self._describe(run, assign_key, timings)
        return self

    def _describe(self, run, assign_key: str, timings: dict[str, float]) -> None:
        """Sizes from every row; keywords, representative texts and names from a seeded sample of
        at most ``DESCRIBE_ROWS`` rows; summary.json and report.html with an output directory."""
        import ray

        from coevo_ray._atomic import atomic_write_json
        from coevo_ray.describe import cluster_keywords, keyword_name, naming_requests, text_keywords
        from coevo_ray.report import write_report

        start = time.perf_counter()
        k = int(self.n_clusters)
        assignments = ray.data.read_parquet(str(self.assignments_dir_))
        sizes = np.zeros(k, dtype=np.int64)
        for batch in assignments.select_columns(["cluster"]).iter_batches(batch_format="numpy", batch_size=65536):
            sizes += np.bincount(batch["cluster"], minlength=k)[:k]
        sample, vectors = _described_rows(assignments, ray.data.read_parquet(str(self.embeddings_dir_)),
                                          DESCRIBE_ROWS / max(self.n_texts_, 1), self.seed)
        texts, clusters, distances = sample["text"], sample["cluster"], sample["distance"]
        keywords = cluster_keywords([text_keywords(t) for t in texts], clusters, k, self.keywords_per_cluster)
        examples = []
        for c in range(k):
            members = np.flatnonzero(clusters == c)
            examples.append([texts[i] for i in members[np.argsort(distances[members], kind="stable")][:3]])
        names = [keyword_name(kws) for kws in keywords]
        if self.llm is not None:
            names = self._llm_names(run, assign_key, naming_requests(texts, clusters, keywords, distances), keywords)
        self.cluster_sizes_, self.cluster_keywords_, self.cluster_examples_, self.cluster_names_ = (
            sizes, keywords, examples, names)
        timings["describe"] = round(time.perf_counter() - start, 2)
        self.report_path_ = None
        if self.output_dir is None:
            return
        clusters_out = [{"id": c, "size": int(sizes[c]), "name": names[c], "keywords": keywords[c],
                         "examples": examples[c]} for c in range(k)]
        params = {**self.get_params(), "resources": _resources_dict(self.resources)}
        summary = {"estimator": "EmbeddingKMeans", "config": {**params, "embed": {"embedder": self.embedder},
                                                              "interpret": {"llm": self.llm}, "task": self.task},
                   "n_texts": self.n_texts_, "n_fit_rows": self.n_fit_rows_, "n_clusters": k,
                   "corpus": self.corpus_stats_, "timings_s": timings, "history": [], "clusters": clusters_out}
        atomic_write_json(Path(self.run_dir_) / "summary.json", summary)
        self.report_path_ = write_report(self.run_dir_, summary, vectors, clusters, clusters_out)

    def _llm_names(self, run, assign_key: str, requests: list[str], keywords: list[list[str]]) -> list[str]:
        """The LLM's name for each cluster (the naming stage of ``CoEvolver``), as a stage of the
        run directory; an answer that is no name of its own falls back to the keywords."""
        from coevo_ray.config import CoEvolverConfig
        from coevo_ray.describe import clean_name
        from coevo_ray.hardware import plan_for
        from coevo_ray.interpret import EngineSpec
        from coevo_ray.interpret.prompts import NAME_REGEX
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline.generation import name_rows, naming_settings
        from coevo_ray.rundir import fingerprint
        from coevo_ray.tables import read_table

        task = self.task or DEFAULT_NAMING_TASK
        config = CoEvolverConfig.from_params(task=task, n_clusters=int(self.n_clusters), llm=self.llm)
        plan = plan_for(config)
        spec = EngineSpec(model_dir=str(resolve_model(self.llm)), dtype=plan.engine_dtype, device=plan.engine_device,
                          engine_kwargs=plan.engine_kwargs, structured_regex=NAME_REGEX, seed=self.seed)
        settings = naming_settings(task, self.seed, config.interpret.admission)
        key = fingerprint("embed-kmeans/names", assign_key, spec.model_dir, spec.dtype, requests, settings)
        named = self._stage(run, {}, "names", key, lambda out: name_rows(
            spec, settings, requests, plan.generation).write_parquet(str(out)))
        rows = sorted(read_table(named).to_pylist(), key=lambda r: r["id"])
        return [clean_name(row["raw"], kws, context=request, truncated=row["finish_reason"] == "length")
                for row, kws, request in zip(rows, keywords, requests)]

    def fit_predict(self, texts: Any, labels: Sequence[Any] | str | None = None, **fit_params: Any) -> np.ndarray:
        self.fit(texts, labels, **fit_params)
        if not hasattr(self, "labels_"):
            raise InputError("fit_predict returns labels for in-memory texts only; for a path or a Dataset "
                             "use fit() and assignments()")
        return self.labels_

    def assignments(self):
        """The written assignments as a Ray Dataset (id, text, cluster, distance[, label])."""
        import ray

        self._check_fitted()
        if not hasattr(self, "assignments_dir_"):
            raise NotFittedError("a loaded EmbeddingKMeans has no assignments: predict() the texts instead")
        return ray.data.read_parquet(str(self.assignments_dir_))

    def get_cluster_info(self):
        """One row per cluster (BERTopic's ``get_topic_info``): ``cluster``, ``size``, ``name``,
        ``keywords`` and ``representative_texts``, as a DataFrame."""
        from coevo_ray.cluster_info import cluster_table

        self._check_fitted()
        return cluster_table(self.cluster_sizes_, self.cluster_names_, self.cluster_keywords_, self.cluster_examples_)

    def get_document_info(self):
        """One row per text of an in-memory fit: ``id``, ``text``, ``cluster``, ``name``,
        ``distance``, as a DataFrame (for a path or Dataset input, ``assignments()`` streams them)."""
        import pyarrow as pa
        import ray

        from coevo_ray.cluster_info import document_table

        self._check_fitted()
        if not hasattr(self, "labels_") or not hasattr(self, "assignments_dir_"):
            raise InputError("get_document_info is for in-memory fits: read assignments() (a Ray Dataset) for a path "
                             "or Dataset input")
        table = pa.concat_tables(ray.get(self.assignments().select_columns(["id", "text", "distance"])
                                         .to_arrow_refs())).sort_by("id")
        return document_table(table.column("text").to_pylist(), self.labels_, self.cluster_names_,
                              table.column("distance").to_numpy())

    def predict(self, texts: Any, *, text_field: str = "text"):
        """Nearest fitted centre of new texts: a cluster-id array for in-memory texts; for a path or
        a Dataset, a lazy Ray Dataset (id, text, cluster, distance) to write or iterate."""
        from coevo_ray.clustering import assign_dataset

        self._check_fitted()
        corpus, in_memory = self._new_texts(texts, text_field)
        model_dir, prompt = self._model()
        assigned = assign_dataset(self._embed(corpus.dataset, model_dir, prompt, in_memory and self._small(len(corpus))),
                                  "embedding", self.cluster_centers_, self.normalize)
        if not in_memory:
            return assigned
        return _clusters_in_id_order(assigned.select_columns(["id", "cluster"]).to_arrow_refs())

    def transform(self, texts: Any, *, text_field: str = "text") -> np.ndarray:
        """Distances (N × K) of in-memory texts to every fitted centre (``predict`` is the argmin)."""
        import pyarrow as pa
        import ray

        from coevo_ray.clustering import FaissKMeans
        from coevo_ray.tables import column_matrix

        self._check_fitted()
        corpus, in_memory = self._new_texts(texts, text_field)
        if not in_memory:
            raise InputError("transform takes in-memory texts (an N x K array); for a path or Dataset use predict(), "
                             "which streams each row's nearest centre and distance")
        model_dir, prompt = self._model()
        embedded = self._embed(corpus.dataset, model_dir, prompt, self._small(len(corpus)))
        table = pa.concat_tables(ray.get(embedded.to_arrow_refs())).sort_by("id")
        return FaissKMeans.from_centers(self.cluster_centers_, self.normalize).transform(column_matrix(table, "embedding"))

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path``: the parameters, centres, cluster descriptions and (for
        an in-memory fit) the labels, as JSON and ``.npy`` (:mod:`coevo_ray.model_io`); the embedder
        is stored by reference, as it was not trained."""
        from coevo_ray.model_io import save_model

        self._check_fitted()
        state = {"estimator": "EmbeddingKMeans", "params": {**self.get_params(), "output_dir": None,
                                                            "resources": _resources_dict(self.resources)},
                 "n_texts": self.n_texts_, "n_fit_rows": self.n_fit_rows_, "in_memory": hasattr(self, "labels_"),
                 "cluster_sizes": [int(x) for x in self.cluster_sizes_], "cluster_names": self.cluster_names_,
                 "cluster_keywords": self.cluster_keywords_, "cluster_examples": self.cluster_examples_}
        labels = self.labels_ if hasattr(self, "labels_") else np.zeros(0, dtype=np.int64)
        return save_model(path, state, self.cluster_centers_, labels, None, None)

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingKMeans":
        """A fitted model from :meth:`save`; ``predict`` on the training texts gives ``labels_``."""
        from coevo_ray.model_io import load_model_files

        manifest, centroids, labels, _, _ = load_model_files(path, "EmbeddingKMeans")
        params = dict(manifest["params"])
        if params.get("resources") is not None:
            params["resources"] = StageResources(**params["resources"])
        model = cls(**params)
        model.cluster_centers_, model.n_texts_, model.n_fit_rows_ = centroids, manifest["n_texts"], manifest["n_fit_rows"]
        model.cluster_sizes_ = np.asarray(manifest["cluster_sizes"], dtype=np.int64)
        model.cluster_names_, model.cluster_keywords_ = manifest["cluster_names"], manifest["cluster_keywords"]
        model.cluster_examples_, model.run_dir_ = manifest["cluster_examples"], None
        if manifest.get("in_memory"):
            model.labels_ = labels
        return model

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this EmbeddingKMeans is not fitted: call fit() or EmbeddingKMeans.load() first")

    def _new_texts(self, texts: Any, text_field: str):
        from coevo_ray.runtime import ensure_ray

        ensure_ray(quiet=self.verbose < 2, log_to_driver=self.verbose >= 2)
        corpus, _, in_memory = read_input(texts, None, text_field, None, self.max_text_chars)
        return corpus, in_memory

    def _model(self) -> tuple[Path, str]:
        from coevo_ray.embed import model_prompt
        from coevo_ray.models import resolve_model

        model_dir = resolve_model(self.embedder)
        return model_dir, model_prompt(model_dir, self.prompt_name)

    def _small(self, rows: int) -> bool:
        """Whether an input of ``rows`` rows is embedded and its centres fitted in the driver:
        ``CoEvolver``'s rule for small stages (at most ``EmbedConfig.in_process_max_rows`` rows, a
        one-node cluster without GPUs, no GPU asked for)."""
        from coevo_ray.config import EmbedConfig
        from coevo_ray.embed import small_enough_for_driver
        from coevo_ray.hardware import current_topology

        return small_enough_for_driver(rows, EmbedConfig.in_process_max_rows,
                                       self.resources or StageResources(batch_size=256), current_topology())

    def _embed(self, ds, model_dir: Path, prompt: str, in_driver: bool):
        """``ds`` with an ``embedding`` column: ``in_driver`` (see :meth:`_small`), encoded here,
        sorted by id, so that a list, a path and a Dataset of the same texts get the same vectors;
        otherwise lazily, by a Ray Data actor pool."""
        import pyarrow as pa
        import ray

        from coevo_ray.embed import embed_dataset, encode_table_in_driver

        if in_driver:
            table = pa.concat_tables(ray.get(ds.to_arrow_refs())).sort_by("id")
            logger.info("embedding %d texts in the driver (a small input on a one-node CPU cluster)", table.num_rows)
            return ray.data.from_arrow(encode_table_in_driver(table, "text", str(model_dir), prompt=prompt,
                                                               keep_column=True))
        return embed_dataset(ds, str(model_dir), self.resources or StageResources(batch_size=256), prompt=prompt)

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


def _resources_dict(resources: StageResources | None) -> dict | None:
    from dataclasses import asdict

    return None if resources is None else asdict(resources)


def _described_rows(assignments, embedded, fraction: float, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of the seeded describe sample (all of them below ``DESCRIBE_ROWS``), in id order:
    text, cluster, distance, and their embeddings (the report's map)."""
    import pyarrow as pa
    import ray

    from coevo_ray.clustering.sampled import in_sample
    from coevo_ray.tables import column_matrix

    def keep(batch):
        return batch.filter(pa.array(in_sample(batch.column("id").to_numpy(), fraction, seed)))

    def gather(ds, columns):
        refs = ds.select_columns(columns).map_batches(keep, batch_format="pyarrow").to_arrow_refs()
        return pa.concat_tables(ray.get(refs)).sort_by("id")

    rows = gather(assignments, ["id", "text", "cluster", "distance"])
    vectors = column_matrix(gather(embedded, ["id", "embedding"]), "embedding")
    return ({"text": rows.column("text").to_pylist(), "cluster": rows.column("cluster").to_numpy(),
             "distance": rows.column("distance").to_numpy()}, vectors)


def _clusters_in_id_order(refs) -> np.ndarray:
    import pyarrow as pa
    import ray

    table = pa.concat_tables(ray.get(refs))
    ids = table.column("id").to_numpy()
    clusters = np.empty(len(ids), dtype=np.int64)
    clusters[ids] = table.column("cluster").to_numpy()
    return clusters
