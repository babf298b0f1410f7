"""Step 2 — embed: texts and interpretations into the embedding model's space."""

from coevo_ray.embed.encoder import driver_encoder, encode, load_encoder, model_prompt
from coevo_ray.embed.stage import (EmbedUDF, embed_dataset, embed_parquet, encode_table_in_driver,
                                   small_enough_for_driver)

__all__ = ["driver_encoder", "encode", "load_encoder", "model_prompt", "EmbedUDF", "embed_dataset", "embed_parquet",
           "encode_table_in_driver", "small_enough_for_driver"]
