"""``CoEvolver``: the public facade over the pipeline stages.

interpret (Ray Data, vLLM actors) → embed (Ray Data, sentence-transformers actors) → cluster
(FAISS). Iterations ≥ 1 add prefer → train LLM → train embedder (open issues #4/#5).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coevo_ray._atomic import atomic_write_json, atomic_write_text
from coevo_ray.clustering import FaissKMeans, l2_normalize
from coevo_ray.config import CoEvolverConfig, EmbedConfig, InterpretConfig
from coevo_ray.data import Corpus, load_corpus
from coevo_ray.embed import embed_dataset
from coevo_ray.errors import InputError
from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
from coevo_ray.metrics import evaluate_kmeans_protocol
from coevo_ray.models import resolve_model
from coevo_ray.rundir import RunDir, fingerprint
from coevo_ray.runtime import ensure_ray
from coevo_ray.tables import column_matrix, read_table

logger = logging.getLogger(__name__)


class CoEvolver:
    """Cluster texts with an LLM that interprets them and an embedder that clusters the
    interpretations.

    >>> model = CoEvolver(task="intent: user intent", n_clusters=77).fit(texts)
    >>> model.labels_
    """

    def __init__(
        self,
        task: str,
        n_clusters: int,
        llm: str | None = None,
        embedder: str | None = None,
        iterations: int = 0,
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
        if self.config.iterations > 0:
            raise NotImplementedError(
                "iterations >= 1 (density-guided DPO and embedder co-training) are not available in this "
                "release yet; use iterations=0"
            )
        self.labels_: np.ndarray | None = None
        self.interpretations_: list[str] | None = None
        self.embeddings_: np.ndarray | None = None
        self.cluster_centers_: np.ndarray | None = None
        self.history_: list[dict[str, Any]] = []
        self.timings_: dict[str, float] = {}
        self.run_dir_: Path | None = None

    # ------------------------------------------------------------------ stages
    def _interpret(self, run: RunDir, corpus: Corpus, llm_dir: Path, iteration: int,
                   temperatures: tuple[float, ...]) -> Path:
        cfg = self.config.interpret
        spec = EngineSpec(
            model_dir=str(llm_dir), backend=cfg.backend, dtype=cfg.dtype, max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager, kv_cache_gib=cfg.kv_cache_gib,
            repetition_penalty=cfg.repetition_penalty, max_lora_rank=cfg.max_lora_rank, seed=self.config.seed,
        )
        settings = GenerationSettings(task=self.config.task, prompt_style=cfg.prompt_style,
                                      temperatures=temperatures, max_tokens=cfg.max_tokens, seed=self.config.seed)
        key = fingerprint("interpret", self._corpus_key, str(llm_dir), spec.backend, spec.dtype,
                          spec.repetition_penalty, settings, cfg.max_text_chars)

        def build(tmp: Path) -> None:
            ds = corpus.to_ray_dataset(cfg.max_text_chars)
            logger.info("interpret (iteration %d): %d texts x %d temperatures with %s [%s]",
                        iteration, len(corpus), len(temperatures), llm_dir.name, spec.backend)
            interpret_dataset(ds, spec, settings, cfg.resources).write_parquet(str(tmp))

        return self._timed(f"iter{iteration}/interpret", lambda: run.run_stage(f"iter{iteration}-interpret", key, build))

    def _embed(self, run: RunDir, source: Path, column: str, emb_dir: Path, iteration: int, what: str) -> Path:
        cfg = self.config.embed
        key = fingerprint("embed", str(source.name), column, str(emb_dir), cfg.batch_size)

        def build(tmp: Path) -> None:
            import ray

            keep = ["id", "candidate", column] if column == "interpretation" else ["id", column]
            ds = ray.data.read_parquet(str(source)).select_columns(keep)
            logger.info("embed (iteration %d): %s with %s", iteration, what, emb_dir.name)
            out = embed_dataset(ds, emb_dir, cfg.resources, input_column=column)
            out.drop_columns([column]).write_parquet(str(tmp))

        return self._timed(f"iter{iteration}/embed-{what}", lambda: run.run_stage(f"iter{iteration}-embed-{what}", key, build))

    def _timed(self, name: str, fn):
        start = time.perf_counter()
        path, reused = fn()
        self.timings_[name] = 0.0 if reused else round(time.perf_counter() - start, 2)
        return path

    def _texts_table(self, run: RunDir, corpus: Corpus) -> Path:
        def build(tmp: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            texts = corpus.model_texts(self.config.interpret.max_text_chars)
            pq.write_table(pa.table({"id": np.arange(len(texts)), "text": texts}), tmp / "part-0.parquet")

        return run.run_stage("texts", self._corpus_key, build)[0]

    # ------------------------------------------------------------------ API
    def fit(self, texts: Sequence[str] | Corpus, labels: Sequence[Any] | None = None) -> "CoEvolver":
        corpus = texts if isinstance(texts, Corpus) else load_corpus(
            texts, labels=labels, max_chars=self.config.interpret.max_text_chars)
        if labels is not None and corpus.labels is None:
            corpus = load_corpus(corpus.texts, labels=labels, max_chars=self.config.interpret.max_text_chars)
        cfg = self.config
        if cfg.n_clusters > len(corpus):
            raise InputError(f"n_clusters={cfg.n_clusters} exceeds the number of texts ({len(corpus)})")
        run = RunDir(cfg.output_dir)
        self.run_dir_ = run.root
        self._corpus_key = fingerprint("corpus", corpus.texts)
        ensure_ray()
        llm_dir = resolve_model(cfg.interpret.llm)
        emb_dir = resolve_model(cfg.embed.embedder)

        interp_path = self._interpret(run, corpus, llm_dir, 0, cfg.interpret.temperatures[:1])
        interp = read_table(interp_path, sort_by=(("id", "ascending"), ("candidate", "ascending")))
        greedy = interp.filter(np.asarray(interp.column("candidate")) == 0)
        self.interpretations_ = greedy.column("interpretation").to_pylist()
        fallbacks = [f for f in greedy.column("fallback").to_pylist() if f]

        parts = []
        if cfg.representation in ("interpretation", "concat"):
            emb_path = self._embed(run, interp_path, "interpretation", emb_dir, 0, "interpretations")
            emb = read_table(emb_path, sort_by=(("id", "ascending"), ("candidate", "ascending")))
            mask = np.asarray(emb.column("candidate")) == 0
            parts.append(column_matrix(emb.filter(mask), "embedding"))
        if cfg.representation in ("text", "concat"):
            text_path = self._embed(run, self._texts_table(run, corpus), "text", emb_dir, 0, "texts")
            parts.append(column_matrix(read_table(text_path), "embedding"))
        rep = parts[0] if len(parts) == 1 else np.hstack([l2_normalize(p) for p in parts])
        self.embeddings_ = rep

        start = time.perf_counter()
        km = FaissKMeans(cfg.n_clusters, seed=cfg.seed, niter=cfg.cluster.niter, normalize=cfg.cluster.normalize).fit(rep)
        self.labels_ = km.labels_
        self.cluster_centers_ = km.cluster_centers_
        self.timings_["iter0/cluster"] = round(time.perf_counter() - start, 2)

        entry: dict[str, Any] = {"iteration": 0, "parse_fallbacks": len(fallbacks),
                                 "repetition_cut": int(np.sum(greedy.column("repaired").to_numpy())),
                                 "fallback_kinds": {k: fallbacks.count(k) for k in sorted(set(fallbacks))}}
        if corpus.labels is not None:
            scores = evaluate_kmeans_protocol(rep, corpus.labels, cfg.n_clusters, cfg.cluster.eval_seeds,
                                              cfg.cluster.normalize)
            entry.update(scores)
            logger.info("iteration 0: ACC %.2f NMI %.2f ARI %.2f", scores["acc"], scores["nmi"], scores["ari"])
        self.history_ = [entry]
        self._write_outputs(run, corpus)
        return self

    def _write_outputs(self, run: RunDir, corpus: Corpus) -> None:
        lines = [json.dumps({"id": i, "text": t, "cluster": int(c)}, ensure_ascii=False)
                 for i, (t, c) in enumerate(zip(corpus.texts, self.labels_))]
        atomic_write_text(run.root / "assignments.jsonl", "\n".join(lines) + "\n")
        atomic_write_json(run.root / "summary.json", {
            "config": self.config.to_dict(),
            "n_texts": len(corpus),
            "corpus": corpus.stats,
            "timings_s": self.timings_,
            "history": self.history_,
        })
