"""The co-evolution pipeline: a frozen run context, stages that share one contract, and the
stateless loop that wires them (``run_coevolution``). ``CoEvolver`` is a thin estimator over it;
the algorithms live in ``interpret/``, ``embed/``, ``prefer/``, ``train_llm/``,
``train_embedder/``, ``clustering/`` and ``describe/``."""

from coevo_ray.pipeline.context import LLMWeights, RunContext
from coevo_ray.pipeline.loop import FitResult, predict_representation, run_coevolution
from coevo_ray.pipeline.registry import default_stages, resolve_stages
from coevo_ray.pipeline.stage import STAGE_NAMES, Stage

__all__ = ["RunContext", "LLMWeights", "Stage", "STAGE_NAMES", "default_stages", "resolve_stages",
           "run_coevolution", "predict_representation", "FitResult"]
