"""Step 1 — interpret: the LLM writes ``Reasoning: … Keywords: …`` for every text."""

from coevo_ray.interpret.engine import EngineSpec, build_engine
from coevo_ray.interpret.parsing import Interpretation, parse_interpretation
from coevo_ray.interpret.prompts import (
    PROMPT_STYLES, TaskDescription, build_messages, exemplar_texts, render_prompt,
)
from coevo_ray.interpret.stage import GenerationSettings, InterpretUDF, interpret_dataset

__all__ = [
    "EngineSpec", "build_engine", "Interpretation", "parse_interpretation", "PROMPT_STYLES",
    "TaskDescription", "build_messages", "exemplar_texts", "render_prompt", "GenerationSettings", "InterpretUDF",
    "interpret_dataset",
]
