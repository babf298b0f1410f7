"""Step 2 — embed: texts and interpretations into the embedding model's space."""

from coevo_ray.embed.encoder import driver_encoder, encode, load_encoder
from coevo_ray.embed.stage import EmbedUDF, embed_dataset, embed_parquet

__all__ = ["driver_encoder", "encode", "load_encoder", "EmbedUDF", "embed_dataset", "embed_parquet"]
