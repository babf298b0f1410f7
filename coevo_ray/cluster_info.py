"""The tables a user reads a clustering from, shared by both estimators: one row per cluster
(BERTopic's ``get_topic_info``) and one row per text, as pandas DataFrames."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def cluster_table(sizes: Sequence[int], names: Sequence[str], keywords: Sequence[Sequence[str]],
                  examples: Sequence[Sequence[str]]):
    """``cluster``, ``size``, ``name``, ``keywords`` and ``representative_texts`` (nearest the
    centre first) for every cluster id, empty clusters included, largest first."""
    import pandas as pd

    n_clusters = len(sizes)
    table = pd.DataFrame({"cluster": np.arange(n_clusters), "size": np.asarray(sizes, dtype=np.int64), "name": list(names),
                          "keywords": [list(k) for k in keywords], "representative_texts": [list(e) for e in examples]})
    return table.sort_values(["size", "cluster"], ascending=[False, True], kind="stable").reset_index(drop=True)


def document_table(texts: Sequence[str], labels: np.ndarray, names: Sequence[str], distances: np.ndarray,
                   interpretations: Sequence[str] | None = None):
    """``id``, ``text``, ``cluster``, ``name``[, ``interpretation``] and ``distance`` per text."""
    import pandas as pd

    labels = np.asarray(labels, dtype=np.int64)
    columns = {"id": np.arange(len(labels)), "text": list(texts), "cluster": labels,
               "name": [names[c] for c in labels]}
    if interpretations is not None:
        columns["interpretation"] = list(interpretations)
    columns["distance"] = np.asarray(distances, dtype=np.float32)
    return pd.DataFrame(columns)
