"""Stages that run the embedder: the texts table, embeddings of a column, the on-text guard and
the embedder's training (paper 3.3)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from coevo_ray._atomic import atomic_write_json
from coevo_ray.embed import embed_parquet, model_prompt
from coevo_ray.pipeline.context import RunContext
from coevo_ray.rundir import fingerprint
from coevo_ray.tables import column_matrix, greedy_table, read_table

logger = logging.getLogger(__name__)


def embedder_name(emb_dir: Path) -> str:
    return emb_dir.parent.name if emb_dir.name == "model" else emb_dir.name


def _prompt_part(ctx: RunContext, emb_dir: Path) -> tuple[str, ...]:
    """The embedder's prompt as a key part, only when there is one (keys of prompt-less
    embedders stay those of runs written before prompts existed)."""
    prompt = model_prompt(emb_dir, ctx.config.embed.prompt_name)
    return (prompt,) if prompt else ()


class TextsStage:
    """The corpus as the models see it (id, text truncated to ``max_text_chars``). No inputs."""

    name = "texts"

    def key(self, ctx: RunContext) -> str:
        # The truncation is part of what this stage holds only when it cut a text (keys of runs
        # written before it was in the key stay valid).
        limit = ctx.config.interpret.max_text_chars
        if any(len(t) > limit for t in ctx.corpus.texts):
            return fingerprint("texts", ctx.corpus_key, limit)
        return ctx.corpus_key

    def build(self, ctx: RunContext, out: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        texts = ctx.model_texts()
        pq.write_table(pa.table({"id": np.arange(len(texts)), "text": texts}), out / "part-0.parquet")


class EmbedStage:
    """``column`` of the Parquet stage ``source`` embedded by the embedder in ``emb_dir``
    (``greedy_only``: candidate 0 only); writes the id (and candidate) columns and ``embedding``."""

    name = "embed"

    def key(self, ctx: RunContext, source: Path, column: str, emb_dir: Path, greedy_only: bool = False) -> str:
        return fingerprint("embed", source.name, column, str(emb_dir), ctx.config.embed.batch_size, greedy_only,
                           *_prompt_part(ctx, emb_dir))

    def build(self, ctx: RunContext, out: Path, source: Path, column: str, emb_dir: Path,
              greedy_only: bool = False) -> None:
        cfg = ctx.config.embed
        keep = ["id", "candidate"] if column == "interpretation" else ["id"]
        where = embed_parquet(source, out, str(emb_dir), ctx.plan.embedding, column, keep, greedy_only,
                              cfg.in_process_max_rows, cfg.batch_size, model_prompt(emb_dir, cfg.prompt_name), ctx.plan)
        logger.info("embedded the %ss of %s with %s (%s)", column, source.name.rsplit("-", 1)[0],
                    embedder_name(emb_dir), where)


class OnTextStage:
    """The on-text guard of the greedy interpretations in ``generated``: cosine of each text with
    its own interpretation vs with a shuffled one, embedded by ``emb_dir`` (``on_text.json``)."""

    name = "on-text"

    def key(self, ctx: RunContext, generated: Path, emb_dir: Path) -> str:
        return fingerprint("on-text", generated.name, str(emb_dir), ctx.config.interpret.max_text_chars, ctx.seed(),
                           *_prompt_part(ctx, emb_dir))

    def build(self, ctx: RunContext, out: Path, generated: Path, emb_dir: Path) -> None:
        from coevo_ray.metrics import sample_on_text_similarity

        cfg = ctx.config.embed
        interpretations = greedy_table(generated, ["id", "interpretation"]).column("interpretation").to_pylist()
        # Where this corpus's embed stages run, so that a large fit's driver never loads the embedder.
        in_driver = ctx.plan.embedding.gpus_per_actor == 0 and ctx.plan.in_driver(len(interpretations),
                                                                                  cfg.in_process_max_rows)
        guard = sample_on_text_similarity(str(emb_dir), ctx.model_texts(), interpretations, seed=ctx.seed(),
                                          prompt=model_prompt(emb_dir, cfg.prompt_name), in_driver=in_driver,
                                          task_gpus=ctx.plan.task_gpus)
        atomic_write_json(out / "on_text.json", guard)


class TrainEmbedderStage:
    """InfoNCE text↔interpretation + dropout pair + DEC (eq. 10–13) on the greedy candidates of
    ``generated``, starting from ``emb_dir``; DEC centroids from ``greedy_emb`` (the greedy
    interpretations in ``emb_dir``'s space). Writes a sentence-transformers folder."""

    name = "train-embedder"

    def _plan(self, ctx: RunContext, iteration: int):
        cfg = replace(ctx.config.train_embedder, seed=ctx.seed(iteration))
        return cfg, min(cfg.dec_clusters, max(2, len(ctx.corpus) // 2))

    def key(self, ctx: RunContext, emb_dir: Path, generated: Path, greedy_emb: Path, iteration: int) -> str:
        from coevo_ray.train_embedder.embedder_trainer import TRAINING_REVISION

        cfg, k = self._plan(ctx, iteration)
        # The plan's workers in place of the config's None: they decide the batches, and so the weights.
        layout = ctx.plan.train_embedder
        cfg = replace(cfg, num_workers=layout.num_workers, cpus_per_worker=layout.cpus_per_worker)
        return fingerprint("train-embedder", generated.name, greedy_emb.name, str(emb_dir), cfg, k, TRAINING_REVISION,
                           *_prompt_part(ctx, emb_dir))

    def build(self, ctx: RunContext, out: Path, emb_dir: Path, generated: Path, greedy_emb: Path,
              iteration: int) -> None:
        import ray
        from ray.data.expressions import col

        from coevo_ray.clustering import FaissKMeans
        from coevo_ray.train_embedder import train_embedder

        cfg, k = self._plan(ctx, iteration)
        n = len(ctx.corpus)
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
        train_embedder(emb_dir, pairs, out, cfg, centroids=centroids, cluster_frequency=frequency,
                       storage_path=str(ctx.run.root / "ray_train"), prompt=model_prompt(emb_dir, ctx.config.embed.prompt_name),
                       layout=ctx.plan.train_embedder)
