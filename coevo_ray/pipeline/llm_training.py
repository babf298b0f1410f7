"""Stages that train the LLM: density-guided preferences (paper 3.2), DPO with LoRA, and the
merged weights CPU engines serve."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from coevo_ray._atomic import atomic_write_json
from coevo_ray.pipeline.context import LLMWeights, RunContext
from coevo_ray.rundir import fingerprint

logger = logging.getLogger(__name__)


class PreferStage:
    """Chosen/rejected pairs from R KMeans runs on the greedy embeddings (eq. 7–9): ``generated``
    candidates, ``embedded`` in the current embedder's space, ``n_clusters`` K.
    Writes ``pairs.parquet`` and ``stats.json``."""

    name = "prefer"

    def key(self, ctx: RunContext, generated: Path, embedded: Path, n_clusters: int, iteration: int) -> str:
        return fingerprint("prefer", generated.name, embedded.name, ctx.config.prefer, n_clusters, ctx.seed())

    def build(self, ctx: RunContext, out: Path, generated: Path, embedded: Path, n_clusters: int,
              iteration: int) -> None:
        from coevo_ray.prefer.stage import preference_stage, preference_stage_on_ray

        cfg = ctx.config.prefer
        in_driver = ctx.plan.in_driver(len(ctx.corpus), ctx.config.embed.in_process_max_rows)
        logger.info("iteration %d: preferences from %d KMeans runs (%s rule, %s)", iteration, cfg.n_runs, cfg.rule,
                    "in the driver" if in_driver else "in a Ray task")
        args = (str(generated), str(embedded), str(out), n_clusters, cfg, ctx.seed(iteration))
        stats = preference_stage(*args) if in_driver else preference_stage_on_ray(*args, task_gpus=ctx.plan.task_gpus)
        atomic_write_json(out / "stats.json", stats)


class DPOStage:
    """DPO (TRL, LoRA, Ray Train) of ``llm`` on the pairs in ``preferences``, continuing its adapter
    when it has one; the prompts are the generation prompts. Writes the adapter folder."""

    name = "dpo"

    def key(self, ctx: RunContext, llm: LLMWeights, preferences: Path, iteration: int) -> str:
        # The plan's precision and DeepSpeed in place of the config's None (they change the numbers).
        layout = ctx.plan.train_llm
        cfg = replace(ctx.config.train_llm, seed=ctx.seed(iteration), bf16=layout.bf16, deepspeed=layout.deepspeed)
        return fingerprint("dpo", preferences.name, str(llm.base), str(llm.adapter), cfg,
                           ctx.config.interpret.prompt_style, ctx.exemplars, ctx.config.task)

    def build(self, ctx: RunContext, out: Path, llm: LLMWeights, preferences: Path, iteration: int) -> None:
        import pyarrow.parquet as pq
        from transformers import AutoTokenizer

        from coevo_ray.interpret.prompts import TaskDescription, render_prompt
        from coevo_ray.train_llm import train_dpo

        cfg = replace(ctx.config.train_llm, seed=ctx.seed(iteration))
        pairs = pq.read_table(preferences / "pairs.parquet", columns=["text", "chosen", "rejected"])
        tok = AutoTokenizer.from_pretrained(str(llm.base))
        desc = TaskDescription.parse(ctx.config.task)
        style = ctx.config.interpret.prompt_style
        data = {"prompt": [render_prompt(tok, t, desc, style, ctx.exemplars) for t in pairs.column("text").to_pylist()],
                "chosen": pairs.column("chosen").to_pylist(), "rejected": pairs.column("rejected").to_pylist()}
        logger.info("iteration %d: DPO on %d pairs", iteration, pairs.num_rows)
        train_dpo(str(llm.base), data, out, cfg, storage_path=str(ctx.run.root / "ray_train"),
                  init_adapter_dir=str(llm.adapter) if llm.adapter else None, layout=ctx.plan.train_llm)


class MergeStage:
    """``base`` with the LoRA ``adapter`` merged in (CPU engines serve merged weights)."""

    name = "merged"

    @staticmethod
    def _dtype(ctx: RunContext) -> str:
        """The engines' dtype (the hardware plan's), so the merged copy is what they load."""
        return ctx.plan.engine_dtype

    def key(self, ctx: RunContext, base: Path, adapter: Path) -> str:
        return fingerprint("merge", str(base), adapter.name, self._dtype(ctx))

    def build(self, ctx: RunContext, out: Path, base: Path, adapter: Path) -> None:
        from coevo_ray.train_llm import write_merged_model

        write_merged_model(base, adapter, out, dtype=self._dtype(ctx))
