"""Step 4 — train LLM: DPO on the density-guided pairs (TRL on Ray Train)."""

from coevo_ray.train_llm.dpo_config import LLMTrainConfig
from coevo_ray.train_llm.dpo_trainer import train_dpo
from coevo_ray.train_llm.merge import merge_adapter, serve_merged_by_default

__all__ = ["LLMTrainConfig", "train_dpo", "merge_adapter", "serve_merged_by_default"]
