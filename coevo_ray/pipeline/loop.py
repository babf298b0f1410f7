"""The co-evolution loop, stateless: it wires stages through ``RunContext.run_stage`` and returns
what it found; nothing here loads a model itself, so the loop runs with fake stages in tests.

Iteration 0: interpret (T=0) → embed → train embedder → cluster.
Iteration t ≥ 1 (paper 3.2–3.3): the previous LLM's candidates at every temperature → embed them
with the current embedder → density-guided preferences → DPO → regenerate with the trained LLM
→ train embedder → cluster. Each LLM generates once: when another iteration follows, it writes
every temperature, so the next iteration's candidates are already there.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from coevo_ray.clustering import FaissKMeans, choose_stable, kmeans_pairwise_stability, l2_normalize
from coevo_ray.interpret.parsing import format_failure
from coevo_ray.metrics import ON_TEXT_MIN_GAP, compare_clusterings, evaluate_kmeans_protocol
from coevo_ray.pipeline.context import LLMWeights, RunContext
from coevo_ray.pipeline.stage import Stage
from coevo_ray.tables import column_matrix, greedy_table, read_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    labels: np.ndarray
    cluster_centers: np.ndarray
    distances: np.ndarray  # each text's distance to its centre
    embeddings: np.ndarray  # the clustered representation
    interpretations: list[str]
    n_clusters: int
    history: list[dict[str, Any]]
    baseline: dict[str, Any] | None
    llm: LLMWeights
    embedder_dir: Path
    generated: Path  # the last generation stage (greedy answers: keywords for the descriptions)
    representation: str  # what was clustered: the configured kind, or the one "auto" chose


#: The kinds ``representation="auto"`` chooses among, in the order it prefers them among those as
#: stable as the most stable one: the raw texts first (the baseline's clustering: co-evolution
#: must be measurably more reproducible to replace it), then the co-trained embedder's texts, both
#: halves, the interpretations alone (the kinds that lean on the LLM's answers last).
CHOSEN_AMONG = ("raw-text", "text", "concat", "interpretation")


def _kmeans(ctx: RunContext, k: int) -> FaissKMeans:
    cfg = ctx.config.cluster
    return FaissKMeans(k, seed=ctx.seed(), niter=cfg.niter, normalize=cfg.normalize)


def serving(ctx: RunContext, stages: Mapping[str, Stage], llm: LLMWeights, adapter: Path, step: str) -> LLMWeights:
    """How engines load a DPO-trained LLM: merged weights or base + LoRA (the hardware plan's)."""
    if not ctx.plan.serve_adapter_merged:
        return LLMWeights(llm.base, adapter)
    merged = ctx.run_stage(stages["merge"], step, base=llm.base, adapter=adapter)
    return LLMWeights(llm.base, adapter, merged)


def representation(ctx: RunContext, stages: Mapping[str, Stage], embedded: Path | None, emb_dir: Path,
                   step: str, kind: str | None = None, base_emb_dir: Path | None = None) -> np.ndarray:
    """What is clustered: the greedy interpretations' embeddings, the texts', or both (concat), by
    the embedder ``emb_dir``; "raw-text": the texts by the embedder as loaded (``base_emb_dir``),
    the baseline's vectors. ``kind``: the configured one unless given (never "auto")."""
    kind = kind or ctx.config.representation
    if kind == "raw-text":  # named as the baseline's stage in a fit: the same work, done once
        return _text_vectors(ctx, stages, base_emb_dir, "predict" if step == "predict" else "baseline")
    parts = []
    if kind in ("interpretation", "concat"):
        parts.append(column_matrix(greedy_table(embedded, ["id", "embedding"]), "embedding"))
    if kind in ("text", "concat"):
        parts.append(_text_vectors(ctx, stages, emb_dir, step))
    if len(parts) == 1:
        return parts[0]
    return np.hstack([l2_normalize(parts[0]), ctx.config.cluster.text_weight * l2_normalize(parts[1])])


def choose_representation(ctx: RunContext, stages: Mapping[str, Stage], embedded: Path, emb_dir: Path, step: str,
                          k: int, base_emb_dir: Path) -> tuple[str, np.ndarray, dict[str, Any]]:
    """The configured representation, or for ``"auto"`` the first of ``CHOSEN_AMONG`` whose KMeans
    partitions agree across the evaluation seeds as much as the most stable kind's, within the
    noise of that agreement (clustering/stability.py). A rule that needs no labels; what it gives
    on the quality sets is in docs/results.md."""
    kind = ctx.config.representation
    if kind != "auto":
        return kind, representation(ctx, stages, embedded, emb_dir, step, kind, base_emb_dir), {}
    cfg = ctx.config.cluster
    start = time.perf_counter()
    candidates = {c: representation(ctx, stages, embedded, emb_dir, step, c, base_emb_dir) for c in CHOSEN_AMONG}
    pairwise = {c: kmeans_pairwise_stability(x, k, cfg.eval_seeds, cfg.niter, cfg.normalize)
                for c, x in candidates.items()}
    chosen, why = choose_stable(pairwise, CHOSEN_AMONG)
    ctx.timings[f"{step}-choose-representation"] = round(time.perf_counter() - start, 2)
    logger.info("%s: representation %s: as stable as the most stable (%s) across %d KMeans seeds, within %.0f "
                "standard errors (mean pairwise ARI: %s)", step, chosen, why["most_stable"], len(cfg.eval_seeds),
                why["margin_se"], ", ".join(f"{c} {v:.3f}" for c, v in why["stability_ari"].items()))
    return chosen, candidates[chosen], {
        "rule": f"first of {', '.join(CHOSEN_AMONG)} within {why['margin_se']:g} standard errors of the most "
                "stable across KMeans seeds (mean pairwise ARI)", **why}


def _text_vectors(ctx: RunContext, stages: Mapping[str, Stage], emb_dir: Path, step: str) -> np.ndarray:
    texts = ctx.run_stage(stages["texts"])
    path = ctx.run_stage(stages["embed"], step, "texts", source=texts, column="text", emb_dir=emb_dir)
    return column_matrix(read_table(path), "embedding")


def estimate_k(ctx: RunContext, embedded: Path, step: str) -> tuple[int, dict[str, Any]]:
    """n_clusters="auto": K from the eigengap of a kNN graph of the greedy interpretations."""
    from coevo_ray.clustering import estimate_n_clusters

    cfg = ctx.config.cluster
    vectors = column_matrix(greedy_table(embedded, ["id", "embedding"]), "embedding")
    start = time.perf_counter()
    k, scores = estimate_n_clusters(vectors, cfg.auto_k_min, min(cfg.auto_k_max, len(vectors) - 1), seed=ctx.seed())
    ctx.timings[f"{step}-auto-k"] = round(time.perf_counter() - start, 2)
    logger.info("%s: n_clusters='auto' -> K=%d (eigengap %.4f)", step, k, scores[k])
    return k, {"k": k, "eigengap": {str(q): round(v, 5) for q, v in scores.items()}}


def _record(ctx: RunContext, stages: Mapping[str, Stage], iteration: int, generated: Path, emb_dir: Path,
            rep: np.ndarray, k: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One iteration's history entry: parse failures, the on-text guard, scores when labelled."""
    greedy = greedy_table(generated, ["id", "fallback", "repaired"])
    kinds = greedy.column("fallback").to_pylist()
    fallbacks = [f for f in kinds if f]
    entry: dict[str, Any] = {"iteration": iteration, "parse_fallbacks": len(fallbacks),
                             "repetition_cut": int(np.sum(greedy.column("repaired").to_numpy())),
                             "fallback_kinds": {k: fallbacks.count(k) for k in sorted(set(fallbacks))}}
    entry.update(extra)
    failure = format_failure(kinds)
    if failure:
        logger.warning("iteration %d: %s", iteration, failure)
    guard_dir = ctx.run_stage(stages["on_text"], f"iter{iteration}", generated=generated, emb_dir=emb_dir)
    guard = entry["on_text"] = json.loads((guard_dir / "on_text.json").read_text())
    if guard["gap"] < ON_TEXT_MIN_GAP:
        advice = ("representation='auto' weighs the texts against them" if ctx.config.representation == "auto"
                  else "clustering the texts (representation='text', 'raw-text' or 'auto') may do better")
        logger.warning("iteration %d: interpretations barely relate to their texts (cos %.2f matched vs %.2f "
                       "shuffled); %s", iteration, guard["matched"], guard["shuffled"], advice)
    if ctx.corpus.labels is not None:
        cfg = ctx.config.cluster
        scores = evaluate_kmeans_protocol(rep, ctx.corpus.labels, k, cfg.eval_seeds, cfg.normalize)
        entry.update(scores)
        logger.info("iteration %d: ACC %.2f NMI %.2f ARI %.2f", iteration, scores["acc"], scores["nmi"], scores["ari"])
    entry["timings_s"] = {name.split("-", 1)[1]: v for name, v in ctx.timings.items()
                          if name.startswith(f"iter{iteration}-")}
    return entry


def baseline(ctx: RunContext, stages: Mapping[str, Stage], emb_dir: Path, rep: np.ndarray, labels: np.ndarray,
             k: int) -> dict[str, Any]:
    """What a user would otherwise run: KMeans on the raw texts embedded by the untrained
    embedder, scored like the iterations and compared with the final clustering."""
    cfg = ctx.config.cluster
    vectors = _text_vectors(ctx, stages, emb_dir, "baseline")
    km = _kmeans(ctx, k).fit(vectors)
    cmp = compare_clusterings(vectors, km.labels_, rep, labels, seed=ctx.seed())
    entry: dict[str, Any] = {"representation": "raw texts, untrained embedder, KMeans",
                             "silhouette": cmp["silhouette_a"], "final_silhouette": cmp["silhouette_b"],
                             "agreement_ari": cmp["agreement_ari"], "agreement_nmi": cmp["agreement_nmi"]}
    if ctx.corpus.labels is not None:
        entry.update(evaluate_kmeans_protocol(vectors, ctx.corpus.labels, k, cfg.eval_seeds, cfg.normalize))
        logger.info("baseline (raw-text KMeans, same embedder): ACC %.2f NMI %.2f ARI %.2f",
                    entry["acc"], entry["nmi"], entry["ari"])
    return entry


def run_coevolution(ctx: RunContext, stages: Mapping[str, Stage], llm_dir: Path, embedder_dir: Path) -> FitResult:
    """The paper's loop from the base LLM in ``llm_dir`` and the base embedder in ``embedder_dir``."""
    cfg = ctx.config
    llm, emb_dir = LLMWeights(llm_dir), embedder_dir
    k = None if cfg.n_clusters == "auto" else cfg.n_clusters
    all_temps, last = cfg.interpret.temperatures, cfg.iterations
    history: list[dict[str, Any]] = []

    def interpret(step: str, temperatures: tuple[float, ...]) -> Path:
        return ctx.run_stage(stages["interpret"], step, llm=llm, temperatures=temperatures, step=step)

    def embed(step: str, label: str, source: Path, greedy_only: bool = False) -> Path:
        return ctx.run_stage(stages["embed"], step, label, source=source, column="interpretation", emb_dir=emb_dir,
                             greedy_only=greedy_only)

    generated = interpret("iter0", all_temps if last > 0 else all_temps[:1])
    embedded: Path | None = None  # every candidate of `generated`, in the current embedder's space
    for t in range(last + 1):
        step, extra = f"iter{t}", {}
        if t > 0:
            preferences = ctx.run_stage(stages["prefer"], step, generated=generated, embedded=embedded,
                                        n_clusters=k, iteration=t)
            extra["preferences"] = json.loads((preferences / "stats.json").read_text())
            if extra["preferences"]["pairs"] == 0:
                logger.warning("iteration %d: no preference pairs (every candidate identical); the LLM stays as it is", t)
            else:
                adapter = ctx.run_stage(stages["dpo"], step, llm=llm, preferences=preferences, iteration=t)
                extra["dpo"] = json.loads((adapter / "dpo_metrics.json").read_text())
                llm = serving(ctx, stages, llm, adapter, step)
            generated = interpret(step, all_temps if t < last else all_temps[:1])
        if cfg.train_embedder.enabled:
            before = embed(step, "interpretations", generated, greedy_only=True)
            if k is None:
                k, extra["auto_k"] = estimate_k(ctx, before, step)
            emb_dir = ctx.run_stage(stages["train_embedder"], step, emb_dir=emb_dir, generated=generated,
                                    greedy_emb=before, iteration=t)
            extra["embedder"] = json.loads((emb_dir / "embedder_metrics.json").read_text())
        embedded = embed(step, "candidates" if t < last else "interpretations-final", generated)
        if k is None:
            k, extra["auto_k"] = estimate_k(ctx, embedded, step)
        kind, rep, choice = choose_representation(ctx, stages, embedded, emb_dir, step, k, embedder_dir)
        extra["representation"] = kind
        if choice:
            extra["representation_choice"] = choice
        history.append(_record(ctx, stages, t, generated, emb_dir, rep, k, extra))

    start = time.perf_counter()
    km = _kmeans(ctx, k).fit(rep)
    ctx.timings["cluster"] = round(time.perf_counter() - start, 2)
    interpretations = greedy_table(generated, ["id", "interpretation"]).column("interpretation").to_pylist()
    base = baseline(ctx, stages, embedder_dir, rep, km.labels_, k) if cfg.cluster.baseline else None
    return FitResult(km.labels_, km.cluster_centers_, km.distances_, rep, interpretations, k, history, base,
                     llm, emb_dir, generated, kind)


def predict_representation(ctx: RunContext, stages: Mapping[str, Stage], llm: LLMWeights,
                           emb_dir: Path, kind: str, base_emb_dir: Path) -> np.ndarray:
    """The representation ``kind`` (what the fit clustered) of ``ctx.corpus`` under a fitted LLM
    and embedder (greedy answers); "raw-text" needs neither, only the embedder as loaded."""
    if kind == "raw-text":
        return representation(ctx, stages, None, emb_dir, "predict", kind, base_emb_dir)
    if llm.adapter is not None and llm.merged is None and ctx.plan.serve_adapter_merged:
        llm = serving(ctx, stages, llm, llm.adapter, "predict")
    generated = ctx.run_stage(stages["interpret"], "predict", llm=llm,
                              temperatures=ctx.config.interpret.temperatures[:1], step="predict")
    embedded = ctx.run_stage(stages["embed"], "predict", "interpretations", source=generated,
                             column="interpretation", emb_dir=emb_dir)
    return representation(ctx, stages, embedded, emb_dir, "predict", kind, base_emb_dir)
