"""The one contract every pipeline stage implements, in the spirit of ``ray.data.llm``'s stages.

A stage has a ``name``; ``key(ctx, **inputs)`` hashes what its output depends on (its config
section and its input artifacts, which are stage directories named by their own keys);
``build(ctx, out, **inputs)`` writes the output artifact into ``out`` (a temporary directory that
``RunContext.run_stage`` renames when complete). The loop only calls ``ctx.run_stage``, so any
object with this shape can replace a default stage (``CoEvolver(stages={"interpret": ...})``),
as BERTopic takes plug-in models, and the loop can be tested with fakes.

This module is the contract alone: it imports no stage, so stages and the run context can import
it. The default stages and the slot check live beside it, in ``registry.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from coevo_ray.pipeline.context import RunContext

#: The slots of a pipeline, in the order a fit first uses them.
STAGE_NAMES = ("texts", "interpret", "embed", "on_text", "prefer", "dpo", "merge", "train_embedder", "names")


@runtime_checkable
class Stage(Protocol):
    name: str

    def key(self, ctx: "RunContext", **inputs: Any) -> str: ...

    def build(self, ctx: "RunContext", out: Path, **inputs: Any) -> None: ...
