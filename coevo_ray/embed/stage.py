"""Step 2 of the pipeline on Ray Data: an actor pool of sentence-transformers models.

A small stage on a one-node CPU cluster is embedded in the driver instead: a fresh actor pays
process start and the torch + sentence-transformers imports (several seconds) before its first
text, more than encoding a few thousand short texts takes, and on one node the driver and the
actor share the same cores anyway (figures: README, "Benchmarks").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coevo_ray.embed.encoder import driver_encoder, encode, load_encoder
from coevo_ray.resources import StageResources
from coevo_ray.runtime import in_input_order

if TYPE_CHECKING:
    from coevo_ray.hardware import HardwarePlan


class EmbedUDF:
    """Adds ``output_column`` (float32, L2-normalised) computed from ``input_column``, and the
    same for each further (input, output) pair of ``more_columns``, with one model."""

    def __init__(self, model_dir: str, input_column: str = "text", output_column: str = "embedding",
                 batch_size: int = 64, threads: int | None = None, prompt: str = "", device: str = "cpu",
                 more_columns: tuple[tuple[str, str], ...] = ()) -> None:
        from coevo_ray.runtime import actor_threads

        actor_threads(threads)
        self.model = load_encoder(model_dir, device)
        self.columns = ((input_column, output_column), *more_columns)
        self.batch_size = batch_size
        self.prompt = prompt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        for source, target in self.columns:
            texts = [str(t) for t in batch[source]]
            batch[target] = encode(self.model, texts, self.batch_size, prompt=self.prompt)
        return batch


def embed_dataset(ds, model_dir: str, resources: StageResources, input_column: str = "text",
                  output_column: str = "embedding", encode_batch_size: int = 64, prompt: str = "",
                  more_columns: tuple[tuple[str, str], ...] = ()):
    """Lazily add ``output_column`` to ``ds`` (and an output for each (input, output) pair of
    ``more_columns``, by the same actors); ``"auto"`` fields of ``resources`` are decided by the
    hardware plan for the connected cluster (one GPU per actor when it has GPUs)."""
    from coevo_ray.hardware import actor_layout, current_topology

    if not resources.resolved:
        resources = actor_layout(resources, current_topology())
    return in_input_order(ds.map_batches(
        EmbedUDF,
        fn_constructor_kwargs={"model_dir": str(model_dir), "input_column": input_column,
                               "output_column": output_column, "threads": resources.threads,
                               "batch_size": encode_batch_size, "prompt": prompt,
                               "device": "cuda" if resources.gpus_per_actor > 0 else "cpu",
                               "more_columns": tuple(more_columns)},
        udf_modifying_row_count=False,
        **resources.map_batches_kwargs(),
    ))


def small_enough_for_driver(rows: int, max_rows: int, resources: StageResources, topology) -> bool:
    """Whether ``rows`` texts are embedded in the driver rather than by a Ray Data actor pool: at
    most ``max_rows`` rows, no GPU asked for, a one-node cluster without GPUs (the rule of
    ``HardwarePlan.in_driver``, for stages that hold a ``StageResources``)."""
    from coevo_ray.hardware import actor_layout

    resources = actor_layout(resources, topology) if not resources.resolved else resources
    return rows <= max_rows and resources.gpus_per_actor == 0 and topology.one_cpu_node


def encode_table_in_driver(table, column: str, model_dir: str, encode_batch_size: int = 64, prompt: str = "",
                           keep_column: bool = False):
    """``table`` with an ``embedding`` column (float32, L2-normalised) of ``column`` (dropped
    unless ``keep_column``), encoded in this process by the driver's cached encoder: what
    :class:`EmbedUDF` computes, for a small table."""
    import pyarrow as pa

    vectors = encode(driver_encoder(model_dir), [str(t) for t in table.column(column).to_pylist()],
                     encode_batch_size, prompt=prompt)
    table = table if keep_column else table.drop_columns([column])
    return table.append_column("embedding", pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), vectors.shape[1]))


def embed_parquet(source: Path, out: Path, model_dir: str, resources: StageResources, column: str,
                  keep: list[str], greedy_only: bool = False, in_process_max_rows: int = 0,
                  encode_batch_size: int = 64, prompt: str = "", plan: "HardwarePlan | None" = None) -> str:
    """Embed ``column`` of the Parquet stage ``source`` into Parquet files in ``out`` (the ``keep``
    columns and ``embedding``), each text preceded by ``prompt``. At most ``in_process_max_rows``
    rows where the hardware plan (``plan``; by default the connected cluster's) runs small stages in
    the driver are embedded there. Returns where it ran: "driver" or "ray-data"."""
    import pyarrow.parquet as pq
    import ray

    from coevo_ray.hardware import actor_layout, current_topology

    topology = plan.topology if plan is not None else current_topology()
    resources = actor_layout(resources, topology) if not resources.resolved else resources
    rows = sum(pq.read_metadata(f).num_rows for f in sorted(Path(source).glob("*.parquet")))
    if small_enough_for_driver(rows, in_process_max_rows, resources, topology):
        from coevo_ray.tables import read_table

        table = read_table(Path(source), keep + [column], sort_by=(),
                           filters=[("candidate", "=", 0)] if greedy_only else None)
        pq.write_table(encode_table_in_driver(table, column, model_dir, encode_batch_size, prompt),
                       Path(out) / "part-0.parquet")
        return "driver"
    from ray.data.expressions import col

    ds = ray.data.read_parquet(str(source)).select_columns(keep + [column])
    if greedy_only:
        ds = ds.filter(expr=col("candidate") == 0)
    embed_dataset(ds, model_dir, resources, input_column=column, encode_batch_size=encode_batch_size, prompt=prompt) \
        .drop_columns([column]).write_parquet(str(out))
    return "ray-data"
