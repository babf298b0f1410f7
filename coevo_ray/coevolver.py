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
from coevo_ray.errors import InputError, NotFittedError

logger = logging.getLogger(__name__)

_PARAMS = ("task", "n_clusters", "llm", "embedder", "iterations", "representation", "seed", "output_dir",
           "interpret", "embed", "cluster", "prefer", "train_llm", "train_embedder", "stages")


class CoEvolver:
    """Cluster texts with an LLM that interprets them and an embedder that clusters the
    interpretations, each trained on the other's output (paper section 3).

    Parameters are those of :class:`~coevo_ray.config.CoEvolverConfig` (sections as dicts or config
    objects; ``llm``/``embedder`` are shortcuts for their models) plus ``stages``: replacements for
    pipeline stages by slot (:data:`coevo_ray.pipeline.STAGE_NAMES`). They are validated by ``fit``.

    >>> model = CoEvolver(task="intent: user intent", n_clusters=77).fit(texts)
    >>> model.labels_, model.cluster_names_
    >>> model.save("model/"); CoEvolver.load("model/").predict(["How do I close my account?"])
    """

    def __init__(self, task: str, n_clusters: int | str, *, llm: str | None = None, embedder: str | None = None,
                 iterations: int = 2, representation: str = "concat", seed: int = 0,
                 output_dir: str | None = None, interpret: InterpretConfig | dict | None = None,
                 embed: EmbedConfig | dict | None = None, cluster: Any = None, prefer: Any = None,
                 train_llm: Any = None, train_embedder: Any = None, stages: Mapping[str, Any] | None = None) -> None:
        self.task, self.n_clusters, self.llm, self.embedder = task, n_clusters, llm, embedder
        self.iterations, self.representation, self.seed, self.output_dir = iterations, representation, seed, output_dir
        self.interpret, self.embed, self.cluster, self.prefer = interpret, embed, cluster, prefer
        self.train_llm, self.train_embedder, self.stages = train_llm, train_embedder, stages

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> "CoEvolver":
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise InputError(f"unknown parameters {unknown}; CoEvolver takes {', '.join(_PARAMS)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    @property
    def config(self) -> CoEvolverConfig:
        """The validated configuration these parameters describe."""
        return CoEvolverConfig.from_params(**{k: v for k, v in self.get_params().items() if k != "stages"})

    def fit(self, texts: Any, labels: Sequence[Any] | str | None = None, resume: bool = False) -> "CoEvolver":
        """Run the co-evolution loop. ``texts``: a list, a :class:`Corpus`, a file, or — read and
        checked by Ray Data on the cluster — a directory, a glob, a URI or a ``ray.data.Dataset``
        (``labels`` then names its label column). The loop itself holds the texts in the driver
        and generates for each of them: past a few hundred thousand texts, fit on a sample
        (README, "Large corpora"); :class:`~coevo_ray.EmbeddingKMeans` clusters any size.

        With ``output_dir`` set, finished stages are kept there: the same fit rerun reuses them;
        ``resume=True`` also reuses a run written by another config (only the stages whose inputs
        changed run again). Without it they go to a temporary directory removed with this object
        (``save`` keeps what ``predict`` needs)."""
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline import RunContext, resolve_stages, run_coevolution
        from coevo_ray.pipeline.outputs import describe_clusters, write_outputs
        from coevo_ray.runtime import ensure_ray

        config = self.config
        corpus = _as_corpus(texts, labels, config.interpret.max_text_chars)
        if config.n_clusters != "auto" and config.n_clusters > len(corpus):
            raise InputError(f"n_clusters={config.n_clusters} exceeds the number of texts ({len(corpus)})")
        stages = resolve_stages(self.stages)
        ctx = RunContext.open(config, corpus, resume)
        ensure_ray()
        logger.info("%s", ctx.plan.describe())
        result = run_coevolution(ctx, stages, resolve_model(config.interpret.llm), resolve_model(config.embed.embedder))
        description = describe_clusters(ctx, stages, result)
        self.assignments_dir_, self.report_path_ = write_outputs(ctx, result, description)
        self._run = ctx.run  # a temporary run directory lives as long as this reference
        self.run_dir_, self.timings_, self.prompt_exemplars_ = ctx.run.root, ctx.timings, ctx.exemplars
        self.labels_, self.cluster_centers_, self.embeddings_ = result.labels, result.cluster_centers, result.embeddings
        self.interpretations_, self.n_clusters_, self.history_ = result.interpretations, result.n_clusters, result.history
        self.baseline_, self.llm_, self.embedder_dir_ = result.baseline, result.llm, result.embedder_dir
        self.adapter_dir_ = result.llm.adapter
        self.cluster_keywords_, self.cluster_names_ = description.keywords, description.names
        return self

    def fit_predict(self, texts: Sequence[str] | Corpus, labels: Sequence[Any] | None = None) -> np.ndarray:
        return self.fit(texts, labels).labels_

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this CoEvolver is not fitted: call fit() or CoEvolver.load() first")

    def predict(self, texts: Any, output_dir: str | None = None) -> np.ndarray:
        """Cluster ids for new texts: interpret with the fitted LLM (greedy), embed with the fitted
        embedder, assign to the fitted centres — the stages ``fit`` ran, on Ray."""
        from coevo_ray.clustering import FaissKMeans
        from coevo_ray.pipeline import RunContext, predict_representation, resolve_stages
        from coevo_ray.rundir import RunDir
        from coevo_ray.runtime import ensure_ray

        self._check_fitted()
        config = self.config
        corpus = _as_corpus(texts, None, config.interpret.max_text_chars)
        ctx = RunContext(config, RunDir(output_dir or self.run_dir_), corpus, self.prompt_exemplars_)
        ensure_ray()
        rep = predict_representation(ctx, resolve_stages(self.stages), self.llm_, self.embedder_dir_)
        return FaissKMeans.from_centers(self.cluster_centers_, config.cluster.normalize).predict(rep)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` (see :mod:`coevo_ray.model_io`)."""
        from coevo_ray.model_io import save_model

        self._check_fitted()
        trained_embedder = self.run_dir_ is not None and Path(self.embedder_dir_).is_relative_to(self.run_dir_)
        state = {"config": self.config.to_dict(), "n_clusters": self.n_clusters_,
                 "exemplars": list(self.prompt_exemplars_), "cluster_keywords": self.cluster_keywords_,
                 "cluster_names": self.cluster_names_, "history": self.history_}
        return save_model(path, state, self.cluster_centers_, self.labels_, self.llm_.adapter,
                          Path(self.embedder_dir_) if trained_embedder else None)

    @classmethod
    def load(cls, path: str | Path) -> "CoEvolver":
        """A fitted model from :meth:`save`; ``predict`` on the training texts gives ``labels_``."""
        from coevo_ray.model_io import load_model_files
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline import LLMWeights

        manifest, centroids, labels, adapter, embedder = load_model_files(path)
        config = CoEvolverConfig.from_dict({**manifest["config"], "output_dir": None})
        model = cls(**config.estimator_params())
        model.n_clusters_, model.cluster_centers_, model.labels_ = int(manifest["n_clusters"]), centroids, labels
        model.cluster_keywords_, model.cluster_names_ = manifest["cluster_keywords"], manifest["cluster_names"]
        model.history_, model.run_dir_ = manifest.get("history", []), None
        model.prompt_exemplars_ = tuple(manifest.get("exemplars", ()))
        model.llm_ = LLMWeights(resolve_model(config.interpret.llm), adapter)
        model.adapter_dir_ = adapter
        model.embedder_dir_ = embedder if embedder is not None else resolve_model(config.embed.embedder)
        return model


def _as_corpus(texts: Any, labels: Sequence[Any] | str | None, max_chars: int) -> Corpus:
    """What the loop works on: in-memory inputs as they are; a directory, glob, URI or Dataset
    read and checked by Ray Data, then gathered in id order."""
    from coevo_ray.data.dataset import collect_corpus, is_scale_input, read_corpus_dataset

    if not is_scale_input(texts):
        if isinstance(labels, str):
            raise InputError("labels as a column name needs a directory, glob, URI or Dataset input; "
                             "for a file use load_corpus(path, label_field=...)")
        return as_corpus(texts, labels, max_chars)
    if labels is not None and not isinstance(labels, str):
        raise InputError("with a directory, glob, URI or Dataset input, labels names the label column")
    from coevo_ray.runtime import ensure_ray

    ensure_ray()
    return collect_corpus(read_corpus_dataset(texts, label_field=labels, max_chars=max_chars))
