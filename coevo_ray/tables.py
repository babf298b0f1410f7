"""Reading stage outputs (Parquet directories written by Ray Data) back in row order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def read_table(path: Path, columns: list[str] | None = None, sort_by=(("id", "ascending"),),
               filters=None) -> pa.Table:
    table = pq.read_table(str(path), columns=columns, filters=filters)
    names = [name for name, _ in sort_by]
    if names and all(n in table.column_names for n in names):
        table = table.sort_by(list(sort_by))
    return table


def greedy_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Candidate 0 (the temperature-0 answer) of every text, in id order. The filter is pushed
    into the Parquet scan, so the other candidates never reach this process's memory."""
    return read_table(path, columns, filters=[("candidate", "=", 0)])


def column_matrix(table: pa.Table, column: str) -> np.ndarray:
    """A float32 matrix from a tensor or list column."""
    col = table.column(column).combine_chunks()
    storage = getattr(col, "storage", col)  # Ray's tensor extension type wraps a list array
    if pa.types.is_fixed_size_list(storage.type) or pa.types.is_list(storage.type) or pa.types.is_large_list(storage.type):
        flat = storage.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float32).reshape(len(storage), -1)
    return np.stack([np.asarray(v, dtype=np.float32) for v in col.to_pylist()])
