"""After the loop: describe the clusters (c-TF-IDF keywords, LLM-written names, the texts nearest
each centre) and write what a user reads (assignments.jsonl and assignments.parquet/, summary.json,
report.html)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from coevo_ray._atomic import atomic_dir, atomic_write_json, atomic_write_text
from coevo_ray.pipeline.context import RunContext
from coevo_ray.pipeline.loop import FitResult
from coevo_ray.pipeline.stage import Stage
from coevo_ray.tables import greedy_table, read_table

if TYPE_CHECKING:
    from coevo_ray.pipeline.stream import StreamedAssignments


@dataclass(frozen=True)
class Description:
    keywords: list[list[str]]
    names: list[str]
    examples: list[list[str]]  # per cluster, the texts nearest its centre


def describe_clusters(ctx: RunContext, stages: Mapping[str, Stage], result: FitResult) -> Description:
    from coevo_ray.describe import clean_name, cluster_keywords, keyword_name, naming_requests

    cfg, k, labels = ctx.config.cluster, result.n_clusters, result.labels
    greedy = greedy_table(result.generated, ["id", "keywords"])
    keywords = cluster_keywords(greedy.column("keywords").to_pylist(), labels, k, cfg.keywords_per_cluster)
    texts, examples = ctx.corpus.texts, []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(result.distances[members], kind="stable")][:3]
        examples.append([texts[i] for i in members])
    if not cfg.name_clusters:
        return Description(keywords, [keyword_name(kws) for kws in keywords], examples)
    requests = naming_requests(texts, labels, keywords, result.distances)
    named = read_table(ctx.run_stage(stages["names"], llm=result.llm, requests=requests)).to_pylist()
    names = [clean_name(row["raw"], kws, context=request, truncated=row["finish_reason"] == "length")
             for row, kws, request in zip(named, keywords, requests)]
    return Description(keywords, names, examples)


#: Rows per Parquet shard of the assignments.
SHARD_ROWS = 100_000


def write_assignment_shards(out: Path, result: FitResult, texts: list[str], names: list[str]) -> Path:
    """``out`` (a directory) as Parquet shards written by Ray Data: id, text, cluster, distance to
    its centre, cluster name — the layout ``EmbeddingKMeans`` writes, plus the names."""
    import pyarrow as pa
    import ray

    labels = result.labels.astype(np.int64)
    table = pa.table({"id": np.arange(len(labels), dtype=np.int64), "text": texts, "cluster": labels,
                      "distance": np.asarray(result.distances, np.float32),
                      "cluster_name": [names[c] for c in labels]})
    blocks = [table.slice(start, SHARD_ROWS) for start in range(0, len(table), SHARD_ROWS)]
    return atomic_dir(out, lambda tmp: ray.data.from_arrow(blocks).write_parquet(str(tmp)), overwrite=True)


def link_shards(out: Path, dirs: list[Path]) -> Path:
    """``out`` (a directory) holding every Parquet file of ``dirs``, hard-linked where the
    filesystem allows (no copy of a corpus-sized output), else copied; replaced atomically."""
    import os
    import shutil

    def build(tmp: Path) -> None:
        for d in dirs:
            for f in sorted(Path(d).glob("*.parquet")):
                target = tmp / f"{Path(d).name}-{f.name}"
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copy2(f, target)

    return atomic_dir(out, build, overwrite=True)


def write_outputs(ctx: RunContext, result: FitResult, description: Description,
                  streamed: "StreamedAssignments | None" = None) -> tuple[Path, Path | None]:
    """assignments.jsonl, assignments.parquet/ and summary.json in the run directory; report.html
    when the run is kept. For a fit on a sample (``streamed``) assignments.parquet/ holds the
    shards of the sample and of every streamed unit, and there is no JSON Lines copy (a corpus
    of any size). Returns the assignments' directory and the report's path."""
    from coevo_ray.report import write_report

    root, names, labels = ctx.run.root, description.names, result.labels
    if streamed is None:
        lines = [json.dumps({"id": i, "text": t, "cluster": int(c), "cluster_name": names[int(c)]}, ensure_ascii=False)
                 for i, (t, c) in enumerate(zip(ctx.corpus.texts, labels))]
        atomic_write_text(root / "assignments.jsonl", "\n".join(lines) + "\n")
        shards = write_assignment_shards(root / "assignments.parquet", result, ctx.corpus.texts, names)
        sizes = np.bincount(labels, minlength=result.n_clusters)
    else:
        shards, sizes = link_shards(root / "assignments.parquet", streamed.dirs), streamed.sizes
    clusters = [{"id": c, "size": int(sizes[c]), "name": names[c], "keywords": description.keywords[c],
                 "examples": description.examples[c]} for c in range(result.n_clusters)]
    summary: dict[str, Any] = {
        "config": ctx.config.to_dict(),
        "hardware_plan": ctx.plan.to_dict(),
        "n_texts": len(ctx.corpus) if streamed is None else streamed.n_rows,
        "n_fit_rows": len(ctx.corpus),
        "assignments": None if streamed is None else [str(d) for d in streamed.dirs],
        "n_clusters": result.n_clusters,
        "representation": result.representation,  # what was clustered ("auto": the kind it chose)
        "corpus": ctx.corpus.stats,
        "timings_s": ctx.timings,
        "reused_stages": ctx.run.reused,
        "ran_stages": ctx.run.ran,  # empty: every stage came from the run directory (a rerun rescored)
        "history": result.history,
        "baseline": result.baseline,
        "clusters": clusters,
        "adapter": str(result.llm.adapter) if result.llm.adapter else None,
        "embedder": str(result.embedder_dir),
    }
    atomic_write_json(root / "summary.json", summary)
    if ctx.config.output_dir is None:
        return shards, None
    return shards, write_report(root, summary, result.embeddings, labels, clusters)
