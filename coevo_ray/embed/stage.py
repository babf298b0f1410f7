"""Step 2 of the pipeline on Ray Data: an actor pool of sentence-transformers models."""

from __future__ import annotations

from typing import Any

import numpy as np

from coevo_ray.embed.encoder import encode, load_encoder
from coevo_ray.interpret.stage import StageResources, actor_runtime_env


class EmbedUDF:
    """Adds ``output_column`` (float32, L2-normalised) computed from ``input_column``."""

    def __init__(self, model_dir: str, input_column: str = "text", output_column: str = "embedding",
                 batch_size: int = 64, threads: int | None = None) -> None:
        from coevo_ray.runtime import actor_threads

        actor_threads(threads)
        self.model = load_encoder(model_dir)
        self.input_column = input_column
        self.output_column = output_column
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = [str(t) for t in batch[self.input_column]]
        batch[self.output_column] = encode(self.model, texts, self.batch_size)
        return batch


def embed_dataset(ds, model_dir: str, resources: StageResources, input_column: str = "text",
                  output_column: str = "embedding"):
    import ray

    return ds.map_batches(
        EmbedUDF,
        fn_constructor_kwargs={"model_dir": str(model_dir), "input_column": input_column,
                               "output_column": output_column, "threads": resources.threads},
        batch_size=resources.batch_size,
        compute=ray.data.ActorPoolStrategy(size=resources.actors),
        num_cpus=resources.cpus_per_actor,
        num_gpus=resources.gpus_per_actor,
        runtime_env=actor_runtime_env(resources.threads),
        udf_modifying_row_count=False,
    )
