"""Step 4 — train LLM: DPO on the density-guided pairs (TRL on Ray Train)."""

from coevo_ray.train_llm.dpo_config import LLMTrainConfig
from coevo_ray.train_llm.dpo_trainer import train_dpo
from coevo_ray.train_llm.merge import ADAPTER_SERVING, merge_adapter, write_merged_model

__all__ = ["ADAPTER_SERVING", "LLMTrainConfig", "train_dpo", "merge_adapter", "write_merged_model"]
