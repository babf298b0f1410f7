"""Stages that run the LLM: the interpretations of every text (paper 3.1) and the cluster names."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
from coevo_ray.interpret.prompts import INTERPRETATION_REGEX, NAME_REGEX, NAMING_STYLE, interpretation_regex
from coevo_ray.interpret.stage import GENERATION_SCHEMA
from coevo_ray.pipeline.context import LLMWeights, RunContext
from coevo_ray.progress import parquet_progress
from coevo_ray.rundir import fingerprint

logger = logging.getLogger(__name__)


def engine_spec(ctx: RunContext, llm: LLMWeights, structured: bool) -> EngineSpec:
    """The engine every generation actor builds; dtype, device and engine settings are the
    hardware plan's."""
    cfg, plan = ctx.config.interpret, ctx.plan
    model_dir, adapter_dir = llm.engine_dirs
    return EngineSpec(
        model_dir=model_dir, adapter_dir=adapter_dir, backend=cfg.backend, dtype=plan.engine_dtype,
        max_model_len=cfg.max_model_len, kv_cache_gib=cfg.kv_cache_gib, device=plan.engine_device,
        engine_kwargs=plan.engine_kwargs,
        repetition_penalty=cfg.repetition_penalty, max_lora_rank=cfg.max_lora_rank, seed=ctx.seed(),
        stop=cfg.stop, structured_regex=None if not structured else (
            interpretation_regex(cfg.max_tokens) if cfg.sized_answers else INTERPRETATION_REGEX),
    )


def _user_engine_kwargs(ctx: RunContext) -> tuple[dict, ...]:
    """The user's engine arguments as a key part, only when there are some (they may change the
    batching, and with it float rounding); keys of runs without them stay as they were."""
    kwargs = ctx.config.interpret.engine_kwargs
    return (kwargs,) if kwargs else ()


class InterpretStage:
    """Every text → one parsed interpretation per temperature (``interpret.stage`` on Ray Data).
    Inputs: ``llm`` (the weights to serve), ``temperatures``, ``step`` (for progress lines)."""

    name = "interpret"

    def settings(self, ctx: RunContext, llm: LLMWeights, temperatures: tuple[float, ...]):
        """(engine spec, generation settings) of ``llm`` at ``temperatures``: the streaming pass
        of a sampled fit generates as this stage does."""
        cfg = ctx.config.interpret
        settings = GenerationSettings(task=ctx.config.task, prompt_style=cfg.prompt_style, temperatures=temperatures,
                                      max_tokens=cfg.max_tokens, seed=ctx.seed(), exemplars=ctx.exemplars,
                                      admission=cfg.admission)
        return engine_spec(ctx, llm, cfg.structured_output), settings

    def key(self, ctx: RunContext, llm: LLMWeights, temperatures: tuple[float, ...], step: str = "") -> str:
        spec, settings = self.settings(ctx, llm, temperatures)
        return fingerprint("interpret", GENERATION_SCHEMA, ctx.corpus_key, spec.model_dir, spec.adapter_dir,
                           spec.backend, spec.dtype, spec.repetition_penalty, spec.stop, spec.structured_regex,
                           settings, ctx.config.interpret.max_text_chars, *_user_engine_kwargs(ctx))

    def build(self, ctx: RunContext, out: Path, llm: LLMWeights, temperatures: tuple[float, ...],
              step: str = "") -> None:
        spec, settings = self.settings(ctx, llm, temperatures)
        cfg, n = ctx.config.interpret, len(ctx.corpus)
        logger.info("%s: interpret %d texts x %d temperatures with %s%s [%s]", step, n, len(temperatures),
                    Path(spec.model_dir).name, " + LoRA" if spec.adapter_dir else "", spec.backend)
        with parquet_progress(out, n * len(temperatures), f"{step}-interpret"):
            interpret_dataset(ctx.corpus.to_ray_dataset(cfg.max_text_chars), spec, settings,
                              ctx.plan.generation).write_parquet(str(out))


def naming_settings(task: str, seed: int, admission: str) -> GenerationSettings:
    """One greedy request per cluster with the naming prompt, at most 16 tokens."""
    return GenerationSettings(task=task, prompt_style=NAMING_STYLE, temperatures=(0.0,), max_tokens=16, seed=seed,
                              admission=admission)


def name_rows(spec: EngineSpec, settings: GenerationSettings, requests: list[str], resources):
    """The naming answers (id, raw, finish_reason) of ``requests`` (one cluster description
    each), through the same Ray Data generation stage as the interpretations."""
    import ray

    ds = ray.data.from_items([{"id": i, "text": r} for i, r in enumerate(requests)])
    return interpret_dataset(ds, spec, settings, resources).select_columns(["id", "raw", "finish_reason"])


class NamesStage:
    """One greedy request per cluster (``NAMING_STYLE`` prompt); writes id, raw, finish_reason.
    Inputs: ``llm`` and ``requests`` (one rendered cluster description each)."""

    name = "names"

    def _plan(self, ctx: RunContext, llm: LLMWeights):
        spec = replace(engine_spec(ctx, llm, structured=False),
                       structured_regex=NAME_REGEX if ctx.config.interpret.backend == "vllm" else None)
        return spec, naming_settings(ctx.config.task, ctx.seed(), ctx.config.interpret.admission)

    def key(self, ctx: RunContext, llm: LLMWeights, requests: list[str]) -> str:
        spec, settings = self._plan(ctx, llm)
        return fingerprint("names", GENERATION_SCHEMA, spec.model_dir, spec.adapter_dir, requests, settings,
                           *_user_engine_kwargs(ctx))

    def build(self, ctx: RunContext, out: Path, llm: LLMWeights, requests: list[str]) -> None:
        spec, settings = self._plan(ctx, llm)
        logger.info("naming %d clusters with %s", len(requests), Path(spec.model_dir).name)
        name_rows(spec, settings, requests, ctx.plan.generation).write_parquet(str(out))
