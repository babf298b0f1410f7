"""After the loop: describe the clusters (c-TF-IDF keywords, LLM-written names, the texts nearest
each centre) and write what a user reads (assignments.jsonl, summary.json, report.html)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from coevo_ray._atomic import atomic_write_json, atomic_write_text
from coevo_ray.pipeline.context import RunContext
from coevo_ray.pipeline.loop import FitResult
from coevo_ray.pipeline.stage import Stage
from coevo_ray.tables import greedy_table, read_table


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


def write_outputs(ctx: RunContext, result: FitResult, description: Description) -> Path | None:
    """assignments.jsonl and summary.json in the run directory; report.html when the run is kept.
    Returns the report's path."""
    from coevo_ray.report import write_report

    root, names, labels = ctx.run.root, description.names, result.labels
    lines = [json.dumps({"id": i, "text": t, "cluster": int(c), "cluster_name": names[int(c)]}, ensure_ascii=False)
             for i, (t, c) in enumerate(zip(ctx.corpus.texts, labels))]
    atomic_write_text(root / "assignments.jsonl", "\n".join(lines) + "\n")
    sizes = np.bincount(labels, minlength=result.n_clusters)
    clusters = [{"id": c, "size": int(sizes[c]), "name": names[c], "keywords": description.keywords[c],
                 "examples": description.examples[c]} for c in range(result.n_clusters)]
    summary: dict[str, Any] = {
        "config": ctx.config.to_dict(),
        "n_texts": len(ctx.corpus),
        "n_clusters": result.n_clusters,
        "corpus": ctx.corpus.stats,
        "timings_s": ctx.timings,
        "reused_stages": ctx.run.reused,
        "history": result.history,
        "baseline": result.baseline,
        "clusters": clusters,
        "adapter": str(result.llm.adapter) if result.llm.adapter else None,
        "embedder": str(result.embedder_dir),
    }
    atomic_write_json(root / "summary.json", summary)
    if ctx.config.output_dir is None:
        return None
    return write_report(root, summary, result.embeddings, labels, clusters)
