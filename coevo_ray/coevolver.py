"""``CoEvolver``: a scikit-learn-style estimator over the co-evolution pipeline
(:mod:`coevo_ray.pipeline`). It stores its parameters, builds a run context on ``fit``, runs the
stateless loop and keeps what the loop returns as fitted attributes (names ending in ``_``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from coevo_ray.config import CoEvolverConfig, EmbedConfig, InterpretConfig
from coevo_ray.data import Corpus, as_corpus
from coevo_ray.estimator import Params
from coevo_ray.errors import InputError, NotFittedError
from coevo_ray.profiles import DEFAULT_PROFILE

logger = logging.getLogger(__name__)

_PARAMS = ("task", "n_clusters", "profile", "llm", "embedder", "iterations", "representation", "seed", "output_dir",
           "sample_size", "stream_unit_rows", "verbose", "interpret", "embed", "cluster", "prefer", "train_llm", "train_embedder", "stages")


class CoEvolver(Params):
    """Cluster texts with an LLM that interprets them and an embedder that clusters the
    interpretations, each trained on the other's output (paper section 3).

    Parameters are those of :class:`~coevo_ray.config.CoEvolverConfig` (sections as dicts or config
    objects; ``llm``/``embedder`` are shortcuts for their models) on top of ``profile`` (a name in
    :data:`coevo_ray.profiles.PROFILES`, the CLI's ``--profile``: ``"quick"`` by default, ``"paper"``
    for appendix A.1, ``"gpu"``; ``None`` for the config dataclasses' own defaults): a parameter
    left at None takes the profile's value, a section dict is merged into the profile's section.
    ``verbose``: 0 warnings only, 1 (default) the stage and progress lines (a handler is added when
    logging is not configured), 2 also what Ray's workers, vLLM and TRL print. ``stages``:
    replacements for pipeline stages by slot (:data:`coevo_ray.pipeline.STAGE_NAMES`). Everything
    is validated by ``fit``, before any model loads.

    >>> model = CoEvolver(task="intent: user intent", n_clusters=77).fit(texts)
    >>> model.labels_, model.get_cluster_info()
    >>> model.save("model/"); CoEvolver.load("model/").predict(["How do I close my account?"])
    """

    _PARAMS = _PARAMS  # the constructor's parameters, for get_params/set_params

    def __init__(self, task: str, n_clusters: int | str, *, profile: str | None = DEFAULT_PROFILE,
                 llm: str | None = None, embedder: str | None = None, iterations: int | None = None,
                 representation: str | None = None, seed: int = 0, output_dir: str | None = None,
                 sample_size: int | None = None, stream_unit_rows: int = 10_000, verbose: int = 1, interpret: InterpretConfig | dict | None = None,
                 embed: EmbedConfig | dict | None = None, cluster: Any = None, prefer: Any = None,
                 train_llm: Any = None, train_embedder: Any = None, stages: Mapping[str, Any] | None = None) -> None:
        self.task, self.n_clusters, self.profile, self.llm, self.embedder = task, n_clusters, profile, llm, embedder
        self.iterations, self.representation, self.seed, self.output_dir = iterations, representation, seed, output_dir
        self.sample_size, self.stream_unit_rows = sample_size, stream_unit_rows
        self.verbose = verbose
        self.interpret, self.embed, self.cluster, self.prefer = interpret, embed, cluster, prefer
        self.train_llm, self.train_embedder, self.stages = train_llm, train_embedder, stages

    @property
    def config(self) -> CoEvolverConfig:
        """The validated configuration these parameters describe."""
        return CoEvolverConfig.from_params(**{k: v for k, v in self.get_params().items() if k not in ("stages", "verbose")})

    def fit(self, texts: Any, labels: Sequence[Any] | str | None = None, *, text_field: str = "text",
            label_field: str | None = None, resume: bool = False) -> "CoEvolver":
        """Run the co-evolution loop. ``texts``: a list, a :class:`Corpus`, a file (JSON Lines,
        CSV, Parquet, text: ``text_field``/``label_field`` name its columns), or — read and
        checked by Ray Data on the cluster — a directory, a glob, a URI or a ``ray.data.Dataset``.
        ``labels`` (a sequence, or for those inputs a column name) are optional: they only add
        ACC/NMI/ARI to the history. The loop holds its texts in the driver and generates at every
        temperature for each of them; with ``sample_size`` it runs on a seeded sample of about that
        many rows, and every other row then streams once through the final LLM, embedder and
        centres, on Ray, in resumable units (:mod:`coevo_ray.pipeline.stream`): read them with
        :meth:`assignments`. ``labels_`` is set for in-memory inputs (a path or a Dataset can be
        larger than the driver).

        With ``output_dir`` set, finished stages are kept there: the same fit rerun reuses them;
        ``resume=True`` also reuses a run written by another config (only the stages whose inputs
        changed run again). Without it they go to a temporary directory removed with this object
        (``save`` keeps what ``predict`` needs)."""
        from coevo_ray.console import library_logging
        from coevo_ray.cost import log_estimate
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline import RunContext, resolve_stages, run_coevolution
        from coevo_ray.pipeline.outputs import describe_clusters, write_outputs

        config = self.config
        with library_logging(self.verbose):
            corpus, sampled = _fit_corpus(texts, labels, text_field, label_field, config, self.verbose)
            if config.n_clusters != "auto" and config.n_clusters > len(corpus):
                raise InputError(f"n_clusters={config.n_clusters} exceeds the number of texts ({len(corpus)})")
            resolved = config.for_models()
            if resolved is not config:
                config = resolved
                logger.info("embedder learning rate %g: the rate for %s's size (learning_rate=None)",
                            config.train_embedder.learning_rate, config.embed.embedder)
            stages = resolve_stages(self.stages)
            ctx = RunContext.open(config, corpus, resume)
            _start_ray(self.verbose)
            logger.info("%s", ctx.plan.describe())
            llm_dir, embedder_dir = resolve_model(config.interpret.llm), resolve_model(config.embed.embedder)
            log_estimate(config, ctx.model_texts(), ctx.plan, llm_dir, embedder_dir,
                         streamed=0 if sampled is None else len(sampled.dataset) - len(sampled.ids))
            result = run_coevolution(ctx, stages, llm_dir, embedder_dir)
            description = describe_clusters(ctx, stages, result)
            streamed = None
            if sampled is not None:
                from coevo_ray.pipeline.stream import stream_fit

                streamed = stream_fit(ctx, sampled, result, description.names)
            self.assignments_dir_, self.report_path_ = write_outputs(ctx, result, description, streamed)
        self._run = ctx.run  # a temporary run directory lives as long as this reference
        self.run_dir_, self.timings_, self.prompt_exemplars_ = ctx.run.root, ctx.timings, ctx.exemplars
        self.cluster_centers_, self.embeddings_ = result.cluster_centers, result.embeddings
        self.distances_ = result.distances
        self.interpretations_, self.n_clusters_, self.history_ = result.interpretations, result.n_clusters, result.history
        self.baseline_, self.llm_, self.embedder_dir_ = result.baseline, result.llm, result.embedder_dir
        self.representation_ = result.representation
        self.adapter_dir_ = result.llm.adapter
        self.cluster_keywords_, self.cluster_names_ = description.keywords, description.names
        self.cluster_examples_, self.texts_ = description.examples, list(corpus.texts)
        self.n_fit_rows_ = len(corpus)
        for stale in ("labels_", "sample_ids_"):  # a refit on a path input has none
            self.__dict__.pop(stale, None)
        if streamed is None:
            self.labels_, self.n_texts_ = result.labels, len(corpus)
            self.cluster_sizes_ = np.bincount(result.labels, minlength=result.n_clusters)
        else:
            self.n_texts_, self.cluster_sizes_ = streamed.n_rows, streamed.sizes
            self.sample_ids_, self.sample_labels_ = sampled.ids, result.labels
            if sampled.in_memory:
                self.labels_ = streamed.labels_in_id_order()
        return self

    def fit_predict(self, texts: Any, labels: Sequence[Any] | str | None = None, **fit_params: Any) -> np.ndarray:
        return self.fit(texts, labels, **fit_params).labels_

    def get_cluster_info(self):
        """One row per cluster (BERTopic's ``get_topic_info``): ``cluster``, ``size``, ``name``,
        ``keywords`` and ``representative_texts`` (the texts nearest its centre), as a DataFrame."""
        from coevo_ray.cluster_info import cluster_table

        self._check_fitted()
        return cluster_table(self._cluster_sizes(), self.cluster_names_, self.cluster_keywords_, self.cluster_examples_)

    def get_document_info(self):
        """One row per training text: ``id``, ``text``, ``cluster``, ``name``, ``interpretation``
        (the final LLM's greedy answer) and ``distance`` to its centre, as a DataFrame."""
        from coevo_ray.cluster_info import document_table

        self._check_fitted()
        if not hasattr(self, "texts_"):
            raise NotFittedError("get_document_info needs the training texts: it is available after fit(), "
                                 "not on a loaded model (predict() the texts instead)")
        if not hasattr(self, "sample_ids_"):
            return document_table(self.texts_, self.labels_, self.cluster_names_, self.distances_,
                                  interpretations=self.interpretations_)
        if not hasattr(self, "labels_"):
            raise InputError("get_document_info is for in-memory fits: read assignments() (a Ray Dataset) for a path "
                             "or Dataset input")
        import pyarrow as pa
        import ray

        table = pa.concat_tables(ray.get(self.assignments().to_arrow_refs())).sort_by("id")
        return document_table(table.column("text").to_pylist(), self.labels_, self.cluster_names_,
                              table.column("distance").to_numpy(),
                              interpretations=table.column("interpretation").to_pylist())

    def assignments(self):
        """Every row's assignment as a Ray Dataset: id, text, cluster, cluster_name, distance (and,
        for a fit on a sample, the final LLM's interpretation)."""
        import ray

        self._check_fitted()
        if getattr(self, "assignments_dir_", None) is None:
            raise NotFittedError("a loaded CoEvolver has no assignments: predict() the texts instead")
        return ray.data.read_parquet(str(self.assignments_dir_))

    def _cluster_sizes(self) -> np.ndarray:
        if hasattr(self, "cluster_sizes_"):
            return np.asarray(self.cluster_sizes_, dtype=np.int64)
        return np.bincount(np.asarray(self.labels_, dtype=np.int64), minlength=self.n_clusters_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this CoEvolver is not fitted: call fit() or CoEvolver.load() first")

    def predict(self, texts: Any, output_dir: str | None = None, *, text_field: str = "text"):
        """Cluster ids for new texts: interpret with the fitted LLM (greedy), embed with the fitted
        embedder, assign to the fitted centres — the stages ``fit`` ran, on Ray. In-memory texts
        and a single file give an array; a directory, glob, URI or ``ray.data.Dataset`` gives a
        Dataset (id, text, cluster, cluster_name, distance, interpretation) to write or iterate:
        the streaming pass of a fit on a sample (the answers are generated by this call, into the
        run directory; embeddings and centres run as the Dataset is consumed)."""
        from coevo_ray.data.dataset import is_scale_input

        if is_scale_input(texts):
            return self._stream_predict(texts, output_dir, text_field)
        return self._assigner().predict(self._representation(texts, output_dir))

    def _stream_predict(self, texts: Any, output_dir: str | None, text_field: str):
        """The streaming pass over ``texts``: the answers are generated now, into a stage of the
        run directory (one actor pool at a time: a generation and an embedding actor at once would
        starve the read tasks of a 2-CPU machine); the embeddings and centres are the returned
        Dataset's, run when it is consumed."""
        import ray

        from coevo_ray.console import library_logging
        from coevo_ray.data.dataset import read_input
        from coevo_ray.pipeline import RunContext, resolve_stages
        from coevo_ray.pipeline.loop import serving
        from coevo_ray.pipeline.stream import Assigner
        from coevo_ray.progress import parquet_progress
        from coevo_ray.rundir import RunDir, fingerprint

        self._check_fitted()
        config = self.config
        with library_logging(self.verbose):
            _start_ray(self.verbose)
            corpus, key, _ = read_input(texts, None, text_field, None, config.interpret.max_text_chars)
            run = RunDir(output_dir or self.run_dir_)
            self._predict_run = run  # a temporary run directory must outlive the lazy Dataset
            ctx = RunContext(config, run, Corpus([]), self.prompt_exemplars_)
            llm = self.llm_
            if llm.adapter is not None and llm.merged is None and ctx.plan.serve_adapter_merged:
                llm = serving(ctx, resolve_stages(self.stages), llm, llm.adapter, "predict")
            assigner = Assigner.of(ctx, llm, Path(self.embedder_dir_), self.cluster_centers_, self.cluster_names_,
                                   self.representation_)

            def generate(out: Path) -> None:
                with parquet_progress(out, len(corpus), "predict-interpret"):
                    assigner.interpret(corpus.dataset).write_parquet(str(out))

            generated, _ = run.run_stage("predict-interpret", fingerprint("predict-interpret", key, assigner.key()),
                                         generate)
            return assigner.place(ray.data.read_parquet(str(generated)))

    def transform(self, texts: Any, output_dir: str | None = None) -> np.ndarray:
        """Distances (N × K) of new texts to every fitted centre, in the clustered space (the
        representation ``predict`` assigns; ``predict`` is its row-wise argmin)."""
        return self._assigner().transform(self._representation(texts, output_dir))

    def _assigner(self):
        from coevo_ray.clustering import FaissKMeans

        self._check_fitted()
        return FaissKMeans.from_centers(self.cluster_centers_, self.config.cluster.normalize)

    def _representation(self, texts: Any, output_dir: str | None) -> np.ndarray:
        from coevo_ray.console import library_logging
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline import RunContext, predict_representation, resolve_stages
        from coevo_ray.rundir import RunDir

        self._check_fitted()
        config = self.config
        with library_logging(self.verbose):
            corpus = _as_corpus(texts, None, "text", None, config.interpret.max_text_chars, self.verbose)
            _start_ray(self.verbose)
            ctx = RunContext(config, RunDir(output_dir or self.run_dir_), corpus, self.prompt_exemplars_)
            return predict_representation(ctx, resolve_stages(self.stages), self.llm_, self.embedder_dir_,
                                          self.representation_, resolve_model(config.embed.embedder))

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` (see :mod:`coevo_ray.model_io`)."""
        from coevo_ray.model_io import save_model

        self._check_fitted()
        trained_embedder = self.run_dir_ is not None and Path(self.embedder_dir_).is_relative_to(self.run_dir_)
        state = {"estimator": "CoEvolver", "config": self.config.to_dict(), "n_clusters": self.n_clusters_,
                 "exemplars": list(self.prompt_exemplars_), "cluster_keywords": self.cluster_keywords_,
                 "cluster_names": self.cluster_names_, "cluster_examples": self.cluster_examples_,
                 "history": self.history_, "representation": self.representation_}
        labels = getattr(self, "labels_", np.zeros(0, dtype=np.int64))  # none for a path streamed past the sample
        return save_model(path, state, self.cluster_centers_, labels, self.llm_.adapter,
                          Path(self.embedder_dir_) if trained_embedder else None)

    @classmethod
    def load(cls, path: str | Path) -> "CoEvolver":
        """A fitted model from :meth:`save`; ``predict`` on the training texts gives ``labels_``."""
        from coevo_ray.model_io import load_model_files
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline import LLMWeights

        manifest, centroids, labels, adapter, embedder = load_model_files(path, "CoEvolver")
        config = CoEvolverConfig.from_dict({**manifest["config"], "output_dir": None})
        model = cls(**config.estimator_params(), profile=None)  # the saved config is complete
        model.n_clusters_, model.cluster_centers_, model.labels_ = int(manifest["n_clusters"]), centroids, labels
        model.cluster_keywords_, model.cluster_names_ = manifest["cluster_keywords"], manifest["cluster_names"]
        model.cluster_examples_ = manifest.get("cluster_examples", [[] for _ in range(model.n_clusters_)])
        model.history_, model.run_dir_ = manifest.get("history", []), None
        model.representation_ = manifest.get("representation", config.representation)
        model.prompt_exemplars_ = tuple(manifest.get("exemplars", ()))
        model.llm_ = LLMWeights(resolve_model(config.interpret.llm), adapter)
        model.adapter_dir_ = adapter
        model.embedder_dir_ = embedder if embedder is not None else resolve_model(config.embed.embedder)
        return model


def _start_ray(verbose: int) -> None:
    """Join or start Ray. Below verbose 2 what Ray's workers print stays in Ray's own log files
    (a session this call starts does not forward it) and Ray Data's progress bars are off: the
    stage lines say how far a fit is."""
    from coevo_ray.runtime import ensure_ray

    ensure_ray(quiet=verbose < 2, log_to_driver=verbose >= 2)


def _fit_corpus(texts: Any, labels: Sequence[Any] | str | None, text_field: str, label_field: str | None,
                config: CoEvolverConfig, verbose: int):
    """(the corpus the loop runs on, the sampled corpus to stream afterwards or None). Without
    ``sample_size``, or with a corpus no larger, the loop gets every row (as ``_as_corpus`` reads
    it); past it, the seeded sample (``pipeline.stream.sample_corpus``)."""
    max_chars = config.interpret.max_text_chars
    if config.sample_size is None:
        return _as_corpus(texts, labels, text_field, label_field, max_chars, verbose), None
    from coevo_ray.data.dataset import read_input
    from coevo_ray.pipeline.stream import sample_corpus

    if isinstance(labels, str):
        labels, label_field = None, labels
    _start_ray(verbose)
    dataset, key, in_memory = read_input(texts, labels, text_field, label_field, max_chars)
    if len(dataset) <= config.sample_size:
        return _as_corpus(texts, labels, text_field, label_field, max_chars, verbose), None
    sampled = sample_corpus(dataset, key, in_memory, config.sample_size, config.seed)
    return sampled.corpus, sampled


def _as_corpus(texts: Any, labels: Sequence[Any] | str | None, text_field: str, label_field: str | None,
               max_chars: int, verbose: int = 1) -> Corpus:
    """What the loop works on: in-memory inputs and single files read here; a directory, glob,
    URI or Dataset read and checked by Ray Data, then gathered in id order."""
    from coevo_ray.data import load_corpus
    from coevo_ray.data.dataset import collect_corpus, is_scale_input, read_corpus_dataset

    if isinstance(labels, str):  # a column name, as label_field
        if label_field is not None and label_field != labels:
            raise InputError(f"labels={labels!r} and label_field={label_field!r} name two label columns")
        labels, label_field = None, labels
    if not is_scale_input(texts):
        is_file = isinstance(texts, (str, Path)) and not (isinstance(texts, str) and "\n" in texts)
        if is_file:
            return load_corpus(texts, labels, text_field=text_field, label_field=label_field, max_chars=max_chars)
        if label_field is not None:
            raise InputError("label_field names a column of a file, directory, glob, URI or Dataset input; "
                             "for a list of texts pass labels=[...]")
        return as_corpus(texts, labels, max_chars)
    if labels is not None:
        raise InputError("with a directory, glob, URI or Dataset input, name the label column: label_field='label'")
    _start_ray(verbose)
    return collect_corpus(read_corpus_dataset(texts, text_field=text_field, label_field=label_field,
                                              max_chars=max_chars))
