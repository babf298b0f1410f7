"""Step 5 — train embedder: contrastive text↔interpretation learning with DEC (Ray Train DDP)."""

from coevo_ray.train_embedder.embedder_config import EmbedderTrainConfig
from coevo_ray.train_embedder.embedder_trainer import train_embedder

__all__ = ["EmbedderTrainConfig", "train_embedder"]
