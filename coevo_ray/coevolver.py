"""``CoEvolver``: the public facade over the pipeline stages.

Iteration 0: interpret (T=0) → embed → train embedder → cluster.
Iteration t ≥ 1 (paper 3.2–3.3): the previous LLM's candidates at every temperature → embed them
with the current embedder → density-guided preferences → DPO → regenerate with the trained LLM
→ train embedder → cluster. Each LLM generates once: when another iteration follows, it writes
every temperature, so the next iteration's candidates are already there.

Every stage writes into the run directory under a key hashed from its inputs, so a rerun reuses
what finished and a changed setting recomputes only the stages downstream of it.
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
from coevo_ray.embed import embed_dataset
from coevo_ray.errors import InputError
from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
from coevo_ray.metrics import ON_TEXT_MIN_GAP, evaluate_kmeans_protocol, sample_on_text_similarity
from coevo_ray.models import resolve_model
from coevo_ray.rundir import RunDir, fingerprint
from coevo_ray.runtime import ensure_ray
from coevo_ray.tables import column_matrix, read_table

logger = logging.getLogger(__name__)

ORDER = (("id", "ascending"), ("candidate", "ascending"))


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
    >>> model.labels_
    """

    def __init__(
        self,
        task: str,
        n_clusters: int,
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
        self.timings_: dict[str, float] = {}
        self.run_dir_: Path | None = None
        self.adapter_dir_: Path | None = None
        self.embedder_dir_: Path | None = None

    # ------------------------------------------------------------------ stages
    def _stage(self, name: str, key: str, build: Callable[[Path], None]) -> Path:
        start = time.perf_counter()
        path, reused = self._run.run_stage(name, key, build)
        self.timings_[name] = 0.0 if reused else round(time.perf_counter() - start, 2)
        return path

    def _interpret(self, llm: _LLM, iteration: int, temperatures: tuple[float, ...]) -> Path:
        cfg = self.config.interpret
        model_dir, adapter_dir = llm.engine_dirs
        spec = EngineSpec(
            model_dir=model_dir, adapter_dir=adapter_dir, backend=cfg.backend, dtype=cfg.dtype,
            max_model_len=cfg.max_model_len, enforce_eager=cfg.enforce_eager, kv_cache_gib=cfg.kv_cache_gib,
            repetition_penalty=cfg.repetition_penalty, max_lora_rank=cfg.max_lora_rank, seed=self.config.seed,
        )
        settings = GenerationSettings(task=self.config.task, prompt_style=cfg.prompt_style,
                                      temperatures=temperatures, max_tokens=cfg.max_tokens, seed=self.config.seed)
        key = fingerprint("interpret", self._corpus_key, model_dir, adapter_dir, spec.backend, spec.dtype,
                          spec.repetition_penalty, settings, cfg.max_text_chars)

        def build(tmp: Path) -> None:
            ds = self._corpus.to_ray_dataset(cfg.max_text_chars)
            logger.info("iteration %d: interpret %d texts x %d temperatures with %s%s [%s]", iteration,
                        len(self._corpus), len(temperatures), Path(model_dir).name,
                        " + LoRA" if adapter_dir else "", spec.backend)
            interpret_dataset(ds, spec, settings, cfg.resources).write_parquet(str(tmp))

        return self._stage(f"iter{iteration}-interpret", key, build)

    def _embed(self, source: Path, column: str, emb_dir: Path, iteration: int, what: str,
               greedy_only: bool = False) -> Path:
        cfg = self.config.embed
        key = fingerprint("embed", source.name, column, str(emb_dir), cfg.batch_size, greedy_only)

        def build(tmp: Path) -> None:
            import ray
            from ray.data.expressions import col

            keep = ["id", "candidate", column] if column == "interpretation" else ["id", column]
            ds = ray.data.read_parquet(str(source)).select_columns(keep)
            if greedy_only:
                ds = ds.filter(expr=col("candidate") == 0)
            logger.info("iteration %d: embed %s with %s", iteration, what,
                        emb_dir.parent.name if emb_dir.name == "model" else emb_dir.name)
            embed_dataset(ds, emb_dir, cfg.resources, input_column=column).drop_columns([column]).write_parquet(str(tmp))

        return self._stage(f"iter{iteration}-embed-{what}", key, build)

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
        key = fingerprint("prefer", generated.name, embedded.name, cfg, self.config.n_clusters, self.config.seed)

        def build(tmp: Path) -> None:
            logger.info("iteration %d: preferences from %d KMeans runs (%s rule)", iteration, cfg.n_runs, cfg.rule)
            stats = preference_stage_on_ray(str(generated), str(embedded), str(tmp), self.config.n_clusters, cfg,
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
                          self.config.interpret.prompt_style, self.config.task)

        def build(tmp: Path) -> None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(llm.base))
            desc = TaskDescription.parse(self.config.task)
            style = self.config.interpret.prompt_style
            data = {"prompt": [render_prompt(tok, t, desc, style) for t in pairs.column("text").to_pylist()],
                    "chosen": pairs.column("chosen").to_pylist(), "rejected": pairs.column("rejected").to_pylist()}
            logger.info("iteration %d: DPO on %d pairs", iteration, pairs.num_rows)
            train_dpo(str(llm.base), data, tmp, cfg, storage_path=str(self._run.root / "ray_train"),
                      init_adapter_dir=str(llm.adapter) if llm.adapter else None)

        return self._stage(f"iter{iteration}-dpo", key, build)

    def _serving(self, llm: _LLM, adapter: Path, iteration: int) -> _LLM:
        from coevo_ray.train_llm import serve_merged, write_merged_model

        if not serve_merged(self.config.interpret.adapter_serving):
            return _LLM(llm.base, adapter)
        dtype = "bfloat16" if self.config.interpret.dtype == "bfloat16" else "float32"
        key = fingerprint("merge", str(llm.base), adapter.name, dtype)
        merged = self._stage(f"iter{iteration}-merged", key,
                             lambda tmp: write_merged_model(llm.base, adapter, tmp, dtype=dtype))
        return _LLM(llm.base, adapter, merged)

    def _train_embedder(self, emb_dir: Path, generated: Path, greedy_emb: Path, iteration: int) -> Path:
        import ray
        from ray.data.expressions import col

        from coevo_ray.train_embedder import train_embedder

        cfg = replace(self.config.train_embedder, seed=self.config.seed + iteration)
        n = len(self._corpus)
        k = min(cfg.dec_clusters, max(2, n // 2))
        key = fingerprint("train-embedder", generated.name, greedy_emb.name, str(emb_dir), cfg, k)

        def build(tmp: Path) -> None:
            centroids = None
            if cfg.dec_weight > 0:
                if k < cfg.dec_clusters:
                    logger.info("DEC: %d clusters instead of %d for %d texts", k, cfg.dec_clusters, n)
                vectors = column_matrix(read_table(greedy_emb), "embedding")
                centroids = FaissKMeans(k, seed=cfg.seed, normalize=False).fit(vectors).cluster_centers_
            pairs = ray.data.read_parquet(str(generated)).filter(expr=col("candidate") == 0)
            logger.info("iteration %d: train the embedder on %d (text, interpretation) pairs", iteration, n)
            train_embedder(emb_dir, pairs, tmp, cfg, centroids=centroids,
                           storage_path=str(self._run.root / "ray_train"))

        return self._stage(f"iter{iteration}-train-embedder", key, build)

    # ------------------------------------------------------------------ one iteration's clustering
    def _representation(self, emb_path: Path, emb_dir: Path, iteration: int) -> np.ndarray:
        cfg = self.config
        parts = []
        if cfg.representation in ("interpretation", "concat"):
            emb = read_table(emb_path, sort_by=ORDER)
            parts.append(column_matrix(emb.filter(np.asarray(emb.column("candidate")) == 0), "embedding"))
        if cfg.representation in ("text", "concat"):
            text_path = self._embed(self._texts_table(), "text", emb_dir, iteration, "texts")
            parts.append(column_matrix(read_table(text_path), "embedding"))
        if len(parts) == 1:
            return parts[0]
        return np.hstack([l2_normalize(parts[0]), cfg.cluster.text_weight * l2_normalize(parts[1])])

    def _record(self, iteration: int, generated: Path, emb_dir: Path, rep: np.ndarray,
                extra: dict[str, Any]) -> dict[str, Any]:
        table = read_table(generated, columns=["id", "candidate", "interpretation", "fallback", "repaired"],
                           sort_by=ORDER)
        greedy = table.filter(np.asarray(table.column("candidate")) == 0)
        fallbacks = [f for f in greedy.column("fallback").to_pylist() if f]
        entry: dict[str, Any] = {"iteration": iteration, "parse_fallbacks": len(fallbacks),
                                 "repetition_cut": int(np.sum(greedy.column("repaired").to_numpy())),
                                 "fallback_kinds": {k: fallbacks.count(k) for k in sorted(set(fallbacks))}}
        entry.update(extra)
        interpretations = greedy.column("interpretation").to_pylist()
        guard = sample_on_text_similarity(str(emb_dir), self._corpus.model_texts(self.config.interpret.max_text_chars),
                                          interpretations, seed=self.config.seed)
        entry["on_text"] = guard
        if guard["gap"] < ON_TEXT_MIN_GAP:
            logger.warning("iteration %d: interpretations barely relate to their texts (cos %.2f matched vs %.2f "
                           "shuffled); clustering the raw texts (representation='text') may do better",
                           iteration, guard["matched"], guard["shuffled"])
        if self._corpus.labels is not None:
            scores = evaluate_kmeans_protocol(rep, self._corpus.labels, self.config.n_clusters,
                                              self.config.cluster.eval_seeds, self.config.cluster.normalize)
            entry.update(scores)
            logger.info("iteration %d: ACC %.2f NMI %.2f ARI %.2f", iteration, scores["acc"], scores["nmi"],
                        scores["ari"])
        entry["timings_s"] = {k.split("-", 1)[1]: v for k, v in self.timings_.items()
                              if k.startswith(f"iter{iteration}-")}
        self._interpretations = interpretations
        return entry

    # ------------------------------------------------------------------ API
    def fit(self, texts: Sequence[str] | Corpus, labels: Sequence[Any] | None = None) -> "CoEvolver":
        cfg = self.config
        corpus = texts if isinstance(texts, Corpus) else load_corpus(
            texts, labels=labels, max_chars=cfg.interpret.max_text_chars)
        if labels is not None and corpus.labels is None:
            corpus = load_corpus(corpus.texts, labels=labels, max_chars=cfg.interpret.max_text_chars)
        if cfg.n_clusters > len(corpus):
            raise InputError(f"n_clusters={cfg.n_clusters} exceeds the number of texts ({len(corpus)})")
        self._run = RunDir(cfg.output_dir)
        self.run_dir_ = self._run.root
        self._corpus = corpus
        self._corpus_key = fingerprint("corpus", corpus.texts)
        self.timings_, self.history_ = {}, []
        ensure_ray()
        llm = _LLM(resolve_model(cfg.interpret.llm))
        emb_dir = resolve_model(cfg.embed.embedder)
        all_temps, last = cfg.interpret.temperatures, cfg.iterations

        generated = self._interpret(llm, 0, all_temps if last > 0 else all_temps[:1])
        embedded: Path | None = None  # every candidate of `generated`, in the current embedder's space
        for t in range(last + 1):
            extra: dict[str, Any] = {}
            if t > 0:
                preferences = self._prefer(generated, embedded, t)
                extra["preferences"] = json.loads((preferences / "stats.json").read_text())
                adapter = self._train_llm(llm, preferences, t)
                if adapter is not None:
                    extra["dpo"] = json.loads((adapter / "dpo_metrics.json").read_text())
                    llm = self._serving(llm, adapter, t)
                generated = self._interpret(llm, t, all_temps if t < last else all_temps[:1])
            if cfg.train_embedder.enabled:
                before = self._embed(generated, "interpretation", emb_dir, t, "interpretations", greedy_only=True)
                emb_dir = self._train_embedder(emb_dir, generated, before, t)
                extra["embedder"] = json.loads((emb_dir / "embedder_metrics.json").read_text())
            embedded = self._embed(generated, "interpretation", emb_dir, t,
                                   "candidates" if t < last else "interpretations-final")
            rep = self._representation(embedded, emb_dir, t)
            self.history_.append(self._record(t, generated, emb_dir, rep, extra))

        start = time.perf_counter()
        km = FaissKMeans(cfg.n_clusters, seed=cfg.seed, niter=cfg.cluster.niter, normalize=cfg.cluster.normalize).fit(rep)
        self.timings_["cluster"] = round(time.perf_counter() - start, 2)
        self.labels_, self.cluster_centers_, self.embeddings_ = km.labels_, km.cluster_centers_, rep
        self.interpretations_ = self._interpretations
        self.adapter_dir_, self.embedder_dir_ = llm.adapter, emb_dir
        self._write_outputs()
        return self

    def _write_outputs(self) -> None:
        corpus = self._corpus
        lines = [json.dumps({"id": i, "text": t, "cluster": int(c)}, ensure_ascii=False)
                 for i, (t, c) in enumerate(zip(corpus.texts, self.labels_))]
        atomic_write_text(self._run.root / "assignments.jsonl", "\n".join(lines) + "\n")
        atomic_write_json(self._run.root / "summary.json", {
            "config": self.config.to_dict(),
            "n_texts": len(corpus),
            "corpus": corpus.stats,
            "timings_s": self.timings_,
            "history": self.history_,
            "adapter": str(self.adapter_dir_) if self.adapter_dir_ else None,
            "embedder": str(self.embedder_dir_),
        })
