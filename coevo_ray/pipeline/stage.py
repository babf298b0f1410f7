"""The one contract every pipeline stage implements, in the spirit of ``ray.data.llm``'s stages.

A stage has a ``name``; ``key(ctx, **inputs)`` hashes what its output depends on (its config
section and its input artifacts, which are stage directories named by their own keys);
``build(ctx, out, **inputs)`` writes the output artifact into ``out`` (a temporary directory that
``RunContext.run_stage`` renames when complete). The loop only calls ``ctx.run_stage``, so any
object with this shape can replace a default stage (``CoEvolver(stages={"interpret": ...})``),
as BERTopic takes plug-in models, and the loop can be tested with fakes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

from coevo_ray.errors import InputError

if TYPE_CHECKING:
    from coevo_ray.pipeline.context import RunContext

#: The slots of a pipeline, in the order a fit first uses them.
STAGE_NAMES = ("texts", "interpret", "embed", "on_text", "prefer", "dpo", "merge", "train_embedder", "names")


@runtime_checkable
class Stage(Protocol):
    name: str

    def key(self, ctx: "RunContext", **inputs: Any) -> str: ...

    def build(self, ctx: "RunContext", out: Path, **inputs: Any) -> None: ...


def default_stages() -> dict[str, Stage]:
    from coevo_ray.pipeline.embedding import EmbedStage, OnTextStage, TextsStage, TrainEmbedderStage
    from coevo_ray.pipeline.generation import InterpretStage, NamesStage
    from coevo_ray.pipeline.llm_training import DPOStage, MergeStage, PreferStage

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
