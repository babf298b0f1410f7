"""``CoEvolver``: the public facade over the pipeline stages.

Iteration 0: interpret (T=0) → embed → train embedder → cluster.
Iteration t ≥ 1 (paper 3.2–3.3): the previous LLM's candidates at every temperature → embed them
with the current embedder → density-guided preferences → DPO → regenerate with the trained LLM
→ train embedder → cluster. Each LLM generates once: when another iteration follows, it writes
every temperature, so the next iteration's candidates are already there.

Every stage writes into the run directory under a key hashed from its inputs, so a rerun reuses
what finished and a changed setting recomputes only the stages downstream of it.

After fitting: ``predict`` runs new texts through the same stages with the fitted LLM and
embedder, ``save``/``load`` keep a fitted model (no pickle), and the clusters are described by
keywords (c-TF-IDF) and LLM-written names; ``report.html`` shows all of it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from coevo_ray._atomic import atomic_write_json, atomic_write_text
from coevo_ray.clustering import FaissKMeans, l2_normalize
from coevo_ray.config import CoEvolverConfig, EmbedConfig, InterpretConfig
from coevo_ray.data import Corpus, load_corpus
from coevo_ray.embed import embed_parquet
from coevo_ray.errors import InputError
from coevo_ray.interpret import EngineSpec, GenerationSettings, exemplar_texts, interpret_dataset
from coevo_ray.interpret.stage import GENERATION_SCHEMA
from coevo_ray.interpret.parsing import format_failure
from coevo_ray.interpret.prompts import INTERPRETATION_REGEX, interpretation_regex
from coevo_ray.metrics import ON_TEXT_MIN_GAP, evaluate_kmeans_protocol, sample_on_text_similarity
from coevo_ray.models import resolve_model
from coevo_ray.progress import parquet_progress
from coevo_ray.rundir import RunDir, fingerprint
from coevo_ray.runtime import ensure_ray
from coevo_ray.tables import column_matrix, greedy_table, read_table
from coevo_ray.train_llm.merge import serve_merged

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class _LLM:
    """The generating LLM: the base weights, the DPO adapter, and what the engines load."""

    base: Path
    adapter: Path | None = None
    merged: Path | None = None  # set when the adapter is served as merged weights

    @property
    def engine_dirs(self) -> tuple[str, str | None]:
        if self.merged is not None:
            return str(self.merged), None
        return str(self.base), (str(self.adapter) if self.adapter else None)


class CoEvolver:
    """Cluster texts with an LLM that interprets them and an embedder that clusters the
    interpretations, each trained on the other's output.

    >>> model = CoEvolver(task="intent: user intent", n_clusters=77).fit(texts)
    >>> model.labels_, model.cluster_names_
    >>> model.save("model/"); CoEvolver.load("model/").predict(["How do I close my account?"])
    """

    def __init__(
        self,
        task: str,
        n_clusters: int | str,
        llm: str | None = None,
        embedder: str | None = None,
        iterations: int = 2,
        representation: str = "interpretation",
        seed: int = 0,
        output_dir: str | None = None,
        interpret: InterpretConfig | dict | None = None,
        embed: EmbedConfig | dict | None = None,
        **config_kwargs: Any,
    ) -> None:
        interpret = interpret if isinstance(interpret, InterpretConfig) else InterpretConfig(**(interpret or {}))
        embed = embed if isinstance(embed, EmbedConfig) else EmbedConfig(**(embed or {}))
        if llm is not None:
            interpret = replace(interpret, llm=llm)
        if embedder is not None:
            embed = replace(embed, embedder=embedder)
        self.config = CoEvolverConfig(
            task=task, n_clusters=n_clusters, iterations=iterations, representation=representation,
            seed=seed, output_dir=output_dir, interpret=interpret, embed=embed, **config_kwargs,
        )
        self.labels_: np.ndarray | None = None
        self.interpretations_: list[str] | None = None
        self.embeddings_: np.ndarray | None = None
        self.cluster_centers_: np.ndarray | None = None
        self.history_: list[dict[str, Any]] = []
        self.baseline_: dict[str, Any] | None = None
        self.timings_: dict[str, float] = {}
        self.run_dir_: Path | None = None
        self.adapter_dir_: Path | None = None
        self.embedder_dir_: Path | None = None
        self.n_clusters_: int | None = None if n_clusters == "auto" else n_clusters
        self.cluster_keywords_: list[list[str]] | None = None
        self.cluster_names_: list[str] | None = None
        self.report_path_: Path | None = None
        self._exemplars: tuple[str, ...] = ()

    # ------------------------------------------------------------------ stages
    def _stage(self, name: str, key: str, build: Callable[[Path], None]) -> Path:
        start = time.perf_counter()
        path, reused = self._run.run_stage(name, key, build)
        self.timings_[name] = 0.0 if reused else round(time.perf_counter() - start, 2)
        logger.info("%s: %s", name, "reused from the run directory" if reused else f"done in {self.timings_[name]:.0f} s")
        return path

    def _engine_spec(self, model_dir: str, adapter_dir: str | None, structured: bool) -> EngineSpec:
        cfg = self.config.interpret
        return EngineSpec(
            model_dir=model_dir, adapter_dir=adapter_dir, backend=cfg.backend, dtype=cfg.dtype,
            max_model_len=cfg.max_model_len, enforce_eager=cfg.enforce_eager, kv_cache_gib=cfg.kv_cache_gib,
            repetition_penalty=cfg.repetition_penalty, max_lora_rank=cfg.max_lora_rank, seed=self.config.seed,
            stop=cfg.stop, structured_regex=None if not structured else (
                interpretation_regex(cfg.max_tokens) if cfg.sized_answers else INTERPRETATION_REGEX),
        )

    def _interpret(self, llm: _LLM, step: str, temperatures: tuple[float, ...]) -> Path:
        cfg = self.config.interpret
        model_dir, adapter_dir = llm.engine_dirs
        spec = self._engine_spec(model_dir, adapter_dir, cfg.structured_output)
        settings = GenerationSettings(task=self.config.task, prompt_style=cfg.prompt_style,
                                      temperatures=temperatures, max_tokens=cfg.max_tokens, seed=self.config.seed,
                                      exemplars=self._exemplars)
        key = fingerprint("interpret", GENERATION_SCHEMA, self._corpus_key, model_dir, adapter_dir, spec.backend, spec.dtype,
                          spec.repetition_penalty, spec.stop, spec.structured_regex, settings, cfg.max_text_chars)

        def build(tmp: Path) -> None:
            ds = self._corpus.to_ray_dataset(cfg.max_text_chars)
            logger.info("%s: interpret %d texts x %d temperatures with %s%s [%s]", step,
                        len(self._corpus), len(temperatures), Path(model_dir).name,
                        " + LoRA" if adapter_dir else "", spec.backend)
            with parquet_progress(tmp, len(self._corpus) * len(temperatures), f"{step}-interpret"):
                interpret_dataset(ds, spec, settings, cfg.resources).write_parquet(str(tmp))

        return self._stage(f"{step}-interpret", key, build)

    def _embed(self, source: Path, column: str, emb_dir: Path, step: str, what: str,
               greedy_only: bool = False) -> Path:
        cfg = self.config.embed
        key = fingerprint("embed", source.name, column, str(emb_dir), cfg.batch_size, greedy_only)

        def build(tmp: Path) -> None:
            keep = ["id", "candidate"] if column == "interpretation" else ["id"]
            where = embed_parquet(source, tmp, str(emb_dir), cfg.resources, column, keep, greedy_only,
                                  cfg.in_process_max_rows, cfg.batch_size)
            logger.info("%s: embedded %s with %s (%s)", step, what,
                        emb_dir.parent.name if emb_dir.name == "model" else emb_dir.name, where)

        return self._stage(f"{step}-embed-{what}", key, build)

    def _texts_table(self) -> Path:
        def build(tmp: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            texts = self._corpus.model_texts(self.config.interpret.max_text_chars)
            pq.write_table(pa.table({"id": np.arange(len(texts)), "text": texts}), tmp / "part-0.parquet")

        return self._run.run_stage("texts", self._corpus_key, build)[0]

    def _prefer(self, generated: Path, embedded: Path, iteration: int) -> Path:
        from coevo_ray.prefer.stage import preference_stage_on_ray

        cfg = self.config.prefer
        key = fingerprint("prefer", generated.name, embedded.name, cfg, self.n_clusters_, self.config.seed)

        def build(tmp: Path) -> None:
            logger.info("iteration %d: preferences from %d KMeans runs (%s rule)", iteration, cfg.n_runs, cfg.rule)
            stats = preference_stage_on_ray(str(generated), str(embedded), str(tmp), self.n_clusters_, cfg,
                                            self.config.seed + iteration)
            atomic_write_json(tmp / "stats.json", stats)

        return self._stage(f"iter{iteration}-prefer", key, build)

    def _train_llm(self, llm: _LLM, preferences: Path, iteration: int) -> Path | None:
        """DPO on the pairs; None when there is nothing to learn from."""
        import pyarrow.parquet as pq

        from coevo_ray.interpret.prompts import TaskDescription, render_prompt
        from coevo_ray.train_llm import train_dpo

        cfg = replace(self.config.train_llm, seed=self.config.seed + iteration)
        pairs = pq.read_table(preferences / "pairs.parquet", columns=["text", "chosen", "rejected"])
        if pairs.num_rows == 0:
            logger.warning("iteration %d: no preference pairs (every candidate identical); the LLM stays as it is",
                           iteration)
            return None
        key = fingerprint("dpo", preferences.name, str(llm.base), str(llm.adapter), cfg,
                          self.config.interpret.prompt_style, self._exemplars, self.config.task)

        def build(tmp: Path) -> None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(llm.base))
            desc = TaskDescription.parse(self.config.task)
            style = self.config.interpret.prompt_style
            data = {"prompt": [render_prompt(tok, t, desc, style, self._exemplars) for t in pairs.column("text").to_pylist()],
                    "chosen": pairs.column("chosen").to_pylist(), "rejected": pairs.column("rejected").to_pylist()}
            logger.info("iteration %d: DPO on %d pairs", iteration, pairs.num_rows)
            train_dpo(str(llm.base), data, tmp, cfg, storage_path=str(self._run.root / "ray_train"),
                      init_adapter_dir=str(llm.adapter) if llm.adapter else None)

        return self._stage(f"iter{iteration}-dpo", key, build)

    def _serving(self, llm: _LLM, adapter: Path, step: str) -> _LLM:
        from coevo_ray.train_llm import serve_merged, write_merged_model

        if not serve_merged(self.config.interpret.adapter_serving):
            return _LLM(llm.base, adapter)
        dtype = "bfloat16" if self.config.interpret.dtype == "bfloat16" else "float32"
        key = fingerprint("merge", str(llm.base), adapter.name, dtype)
        merged = self._stage(f"{step}-merged", key,
                             lambda tmp: write_merged_model(llm.base, adapter, tmp, dtype=dtype))
        return _LLM(llm.base, adapter, merged)

    def _train_embedder(self, emb_dir: Path, generated: Path, greedy_emb: Path, iteration: int) -> Path:
        import ray
        from ray.data.expressions import col

        from coevo_ray.train_embedder import train_embedder
        from coevo_ray.train_embedder.embedder_trainer import TRAINING_REVISION

        cfg = replace(self.config.train_embedder, seed=self.config.seed + iteration)
        n = len(self._corpus)
        k = min(cfg.dec_clusters, max(2, n // 2))
        key = fingerprint("train-embedder", generated.name, greedy_emb.name, str(emb_dir), cfg, k,
                          TRAINING_REVISION)

        def build(tmp: Path) -> None:
            centroids = frequency = None
            if cfg.dec_weight > 0:
                from coevo_ray.train_embedder.losses.dec_loss import cluster_frequency

                if k < cfg.dec_clusters:
                    logger.info("DEC: %d clusters instead of %d for %d texts", k, cfg.dec_clusters, n)
                vectors = column_matrix(read_table(greedy_emb), "embedding")
                centroids = FaissKMeans(k, seed=cfg.seed, normalize=False).fit(vectors).cluster_centers_
                frequency = cluster_frequency(vectors, centroids)
            pairs = ray.data.read_parquet(str(generated)).filter(expr=col("candidate") == 0)
            logger.info("iteration %d: train the embedder on %d (text, interpretation) pairs", iteration, n)
            train_embedder(emb_dir, pairs, tmp, cfg, centroids=centroids, cluster_frequency=frequency,
                           storage_path=str(self._run.root / "ray_train"))

        return self._stage(f"iter{iteration}-train-embedder", key, build)

    # ------------------------------------------------------------------ one iteration's clustering
    def _representation(self, emb_path: Path, emb_dir: Path, step: str) -> np.ndarray:
        cfg = self.config
        parts = []
        if cfg.representation in ("interpretation", "concat"):
            parts.append(column_matrix(greedy_table(emb_path, ["id", "embedding"]), "embedding"))
        if cfg.representation in ("text", "concat"):
            text_path = self._embed(self._texts_table(), "text", emb_dir, step, "texts")
            parts.append(column_matrix(read_table(text_path), "embedding"))
        if len(parts) == 1:
            return parts[0]
        return np.hstack([l2_normalize(parts[0]), cfg.cluster.text_weight * l2_normalize(parts[1])])

    def _record(self, iteration: int, generated: Path, emb_dir: Path, rep: np.ndarray,
                extra: dict[str, Any]) -> dict[str, Any]:
        greedy = greedy_table(generated, ["id", "interpretation", "fallback", "repaired"])
        kinds = greedy.column("fallback").to_pylist()
        fallbacks = [f for f in kinds if f]
        entry: dict[str, Any] = {"iteration": iteration, "parse_fallbacks": len(fallbacks),
                                 "repetition_cut": int(np.sum(greedy.column("repaired").to_numpy())),
                                 "fallback_kinds": {k: fallbacks.count(k) for k in sorted(set(fallbacks))}}
        entry.update(extra)
        failure = format_failure(kinds)
        if failure:
            logger.warning("iteration %d: %s", iteration, failure)
        interpretations = greedy.column("interpretation").to_pylist()
        guard = sample_on_text_similarity(str(emb_dir), self._corpus.model_texts(self.config.interpret.max_text_chars),
                                          interpretations, seed=self.config.seed)
        entry["on_text"] = guard
        if guard["gap"] < ON_TEXT_MIN_GAP:
            logger.warning("iteration %d: interpretations barely relate to their texts (cos %.2f matched vs %.2f "
                           "shuffled); clustering the raw texts (representation='text') may do better",
                           iteration, guard["matched"], guard["shuffled"])
        if self._corpus.labels is not None:
            scores = evaluate_kmeans_protocol(rep, self._corpus.labels, self.n_clusters_,
                                              self.config.cluster.eval_seeds, self.config.cluster.normalize)
            entry.update(scores)
            logger.info("iteration %d: ACC %.2f NMI %.2f ARI %.2f", iteration, scores["acc"], scores["nmi"],
                        scores["ari"])
        entry["timings_s"] = {k.split("-", 1)[1]: v for k, v in self.timings_.items()
                              if k.startswith(f"iter{iteration}-")}
        self._interpretations = interpretations
        return entry

    # ------------------------------------------------------------------ API
    def fit(self, texts: Sequence[str] | Corpus, labels: Sequence[Any] | None = None,
            resume: bool = False) -> "CoEvolver":
        """Run the co-evolution loop. With ``output_dir`` set, finished stages are kept there: the
        same fit rerun reuses them; ``resume=True`` also reuses a run written by another config
        (only the stages whose inputs changed run again). Without it they go to a temporary
        directory removed with this object (``save`` keeps what ``predict`` needs)."""
        cfg = self.config
        corpus = texts if isinstance(texts, Corpus) else load_corpus(
            texts, labels=labels, max_chars=cfg.interpret.max_text_chars)
        if labels is not None and corpus.labels is None:
            corpus = load_corpus(corpus.texts, labels=labels, max_chars=cfg.interpret.max_text_chars)
        if cfg.n_clusters != "auto" and cfg.n_clusters > len(corpus):
            raise InputError(f"n_clusters={cfg.n_clusters} exceeds the number of texts ({len(corpus)})")
        self._run = RunDir(cfg.output_dir)
        self.run_dir_ = self._run.root
        self._corpus = corpus
        self._corpus_key = fingerprint("corpus", corpus.texts)
        self._run.open_run({**{k: v for k, v in cfg.to_dict().items() if k != "output_dir"},
                            "corpus": self._corpus_key}, resume)
        self._exemplars = (exemplar_texts(corpus.model_texts(cfg.interpret.max_text_chars), cfg.interpret.n_exemplars,
                                          cfg.seed) if cfg.interpret.prompt_style == "exemplars" else ())
        self.n_clusters_ = None if cfg.n_clusters == "auto" else cfg.n_clusters
        self.timings_, self.history_ = {}, []
        ensure_ray()
        llm = _LLM(resolve_model(cfg.interpret.llm))
        emb_dir = base_emb_dir = resolve_model(cfg.embed.embedder)
        all_temps, last = cfg.interpret.temperatures, cfg.iterations

        generated = self._interpret(llm, "iter0", all_temps if last > 0 else all_temps[:1])
        embedded: Path | None = None  # every candidate of `generated`, in the current embedder's space
        for t in range(last + 1):
            extra: dict[str, Any] = {}
            if t > 0:
                preferences = self._prefer(generated, embedded, t)
                extra["preferences"] = json.loads((preferences / "stats.json").read_text())
                adapter = self._train_llm(llm, preferences, t)
                if adapter is not None:
                    extra["dpo"] = json.loads((adapter / "dpo_metrics.json").read_text())
                    llm = self._serving(llm, adapter, f"iter{t}")
                generated = self._interpret(llm, f"iter{t}", all_temps if t < last else all_temps[:1])
            if cfg.train_embedder.enabled:
                before = self._embed(generated, "interpretation", emb_dir, f"iter{t}", "interpretations", greedy_only=True)
                self._estimate_k(before, f"iter{t}", extra)
                emb_dir = self._train_embedder(emb_dir, generated, before, t)
                extra["embedder"] = json.loads((emb_dir / "embedder_metrics.json").read_text())
            embedded = self._embed(generated, "interpretation", emb_dir, f"iter{t}",
                                   "candidates" if t < last else "interpretations-final")
            rep = self._representation(embedded, emb_dir, f"iter{t}")
            self._estimate_k(embedded, f"iter{t}", extra)
            self.history_.append(self._record(t, generated, emb_dir, rep, extra))

        start = time.perf_counter()
        km = FaissKMeans(self.n_clusters_, seed=cfg.seed, niter=cfg.cluster.niter,
                         normalize=cfg.cluster.normalize).fit(rep)
        self.timings_["cluster"] = round(time.perf_counter() - start, 2)
        self.labels_, self.cluster_centers_, self.embeddings_ = km.labels_, km.cluster_centers_, rep
        self.interpretations_ = self._interpretations
        self.baseline_ = self._baseline(base_emb_dir, rep, km.labels_) if cfg.cluster.baseline else None
        self._llm, self._emb_dir = llm, emb_dir
        self.adapter_dir_, self.embedder_dir_ = llm.adapter, emb_dir
        self._describe(generated, km.distances_)
        self._write_outputs()
        return self

    def fit_predict(self, texts: Sequence[str] | Corpus, labels: Sequence[Any] | None = None) -> np.ndarray:
        return self.fit(texts, labels).labels_

    def _baseline(self, emb_dir: Path, rep: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """What a user would otherwise run: KMeans on the raw texts embedded by the untrained
        embedder, scored like the iterations and compared with the final clustering."""
        from coevo_ray.metrics import compare_clusterings

        cfg = self.config
        vectors = column_matrix(read_table(self._embed(self._texts_table(), "text", emb_dir, "baseline", "texts")),
                                "embedding")
        km = FaissKMeans(self.n_clusters_, seed=cfg.seed, niter=cfg.cluster.niter,
                         normalize=cfg.cluster.normalize).fit(vectors)
        cmp = compare_clusterings(vectors, km.labels_, rep, labels, seed=cfg.seed)
        entry: dict[str, Any] = {"representation": "raw texts, untrained embedder, KMeans",
                                 "silhouette": cmp["silhouette_a"], "final_silhouette": cmp["silhouette_b"],
                                 "agreement_ari": cmp["agreement_ari"], "agreement_nmi": cmp["agreement_nmi"]}
        if self._corpus.labels is not None:
            entry.update(evaluate_kmeans_protocol(vectors, self._corpus.labels, self.n_clusters_,
                                                  cfg.cluster.eval_seeds, cfg.cluster.normalize))
            logger.info("baseline (raw-text KMeans, same embedder): ACC %.2f NMI %.2f ARI %.2f",
                        entry["acc"], entry["nmi"], entry["ari"])
        return entry

    def _estimate_k(self, embedded: Path, step: str, extra: dict[str, Any]) -> None:
        """n_clusters="auto": fix K once, on iteration 0's first interpretation embeddings."""
        if self.n_clusters_ is not None:
            return
        from coevo_ray.clustering import estimate_n_clusters

        cfg = self.config.cluster
        vectors = column_matrix(greedy_table(embedded, ["id", "embedding"]), "embedding")
        start = time.perf_counter()
        k, scores = estimate_n_clusters(vectors, cfg.auto_k_min, min(cfg.auto_k_max, len(vectors) - 1),
                                        seed=self.config.seed)
        self.n_clusters_ = k
        self.timings_[f"{step}-auto-k"] = round(time.perf_counter() - start, 2)
        extra["auto_k"] = {"k": k, "eigengap": {str(q): round(v, 5) for q, v in scores.items()}}
        logger.info("%s: n_clusters='auto' -> K=%d (eigengap %.4f)", step, k, scores[k])

    # ------------------------------------------------------------------ cluster descriptions
    def _describe(self, generated: Path, distances: np.ndarray) -> None:
        from coevo_ray.describe import cluster_keywords, keyword_name

        cfg = self.config.cluster
        greedy = greedy_table(generated, ["id", "keywords"])
        self.cluster_keywords_ = cluster_keywords(greedy.column("keywords").to_pylist(), self.labels_,
                                                  self.n_clusters_, cfg.keywords_per_cluster)
        texts = self._corpus.texts
        self._cluster_examples = []
        for c in range(self.n_clusters_):
            members = np.flatnonzero(self.labels_ == c)
            members = members[np.argsort(distances[members], kind="stable")][:3]
            self._cluster_examples.append([texts[i] for i in members])
        self.cluster_names_ = (self._name_clusters(distances) if cfg.name_clusters else
                               [keyword_name(k) for k in self.cluster_keywords_])

    def _name_clusters(self, distances: np.ndarray) -> list[str]:
        """One greedy request per cluster through the generation stage (``NAMING_STYLE`` prompt)."""
        import ray

        from coevo_ray.describe import clean_name, naming_requests
        from coevo_ray.interpret.prompts import NAME_REGEX, NAMING_STYLE

        cfg = self.config.interpret
        requests = naming_requests(self._corpus.texts, self.labels_, self.cluster_keywords_, distances)
        model_dir, adapter_dir = self._llm.engine_dirs
        spec = replace(self._engine_spec(model_dir, adapter_dir, structured=False),
                       structured_regex=NAME_REGEX if cfg.backend == "vllm" else None)
        settings = GenerationSettings(task=self.config.task, prompt_style=NAMING_STYLE, temperatures=(0.0,),
                                      max_tokens=16, seed=self.config.seed)
        key = fingerprint("names", GENERATION_SCHEMA, model_dir, adapter_dir, requests, settings)

        def build(tmp: Path) -> None:
            logger.info("naming %d clusters with %s", len(requests), Path(model_dir).name)
            ds = ray.data.from_items([{"id": i, "text": r} for i, r in enumerate(requests)])
            interpret_dataset(ds, spec, settings, cfg.resources).select_columns(
                ["id", "raw", "finish_reason"]).write_parquet(str(tmp))

        named = read_table(self._stage("names", key, build), sort_by=[("id", "ascending")]).to_pylist()
        return [clean_name(row["raw"], kws, context=request, truncated=row["finish_reason"] == "length")
                for row, kws, request in zip(named, self.cluster_keywords_, requests)]

    # ------------------------------------------------------------------ after fitting
    def _check_fitted(self) -> None:
        if self.cluster_centers_ is None:
            raise RuntimeError("this CoEvolver is not fitted: call fit() or CoEvolver.load() first")

    def predict(self, texts: Sequence[str] | Corpus, output_dir: str | None = None) -> np.ndarray:
        """Cluster ids for new texts: interpret with the fitted LLM (greedy), embed with the fitted
        embedder, assign to the fitted centres — the stages ``fit`` ran, on Ray."""
        self._check_fitted()
        cfg = self.config
        corpus = texts if isinstance(texts, Corpus) else load_corpus(texts, max_chars=cfg.interpret.max_text_chars)
        saved = {k: getattr(self, k, None) for k in ("_run", "_corpus", "_corpus_key")}
        try:
            self._run = RunDir(output_dir or self.run_dir_)
            self._corpus, self._corpus_key = corpus, fingerprint("corpus", corpus.texts)
            ensure_ray()
            llm = self._llm
            if llm.adapter is not None and llm.merged is None and serve_merged(cfg.interpret.adapter_serving):
                llm = self._serving(llm, llm.adapter, "predict")
            generated = self._interpret(llm, "predict", cfg.interpret.temperatures[:1])
            embedded = self._embed(generated, "interpretation", self._emb_dir, "predict", "interpretations")
            rep = self._representation(embedded, self._emb_dir, "predict")
        finally:
            for k, v in saved.items():
                setattr(self, k, v)
        return FaissKMeans.from_centers(self.cluster_centers_, cfg.cluster.normalize).predict(rep)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` (see :mod:`coevo_ray.model_io`)."""
        from coevo_ray.model_io import save_model

        self._check_fitted()
        trained_embedder = self.run_dir_ is not None and Path(self._emb_dir).is_relative_to(self.run_dir_)
        state = {"config": self.config.to_dict(), "n_clusters": self.n_clusters_, "exemplars": list(self._exemplars),
                 "cluster_keywords": self.cluster_keywords_, "cluster_names": self.cluster_names_,
                 "history": self.history_}
        return save_model(path, state, self.cluster_centers_, self.labels_, self._llm.adapter,
                          Path(self._emb_dir) if trained_embedder else None)

    @classmethod
    def load(cls, path: str | Path) -> "CoEvolver":
        """A fitted model from :meth:`save`; ``predict`` on the training texts gives ``labels_``."""
        from coevo_ray.model_io import load_model_files

        manifest, centroids, labels, adapter, embedder = load_model_files(path)
        config = CoEvolverConfig.from_dict({**manifest["config"], "output_dir": None})
        model = cls(config.task, config.n_clusters)
        model.config = config
        model.n_clusters_ = int(manifest["n_clusters"])
        model.cluster_centers_, model.labels_ = centroids, labels
        model.cluster_keywords_, model.cluster_names_ = manifest["cluster_keywords"], manifest["cluster_names"]
        model.history_ = manifest.get("history", [])
        model._exemplars = tuple(manifest.get("exemplars", ()))
        model._llm = _LLM(resolve_model(config.interpret.llm), adapter)
        model._emb_dir = embedder if embedder is not None else resolve_model(config.embed.embedder)
        model.adapter_dir_, model.embedder_dir_ = adapter, model._emb_dir
        return model

    def _write_outputs(self) -> None:
        from coevo_ray.report import write_report

        corpus = self._corpus
        names = self.cluster_names_
        lines = [json.dumps({"id": i, "text": t, "cluster": int(c), "cluster_name": names[int(c)]}, ensure_ascii=False)
                 for i, (t, c) in enumerate(zip(corpus.texts, self.labels_))]
        atomic_write_text(self._run.root / "assignments.jsonl", "\n".join(lines) + "\n")
        sizes = np.bincount(self.labels_, minlength=self.n_clusters_)
        clusters = [{"id": c, "size": int(sizes[c]), "name": names[c], "keywords": self.cluster_keywords_[c],
                     "examples": self._cluster_examples[c]} for c in range(self.n_clusters_)]
        summary = {
            "config": self.config.to_dict(),
            "n_texts": len(corpus),
            "n_clusters": self.n_clusters_,
            "corpus": corpus.stats,
            "timings_s": self.timings_,
            "reused_stages": self._run.reused,
            "history": self.history_,
            "baseline": self.baseline_,
            "clusters": clusters,
            "adapter": str(self.adapter_dir_) if self.adapter_dir_ else None,
            "embedder": str(self.embedder_dir_),
        }
        atomic_write_json(self._run.root / "summary.json", summary)
        if self.config.output_dir is not None:
            self.report_path_ = write_report(self._run.root, summary, self.embeddings_, self.labels_, clusters)
