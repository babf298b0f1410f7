"""The default stage in each slot of the pipeline, and the check that puts a user's stage in its
slot. Kept apart from the contract (``stage.py``): the default stages import the run context,
which imports the contract."""

from __future__ import annotations

from typing import Any, Mapping

from coevo_ray.errors import InputError
from coevo_ray.pipeline.embedding import EmbedStage, OnTextStage, TextsStage, TrainEmbedderStage
from coevo_ray.pipeline.generation import InterpretStage, NamesStage
from coevo_ray.pipeline.llm_training import DPOStage, MergeStage, PreferStage
from coevo_ray.pipeline.stage import STAGE_NAMES, Stage


def default_stages() -> dict[str, Stage]:
    return {"texts": TextsStage(), "interpret": InterpretStage(), "embed": EmbedStage(), "on_text": OnTextStage(),
            "prefer": PreferStage(), "dpo": DPOStage(), "merge": MergeStage(),
            "train_embedder": TrainEmbedderStage(), "names": NamesStage()}


def resolve_stages(overrides: Mapping[str, Any] | None) -> dict[str, Stage]:
    """The default stages with ``overrides`` put in their slots; unknown slots and objects without
    the contract are refused by name."""
    stages = default_stages()
    for slot, stage in (overrides or {}).items():
        if slot not in STAGE_NAMES:
            raise InputError(f"unknown stage {slot!r}; the stages are {', '.join(STAGE_NAMES)}")
        if not isinstance(stage, Stage):
            raise InputError(f"stage {slot!r} must have a name and key(ctx, **inputs), build(ctx, out, **inputs) "
                             f"methods; got {type(stage).__name__}")
        stages[slot] = stage
    return stages
