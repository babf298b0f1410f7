"""``report.html`` for a run: metrics per iteration beside the plain baseline, cluster sizes, a 2-D map of the embeddings,
a table of clusters (name, keywords, example texts), parse fallbacks and stage timings.

Self-contained: the PNGs sit beside the HTML (matplotlib, Agg backend), no JavaScript library
and nothing fetched from the network, so it opens offline and in headless browsers.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coevo_ray._atomic import atomic_write_text


def _pca_2d(x: np.ndarray, max_points: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(x))
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), size=max_points, replace=False))
    sub = x[idx] - x[idx].mean(axis=0)
    _, _, vt = np.linalg.svd(sub, full_matrices=False)
    return sub @ vt[:2].T, idx


def _plots(out: Path, history: list[dict], embeddings: np.ndarray, labels: np.ndarray, n_clusters: int,
           baseline: dict | None = None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sizes = np.bincount(labels, minlength=n_clusters)
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(np.arange(n_clusters), sizes, color="#4c72b0")
    ax.set_xlabel("cluster")
    ax.set_ylabel("texts")
    ax.set_title("Cluster sizes")
    fig.tight_layout()
    fig.savefig(out / "sizes.png", dpi=90)
    plt.close(fig)
    written.append("sizes.png")

    xy, idx = _pca_2d(np.asarray(embeddings, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(xy[:, 0], xy[:, 1], c=labels[idx], cmap="tab20", s=8, alpha=0.8)
    ax.set_title("Embeddings (PCA, coloured by cluster)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "map.png", dpi=90)
    plt.close(fig)
    written.append("map.png")

    scored = [h for h in history if "acc" in h]
    if scored:
        fig, ax = plt.subplots(figsize=(6, 3))
        for key in ("acc", "nmi", "ari"):
            line, = ax.plot([h["iteration"] for h in scored], [h[key] for h in scored], marker="o", label=key.upper())
            if baseline and key in baseline:
                ax.axhline(baseline[key], color=line.get_color(), linestyle="--", linewidth=1,
                           label=f"{key.upper()} baseline")
        ax.set_xlabel("iteration")
        ax.set_xticks([h["iteration"] for h in scored])
        ax.legend(fontsize=7, ncol=2)
        ax.set_title("Scores per iteration (dashed: raw-text KMeans baseline)")
        fig.tight_layout()
        fig.savefig(out / "metrics.png", dpi=90)
        plt.close(fig)
        written.append("metrics.png")
    return written


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_report(out_dir: str | Path, summary: dict[str, Any], embeddings: np.ndarray, labels: np.ndarray,
                 clusters: list[dict[str, Any]]) -> Path:
    """Write ``report.html`` and its PNGs into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = summary.get("history", [])
    images = _plots(out, history, embeddings, np.asarray(labels), len(clusters), summary.get("baseline"))
    esc = html.escape
    metric_rows = [[h["iteration"], *(f"{h[k]:.2f}" if k in h else "–" for k in ("acc", "nmi", "ari")),
                    h.get("parse_fallbacks", "–"), f"{h['on_text']['matched']:.2f} / {h['on_text']['shuffled']:.2f}"]
                   for h in history]
    baseline = summary.get("baseline")
    comparison = ""
    if baseline:
        metric_rows.insert(0, ["baseline: raw texts, same embedder untrained, KMeans",
                               *(f"{baseline[k]:.2f}" if k in baseline else "–" for k in ("acc", "nmi", "ari")),
                               "–", "–"])
        comparison = (
            "<h2>Against the baseline</h2>" + _table(
                ["clustering", "silhouette (cosine, own space)", "agreement with the other (ARI / NMI)"],
                [["baseline (raw texts)", f"{baseline['silhouette']:.3f}",
                  f"{baseline['agreement_ari']:.1f} / {baseline['agreement_nmi']:.1f}"],
                 ["co-evolved (final)", f"{baseline['final_silhouette']:.3f}",
                  f"{baseline['agreement_ari']:.1f} / {baseline['agreement_nmi']:.1f}"]], "baseline")
            + "<p>Silhouettes are measured in different spaces (raw-text embeddings vs. the clustered representation); with "
              "labels, the ACC/NMI/ARI rows above are the comparison to trust.</p>")
    cluster_rows = [[c["id"], c["size"], esc(c["name"]), esc(", ".join(c["keywords"])),
                     "<br>".join(esc(t[:200]) for t in c["examples"])] for c in clusters]
    timing_rows = [[esc(k), f"{v:.1f}"] for k, v in summary.get("timings_s", {}).items()]
    cfg = summary.get("config", {})
    sections = [
        f"<h1>coevo_ray run report</h1><p class=\"meta\">{summary.get('n_texts', '?')} texts → "
        f"{len(clusters)} clusters · task <code>{esc(str(cfg.get('task')))}</code> · LLM "
        f"<code>{esc(str(cfg.get('interpret', {}).get('llm')))}</code> · embedder "
        f"<code>{esc(str(cfg.get('embed', {}).get('embedder')))}</code> · iterations {cfg.get('iterations')} · "
        f"clustered: <code>{esc(str(summary.get('representation', cfg.get('representation'))))}</code></p>",
        "<h2>Iterations</h2>" + _table(["iteration", "ACC", "NMI", "ARI", "parse fallbacks",
                                        "on-text cos (matched / shuffled)"], metric_rows, "metrics"),
        comparison,
        *(f'<figure><img src="{name}" alt="{name}"></figure>' for name in images),
        "<h2>Clusters</h2>" + _table(["id", "size", "name", "keywords", "examples"], cluster_rows, "clusters"),
        "<h2>Stage timings (s; 0 = reused)</h2>" + _table(["stage", "seconds"], timing_rows, "timings"),
        f"<details><summary>Configuration</summary><pre>{esc(json.dumps(cfg, indent=2, default=str))}</pre></details>",
    ]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coevo_ray report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:14px}}th{{background:#eee}}
img{{max-width:100%}}.meta{{color:#444}}</style></head>
<body>{''.join(sections)}
<script>
// Lets a headless check see that the page rendered and every image decoded.
window.addEventListener("load", () => {{
  const imgs = [...document.images];
  document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length + "/" + imgs.length;
  document.body.dataset.clusterRows = document.querySelectorAll("table.clusters tbody tr").length;
}});
</script></body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
