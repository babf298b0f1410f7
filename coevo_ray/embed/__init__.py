"""Step 2 — embed: texts and interpretations into the embedding model's space."""

from coevo_ray.embed.encoder import encode, load_encoder
from coevo_ray.embed.stage import EmbedUDF, embed_dataset

__all__ = ["encode", "load_encoder", "EmbedUDF", "embed_dataset"]
