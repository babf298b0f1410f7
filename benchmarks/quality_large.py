#!/usr/bin/env python
"""Quality with the strongest models this hardware runs (profile ``cpu-large``): EmbeddingGemma-300m
as the co-evolved embedder, three LLMs (SmolLM2-135M, Qwen2.5-Coder-0.5B, Qwen2.5-Coder-1.5B),
six of the paper's sets (two topic, two type, bank77, goemo), iterations 0 and 1, several pipeline
seeds (a seed changes generation sampling, DPO, embedder training and KMeans).

    python benchmarks/quality_large.py                                  # every set, LLM and seed
    python benchmarks/quality_large.py --datasets bank77 --llms smollm2-135m-instruct --seeds 0

One fit per (set, LLM, seed), with the library's ``quick`` profile (one co-evolution iteration,
two candidates, ≤ 96 DPO pairs) and answers of up to ``--max-tokens`` tokens, clustering
``concat``; every representation is then scored from that fit's own stages (nothing is
regenerated): the interpretations, the texts and text ⊕ interpretation (text weights 1 and 2),
each embedded by the co-trained embedder, at iterations 0 and 1. Beside each score it records
label-free statistics of that clustering (stability over KMeans seeds, silhouette, agreement with
raw-text KMeans, the on-text guard) from which a rule that needs no labels can pick the
representation. The Random ablation runs for the largest LLM.

Rows (``datasets → name → {n, K, rows → row → [ACC, NMI]}``, the layout of ``quality-cpu.json``;
the mean over the seeds measured, with ``spread → row → [ACC std, NMI std]`` and ``per_seed``):
  KMeans (embeddinggemma-300m), KMeans (all-minilm-l6-v2)    raw texts, untrained, 5 KMeans seeds
  Ours iter-t (<llm>, <representation>)                      t = 0, 1
  Untrained embedder iter-t (<llm>, interpretation | concat)  the answers without embedder training
  Random iter-1 (<llm>, concat)                              the largest LLM only

Stages are kept under benchmarks/.cache/quality-large/<set>-<llm>-s<seed>/ and the result file is
rewritten after every fit, so an interrupted run loses at most the fit in progress.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CACHE as BENCH_CACHE, DATASETS, machine, stratified_indices, write_result  # noqa: E402

CACHE = BENCH_CACHE / "quality-large"
RESULTS = Path(__file__).resolve().parent / "results"
NAME = "quality-cpu-large"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
# docs/results.md's copy of the summary table lies between these lines (--report-only rewrites it)
DOCS_MARKERS = ("<!-- quality-cpu-large summary: python benchmarks/quality_large.py --report-only -->",
                "<!-- end of quality-cpu-large summary -->")
PLOT = f"{NAME}-llm-size.png"
DATASETS_DEFAULT = "reddit,stackexchange,fewnerd,fewrel,bank77,goemo"
KINDS = {"reddit": "topic", "stackexchange": "topic", "arxiv_s2s": "topic", "fewnerd": "type", "fewrel": "type",
         "fewevent": "type", "bank77": "intent", "goemo": "emotion"}
LLMS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
EMBEDDER = "embeddinggemma-300m"
SHORT_NAMES = {"smollm2-135m-instruct": "SmolLM2-135M", "qwen2.5-coder-0.5b-instruct": "Qwen-0.5B",
               "qwen2.5-coder-1.5b-instruct": "Qwen-1.5B", f"KMeans ({EMBEDDER})": "EmbeddingGemma KMeans"}
BASELINE_EMBEDDERS = (EMBEDDER, "all-minilm-l6-v2")
REPRESENTATIONS = ("concat", "interpretation", "text", "concat-w2")
#: The LLMs' parameter counts, for the LLM-size curve's axis (the paper's LLM beside ours).
PARAMETERS = {"smollm2-135m-instruct": 1.35e8, "qwen2.5-coder-0.5b-instruct": 4.94e8,
              "qwen2.5-coder-1.5b-instruct": 1.54e9, "qwen2.5-7b-instruct": 7.6e9}
PAPER_LLM = "qwen2.5-7b-instruct"
#: The LLM-size curve's rows: what auto picks, the library's default, the co-trained embedder on
#: the texts, the paper's final step.
CURVES = {"auto": "Ours auto iter-1 ({llm})", "default": "Ours default iter-1 ({llm})",
          "text": "Ours iter-1 ({llm}, text)", "interpretation": "Ours iter-1 ({llm}, interpretation)"}


def sample(name: str, seed: int = 0) -> tuple[list[str], list[str]]:
    """The set's seeded stratified sample: max(300, 4 × K) texts (the same for every LLM and
    pipeline seed, so rows differ by method only)."""
    rows = [json.loads(line) for line in (DATASETS / f"{name}.jsonl").open()]
    labels = [r["label"] for r in rows]
    keep = stratified_indices(labels, max(300, 4 * len(set(labels))), seed)
    return [rows[i]["text"] for i in keep], [labels[i] for i in keep]


def settings(llm: str, max_tokens: int, embedder_lr: float | None = None, bf16: bool = False) -> dict:
    """``CoEvolver`` keyword arguments of one fit (on top of the library's quick profile);
    ``embedder_lr``: the embedder's learning rate instead of the profile's; ``bf16``: the LLM
    generates and trains in bf16 (the CPU opt-in, coevo_ray/hardware.py), the embedder as before."""
    qwen = "qwen" in llm
    # Qwen's 151k-token vocabulary: batch 1 × 4 accumulation per worker keeps DPO's logits small.
    train_llm = {"per_device_batch_size": 1, "gradient_accumulation_steps": 4} if qwen else {}
    return {"profile": "quick", "llm": llm, "embedder": EMBEDDER, "iterations": 1, "representation": "concat",
            "interpret": {"max_tokens": max_tokens, **({"dtype": "bfloat16"} if bf16 else {})},
            **({"train_embedder": {"learning_rate": embedder_lr}} if embedder_lr else {}),
            "train_llm": {**train_llm, **({"bf16": True} if bf16 else {})},
            "cluster": {"name_clusters": False, "baseline": False}}


def other_rate(args) -> float | None:
    """``--embedder-lr`` where it is not the quick profile's rate for EmbeddingGemma's size."""
    from coevo_ray.models import ModelSize, resolve_model
    from coevo_ray.profiles import embedder_learning_rate

    profile_rate = embedder_learning_rate(ModelSize.of(resolve_model(EMBEDDER)).parameters)
    return args.embedder_lr if args.embedder_lr and args.embedder_lr != profile_rate else None


def variant(args) -> str:
    """The suffix of a fit's cache directory and per-seed key for a non-default setting."""
    return (f"-elr{other_rate(args):g}" if other_rate(args) else "") + ("-bf16" if args.bf16 else "")


def label(args) -> str:
    """The same, as it reads in a row name."""
    return (f", embedder lr {other_rate(args):g}" if other_rate(args) else "") + (", bf16" if args.bf16 else "")


def scores(x: np.ndarray, labels: list[str]) -> dict:
    """ACC / NMI (mean of 5 KMeans seeds) and label-free statistics of the clustering: stability
    (mean ARI between the seeds' partitions), cosine silhouette of seed 0's."""
    from sklearn.metrics import silhouette_score

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.clustering.stability import pairwise_agreement
    from coevo_ray.metrics import evaluate

    k = len(set(labels))
    parts = [FaissKMeans(k, seed=s).fit(x).labels_ for s in range(5)]
    runs = [evaluate(labels, p).as_dict() for p in parts]
    pairwise = pairwise_agreement(parts)
    return {"acc": round(float(np.mean([r["acc"] for r in runs])), 2), "nmi": round(float(np.mean([r["nmi"] for r in runs])), 2),
            "stability_ari": round(float(np.mean(pairwise)), 4),
            # each pair's ARI: the auto rule compares kinds pair by pair (clustering/stability.py)
            "pairwise_ari": [round(float(v), 4) for v in pairwise],
            "silhouette": round(float(silhouette_score(x, parts[0], metric="cosine")), 4), "_labels": parts[0]}


def stage(stages: Path, prefix: str, ablation: bool = False) -> Path:
    """The main fit's stage directory ``<prefix>-<key>`` (not a longer name that starts with the
    prefix). The Random ablation writes to the same run directory, so that it reuses iteration 0,
    and runs after the main fit: where both have the stage, the main fit's finished first and the
    ablation's (``ablation=True``) last."""
    found = [p for p in stages.glob(f"{prefix}-*") if p.name[len(prefix) + 1:].isalnum()]
    if not found:
        raise FileNotFoundError(f"no {prefix} stage under {stages}")
    finished = json.loads((stages.parent / "manifest.json").read_text())["stages"]
    return (max if ablation else min)(found, key=lambda p: finished[p.name]["finished_at"])


def fit_seconds(stages: Path, timings: dict[str, float]) -> float:
    """The fit's compute time: each stage's seconds as the manifest recorded them when it was built
    (a reused stage counts 0 in ``timings_``), so a fit resumed across runs or rescored counts all
    its work; the steps that are not stages (the final clustering), as this run timed them."""
    finished = json.loads((stages.parent / "manifest.json").read_text())["stages"]
    total = 0.0
    for name, seconds in timings.items():
        try:
            total += finished[stage(stages, name).name]["seconds"]
        except FileNotFoundError:
            total += seconds
    return round(total, 1)


def representations(interp: np.ndarray, text: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The kinds ``names`` clustered from one fit's embedded answers and texts: each alone, concat
    (both L2-normalised side by side) and concat-w2 (the text at twice the weight)."""
    from coevo_ray.clustering import l2_normalize

    interp_unit, text_unit = l2_normalize(interp), l2_normalize(text)
    kinds = {"interpretation": interp, "text": text, "concat": np.hstack([interp_unit, text_unit]),
             "concat-w2": np.hstack([interp_unit, 2.0 * text_unit])}
    return {name: kinds[name] for name in names}


def fit_rows(name: str, llm: str, seed: int, texts: list[str], labels: list[str], raw_vectors: np.ndarray,
             baseline_labels: np.ndarray, args) -> dict:
    """One fit, and every representation scored from its stages; ``raw_vectors``: the texts
    embedded by the untrained embedder (the baseline's)."""
    from sklearn.metrics import adjusted_rand_score

    from coevo_ray import CoEvolver
    from coevo_ray.data import paper_preset
    from coevo_ray.tables import column_matrix, greedy_table, read_table

    out = CACHE / f"{name}-{llm}-s{seed}{variant(args)}"
    common = dict(n_clusters=len(set(labels)), seed=seed, output_dir=str(out),
                  **paper_preset(name, settings(llm, args.max_tokens, args.embedder_lr, args.bf16)))
    start = time.perf_counter()
    model = CoEvolver(**common).fit(texts, labels, resume=True)
    stages = out / "stages"
    # every stage reused: a rescore of a finished fit, whose wall time and machine are not this run's
    rescored = not json.loads((out / "summary.json").read_text())["ran_stages"]
    # the fit's own machine: the result file's "machine" is the last run's, and runs move between machines
    result: dict = {"seconds": fit_seconds(stages, model.timings_), "rows": {}, "label_free": {}, "history": [],
                    "wall_s": round(time.perf_counter() - start, 1), "machine": machine(), "rescored": rescored}
    for h in model.history_:
        result["history"].append({k: h.get(k) for k in ("iteration", "acc", "nmi", "parse_fallbacks", "on_text",
                                                        "preferences", "fallback_kinds")})
    for t in (0, 1):
        generated = greedy_table(stage(stages, f"iter{t}-interpret"), ["id", "finish_reason"])
        cut = sum(r == "length" for r in generated.column("finish_reason").to_pylist()) / len(generated)
        embedded = stage(stages, f"iter{t}-embed-candidates" if t == 0 else f"iter{t}-embed-interpretations-final")
        interp = column_matrix(greedy_table(embedded, ["id", "embedding"]), "embedding")
        text = column_matrix(read_table(stage(stages, f"iter{t}-embed-texts")), "embedding")
        reps = representations(interp, text, ("interpretation", "text", "concat", "concat-w2"))
        for rep, x in reps.items():
            s = scores(x, labels)
            row = f"Ours iter-{t} ({llm}, {rep}{label(args)})"
            result["rows"][row] = [s["acc"], s["nmi"]]
            result["label_free"][row] = {"stability_ari": s["stability_ari"], "pairwise_ari": s["pairwise_ari"],
                                         "silhouette": s["silhouette"],
                                         "agreement_with_text_kmeans_ari": round(float(adjusted_rand_score(
                                             baseline_labels, s["_labels"])), 4),
                                         "on_text_gap": model.history_[t]["on_text"]["gap"],
                                         "greedy_cut_share": round(cut, 4)}
    result["rows"].update(untrained_rows(stages, llm, raw_vectors, labels, label(args)))
    if model.history_[-1].get("acc") is not None:  # the fit's own concat score: the same KMeans protocol
        result["fit_concat_acc"] = round(model.history_[-1]["acc"], 2)
    if llm == LLMS[-1] and not args.no_random:
        CoEvolver(**{**common, "prefer": {**common.get("prefer", {}), "rule": "random"}}).fit(
            texts, labels, resume=True)
        interp = column_matrix(greedy_table(stage(stages, "iter1-embed-interpretations-final", ablation=True),
                                            ["id", "embedding"]), "embedding")
        text = column_matrix(read_table(stage(stages, "iter1-embed-texts", ablation=True)), "embedding")
        for rep, x in representations(interp, text, ("interpretation", "text", "concat")).items():
            s = scores(x, labels)
            result["rows"][f"Random iter-1 ({llm}, {rep}{label(args)})"] = [s["acc"], s["nmi"]]
    return result


@functools.lru_cache(maxsize=None)
def untrained_encoder(alias: str):
    """An offline embedder as it ships, and its clustering prompt: loaded once for the baselines
    and every fit's untrained rows."""
    from coevo_ray.embed import load_encoder, model_prompt
    from coevo_ray.models import resolve_model

    path = resolve_model(alias)
    return load_encoder(str(path)), model_prompt(path)


def untrained_rows(stages: Path, llm: str, raw_vectors: np.ndarray, labels: list[str], suffix: str) -> dict:
    """Where a fit's gain or gap comes from, with embedder training taken out (the decomposition of
    ``quality_gap.py``): each iteration's greedy answers embedded by the untrained embedder, alone
    and beside the raw texts. Iteration 0 is what the LLM adds as it is; iteration 1 minus
    iteration 0 is what DPO changed in its answers; the ``Ours`` rows minus these, what training
    the embedder added."""
    from coevo_ray.clustering import l2_normalize
    from coevo_ray.embed import encode
    from coevo_ray.tables import greedy_table

    encoder, prompt = untrained_encoder(EMBEDDER)
    rows = {}
    for t in (0, 1):
        answers = greedy_table(stage(stages, f"iter{t}-interpret"), ["id", "interpretation"])
        interp = encode(encoder, answers.column("interpretation").to_pylist(), prompt=prompt)
        for rep, x in (("interpretation", interp),
                       ("concat", np.hstack([l2_normalize(interp), l2_normalize(raw_vectors)]))):
            s = scores(x, labels)
            rows[f"Untrained embedder iter-{t} ({llm}, {rep}{suffix})"] = [s["acc"], s["nmi"]]
    return rows


def default_representation() -> str:
    """What ``CoEvolver()`` clusters when no representation is named (the default profile's)."""
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.profiles import DEFAULT_PROFILE

    return CoEvolverConfig.from_params(DEFAULT_PROFILE, task="topic: subject", n_clusters=2).representation


def add_auto_rows(fit: dict, raw_text: dict | None) -> None:
    """``Ours auto iter-t (<llm>)``: the row of the kind ``representation="auto"`` clusters — the
    first of ``pipeline.loop.CHOSEN_AMONG`` as stable across the 5 KMeans seeds as the most stable
    kind, within the noise (the library's rule, ``clustering.choose_stable``, on the same seeds and
    KMeans as its default ``cluster.eval_seeds``), read from the fit's own label-free figures;
    ``raw_text``: the set's untrained-embedder figures (``{"row": [ACC, NMI], "pairwise_ari": ...}``).
    A fit measured before each seed pair's ARI was recorded gets an auto row only where its most
    stable kind is the preferred one (then no tie can change the choice). ``Ours default iter-t (<llm>)``: the row of the representation the
    library's defaults cluster."""
    from coevo_ray.clustering import choose_stable
    from coevo_ray.pipeline.loop import CHOSEN_AMONG

    for derived in [r for r in fit["rows"] if r.startswith(("Ours auto ", "Ours default "))]:
        del fit["rows"][derived]  # rebuilt below by the rules of this code (a result file keeps older ones)
    fit.pop("auto_chose", None)
    if raw_text is None:
        return
    default = default_representation()
    # "Ours iter-t (llm, concat)", or with a setting's label: "(llm, concat, bf16)"; not concat-w2
    for row in [r for r in fit["rows"] if r.startswith("Ours iter-") and re.search(r", concat(, [^)]*)?\)$", r)]:
        def derived(name: str) -> str:  # "Ours iter-1 (llm, concat)" -> "Ours <name> iter-1 (llm)"
            return row.replace("Ours ", f"Ours {name} ", 1).replace(", concat", "", 1)

        kinds = {kind: row.replace(", concat", f", {kind}", 1) for kind in CHOSEN_AMONG if kind != "raw-text"}
        if not all(k in fit["label_free"] for k in kinds.values()):
            continue
        rows = {**{kind: fit["rows"][name] for kind, name in kinds.items()}, "raw-text": raw_text["row"]}
        figures = {**{kind: fit["label_free"][name] for kind, name in kinds.items()}, "raw-text": raw_text}
        if all("pairwise_ari" in f for f in figures.values()):
            chosen, _ = choose_stable({kind: np.array(f["pairwise_ari"]) for kind, f in figures.items()},
                                      CHOSEN_AMONG)
        else:  # only the means: decided when the most stable kind is also the preferred one
            means = {kind: f["stability_ari"] for kind, f in figures.items()}
            chosen = max(CHOSEN_AMONG, key=lambda kind: means[kind])
            chosen = chosen if chosen == CHOSEN_AMONG[0] else None
        if chosen is not None:
            auto = derived("auto")
            rows["auto"] = fit["rows"][auto] = rows[chosen]
            fit.setdefault("auto_chose", {})[auto] = chosen
        if default in rows:
            fit["rows"][derived("default")] = rows[default]


def aggregate(entry: dict) -> None:
    """rows = the mean over the seeds measured; spread = their standard deviation."""
    per_seed = entry.get("per_seed", {})
    for fit in per_seed.values():
        add_auto_rows(fit, entry.get("raw_text"))
    names = sorted({row for fit in per_seed.values() for row in fit["rows"]})
    rows, spread = dict(entry.get("baseline_rows", {})), dict(entry.get("baseline_spread", {}))
    for row in names:
        values = np.array([fit["rows"][row] for fit in per_seed.values() if row in fit["rows"]])
        rows[row] = [round(float(v), 2) for v in values.mean(axis=0)]
        spread[row] = [round(float(v), 2) for v in values.std(axis=0)]
        entry.setdefault("seeds_per_row", {})[row] = len(values)
    entry["rows"], entry["spread"] = rows, spread


def llm_row_name(rows: dict, template: str, llm: str) -> str | None:
    """The name of the row ``template`` names for ``llm`` (``{llm}`` filled in): the fp32 fit's,
    else the bf16 one's (a 1.5B fit in fp32 outlasts a session on some machines); None if neither."""
    name = template.format(llm=llm)
    return next((n for n in (name, name[:-1] + ", bf16)") if n in rows), None)


def llm_row(rows: dict, template: str, llm: str) -> list | None:
    """That row's [ACC, NMI]."""
    name = llm_row_name(rows, template, llm)
    return rows[name] if name else None


def summary(result: dict) -> list[str]:
    """Markdown lines: per set and LLM, each kind's ACC after iteration 1 and its gain over
    KMeans (embeddinggemma-300m), the answers alone, and what ``auto`` clustered."""
    cells = {"concat": "Ours iter-1 ({llm}, concat)", "text": "Ours iter-1 ({llm}, text)",
             "interpretations": "Ours iter-1 ({llm}, interpretation)",
             "answers alone": "Untrained embedder iter-0 ({llm}, interpretation)", "auto": CURVES["auto"]}
    lines = ["## Summary", "", "ACC after iteration 1 (Δ over KMeans (embeddinggemma-300m)), the mean over the "
             "seeds measured; answers alone: the LLM's iteration-0 greedy answers embedded by the untrained "
             "embedder (what the LLM adds before any training; recorded from this commit's fits on); auto: what "
             "`representation=\"auto\"` clustered.", "",
             "| set | KMeans (embeddinggemma-300m) | LLM | " + " | ".join(cells) + " |", "|---" * (3 + len(cells)) + "|"]
    means: dict = {}
    for name, entry in result["datasets"].items():
        base = entry["rows"].get(f"KMeans ({EMBEDDER})")
        if base is None:
            continue
        for llm in LLMS:
            values = {kind: llm_row(entry["rows"], row, llm) for kind, row in cells.items()}
            if not any(values.values()):
                continue
            auto = llm_row_name(entry["rows"], cells["auto"], llm)
            chosen = sorted({fit["auto_chose"][auto] for fit in entry.get("per_seed", {}).values()
                             if auto in fit.get("auto_chose", {})})
            text = {kind: f"{v[0]} ({v[0] - base[0]:+.2f})" if v else "–" for kind, v in values.items()}
            if auto and chosen:
                text["auto"] += f" {'/'.join(chosen)}"
            bf16 = ", bf16" if auto and auto.endswith(", bf16)") else ""
            lines.append(f"| {name} | {base[0]} ± {entry['spread'][f'KMeans ({EMBEDDER})'][0]} | {llm}{bf16} | "
                         + " | ".join(text.values()) + " |")
            if values["auto"]:
                means.setdefault(llm, []).append((values["auto"][0], base[0]))
    lines += ["", "Mean ACC of `auto` (the default) and of KMeans (embeddinggemma-300m) over the sets each LLM has: "
              + "; ".join(f"{llm} {np.mean([a for a, _ in v]):.2f} vs {np.mean([b for _, b in v]):.2f} ({len(v)} sets)"
                          for llm, v in means.items()) + "."]
    kinds = {"concat": "concat", "text": "text", "interpretations": "interpretation"}
    ablation = []
    for name, entry in result["datasets"].items():
        for llm in LLMS:
            # Random against the density-guided fits of the seeds it ran with, not every seed's mean.
            pairs = {}
            for kind, rep in kinds.items():
                matched = [(random_row[0], ours[0]) for fit in entry.get("per_seed", {}).values()
                           if (random_row := llm_row(fit["rows"], f"Random iter-1 ({{llm}}, {rep})", llm))
                           and (ours := llm_row(fit["rows"], f"Ours iter-1 ({{llm}}, {rep})", llm))]
                if matched:
                    pairs[kind] = tuple(round(float(np.mean(column)), 2) for column in zip(*matched))
            if pairs:
                ablation.append(f"{name} ({llm}): " + ", ".join(f"{kind} {r} vs {o} ({r - o:+.2f})"
                                                                for kind, (r, o) in pairs.items()))
    if ablation:
        lines += ["", "Random (the paper's ablation: the preferred answer drawn at random, not the one nearest "
                  "its centroids) after iteration 1, against the density-guided fit of the same seed: " + "; ".join(ablation) + "."]
    return lines + [""]


def docs_table(result: dict) -> list[str]:
    """The summary's table as docs/results.md shows it: the LLMs' and the baseline's short names."""
    rows = []
    for line in (line for line in summary(result) if line.startswith("|")):
        cells = line.split(" | ")
        for i, cell in enumerate(cells):
            llm, bf16 = cell.removesuffix(", bf16"), cell.endswith(", bf16")
            if llm in SHORT_NAMES:
                cells[i] = SHORT_NAMES[llm] + (" (bf16)" if bf16 else "")
        rows.append(" | ".join(cells))
    return rows


def sync_docs(result: dict, check: bool = False) -> bool:
    """Write the summary table into docs/results.md between ``DOCS_MARKERS``; ``check``: only say
    whether it is already there. One source for the figures: the result file."""
    text = DOCS.read_text()
    start, end = (text.index(m) for m in DOCS_MARKERS)
    head = start + len(DOCS_MARKERS[0])
    current = text[head:end].strip("\n")
    wanted = "\n".join(docs_table(result))
    if not check and current != wanted:
        DOCS.write_text(text[:head] + "\n\n" + wanted + "\n\n" + text[end:])
    return current == wanted


def size_curve(result: dict) -> dict:
    """Per set kind: the mean ACC gain over KMeans (embeddinggemma-300m) at iteration 1 of each
    curve's row and LLM, over the kind's sets that have it (``rows → curve → llm → [gain, sets]``);
    ``paper-7b``: the paper's Ours iter-1 over its KMeans on the same sets (Qwen2.5-7B, e5-large,
    full sets; benchmarks/quality.py's PAPER); ``noise``: the mean KMeans-seed spread of
    EmbeddingGemma KMeans on those sets."""
    from quality import PAPER

    gains: dict = {}
    noise: dict = {}
    for name, entry in result["datasets"].items():
        base = entry["rows"].get(f"KMeans ({EMBEDDER})")
        if base is None:
            continue
        kind, measured = gains.setdefault(entry["kind"], {}), False
        for llm in LLMS:
            for curve, row in CURVES.items():
                acc = llm_row(entry["rows"], row, llm)
                if acc is not None:
                    kind.setdefault(curve, {}).setdefault(llm, []).append(acc[0] - base[0])
                    measured = True
        if measured:
            noise.setdefault(entry["kind"], []).append(entry["spread"][f"KMeans ({EMBEDDER})"][0])
            if name in PAPER:
                kind.setdefault("paper-7b", {}).setdefault(PAPER_LLM, []).append(
                    PAPER[name]["Ours iter-1"][0] - PAPER[name]["KMeans"][0])
    return {kind: {"noise": round(float(np.mean(noise[kind])), 2),
                   "rows": {curve: {llm: [round(float(np.mean(g)), 2), len(g)] for llm, g in by_llm.items()}
                            for curve, by_llm in curves.items()}}
            for kind, curves in gains.items() if kind in noise}


def plot_size_curve(curve: dict, path: Path) -> None:
    """One panel per set kind: ACC gain over EmbeddingGemma KMeans against the LLM's parameters,
    the band of that baseline's KMeans-seed spread around 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted(curve)
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 3.4), sharey=True, squeeze=False)
    ticks = [PARAMETERS[m] for m in (*LLMS, PAPER_LLM)]
    # One colour and marker per row in every panel (a panel lacks the rows its sets did not give);
    # "default" hollow and larger: it is drawn over "auto" when the default is auto.
    styles = {name: dict(color=f"C{i}", marker="o") for i, name in enumerate((*CURVES, "paper-7b"))}
    styles["default"].update(marker="s", markersize=9, fillstyle="none")
    styles["paper-7b"].update(marker="*", markersize=11, linestyle="none")
    handles = {}
    for ax, kind in zip(axes[0], kinds):
        for name, by_llm in curve[kind]["rows"].items():
            llms = [m for m in (*LLMS, PAPER_LLM) if m in by_llm]
            [handles[name]] = ax.plot([PARAMETERS[m] for m in llms], [by_llm[m][0] for m in llms], label=name,
                                      **styles[name])
        ax.axhspan(-curve[kind]["noise"], curve[kind]["noise"], color="grey", alpha=0.2, linewidth=0)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xticks(ticks, ["135M", "0.5B", "1.5B", "7B"])
        ax.minorticks_off()
        ax.set_title(kind)
        ax.set_xlabel("LLM parameters")
    axes[0][0].set_ylabel("Δ ACC vs EmbeddingGemma KMeans")
    axes[0][-1].legend([handles[n] for n in styles if n in handles], [n for n in styles if n in handles], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict) -> str:
    lines = [f"# {NAME}", "", "ACC / NMI, mean over the pipeline seeds measured (± ACC spread over them); KMeans rows: "
             "raw texts with the untrained embedder, mean (± std) over 5 KMeans seeds. Ours: EmbeddingGemma-300m "
             "co-trained with the LLM named, at the quick profile's embedder rate for its size (1e-6) unless a row names "
             "another; a row named bf16: the LLM generated and trained in bf16 (`--bf16`); Δ = ACC gain over KMeans "
             "(embeddinggemma-300m).", "", *summary(result)]
    for name, entry in result["datasets"].items():
        base = entry["rows"].get(f"KMeans ({EMBEDDER})", [0, 0])[0]
        lines += [f"## {name} ({KINDS.get(name, '?')}, n = {entry['n']}, K = {entry['k']})", "",
                  "| row | ACC / NMI | ± ACC | Δ ACC | seeds |", "|---|---|---|---|---|"]
        for row, (acc, nmi) in entry["rows"].items():
            spread = entry["spread"].get(row, [None])[0]
            lines.append(f"| {row} | {acc} / {nmi} | {spread if spread is not None else '–'} | {acc - base:+.2f} | "
                         f"{entry.get('seeds_per_row', {}).get(row, '5 KMeans')} |")
        lines.append("")
    curve = result.get("llm_size_curve", {})
    if curve:
        lines += ["## LLM size", "", f"![ACC gain against LLM size]({PLOT})", "",
                  "Mean ACC gain over KMeans (embeddinggemma-300m) at iteration 1 per set kind, over the kind's sets "
                  "measured (their number in brackets; an LLM's bf16 row where it has no fp32 one); noise: that "
                  "baseline's mean KMeans-seed spread on them; "
                  "paper-7b: the paper's Ours iter-1 over its own KMeans on the same sets (Qwen2.5-7B-Instruct, "
                  "e5-large, full sets).", "",
                  "| kind | noise | row | " + " | ".join((*LLMS, PAPER_LLM)) + " |",
                  "|---|---|---|" + "---|" * (len(LLMS) + 1)]
        for kind, entry in curve.items():
            for name, by_llm in entry["rows"].items():
                cells = [f"{by_llm[m][0]:+.2f} ({by_llm[m][1]})" if m in by_llm else "–" for m in (*LLMS, PAPER_LLM)]
                lines.append(f"| {kind} | ±{entry['noise']} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Machine: {json.dumps(result['machine'])}", "", "Commands (stages resume; a run may cover part of "
              "the grid):", *[f"- `{c}`" for c in result.get("commands", [])]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=DATASETS_DEFAULT)
    p.add_argument("--llms", default=",".join(LLMS))
    p.add_argument("--seeds", default="0,1,2", help="pipeline seeds")
    p.add_argument("--max-tokens", type=int, default=128,
                   help="answer length: long enough that few greedy answers are cut (the result records the share)")
    p.add_argument("--no-random", action="store_true", help="skip the Random ablation of the largest LLM")
    p.add_argument("--baselines-only", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the rows, LLM-size curve, plot, markdown and docs/results.md's summary table "
                        "from the result file, fitting nothing")
    p.add_argument("--check-docs", action="store_true",
                   help="exit 1 unless docs/results.md's summary table is the result file's")
    p.add_argument("--bf16", action="store_true",
                   help="the LLM generates and trains in bf16 (rows and cache named with it): several times "
                        "faster where the CPU has bf16 matrix units")
    p.add_argument("--embedder-lr", type=float, default=None,
                   help="the embedder's learning rate instead of the quick profile's for its size "
                        "(rows named with it where it differs)")
    args = p.parse_args(argv)
    args.llms = [m for m in args.llms.split(",") if m]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = RESULTS / f"{NAME}.json"
    result = json.loads(path.read_text()) if path.exists() else {"datasets": {}, "commands": []}
    command = "python benchmarks/quality_large.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if command not in result["commands"] and not args.report_only:
        result["commands"].append(command)
    result.update({"profile": "cpu-large", "embedder": EMBEDDER, "llms": list(LLMS), "kinds": KINDS})
    if not args.report_only:  # the machine and settings of the fits
        result.update({"machine": machine(), "settings": {llm: settings(llm, args.max_tokens) for llm in LLMS}})

    def save() -> None:
        result["llm_size_curve"] = size_curve(result)
        if result["llm_size_curve"]:
            plot_size_curve(result["llm_size_curve"], RESULTS / PLOT)
        write_result(path.name, result)
        (RESULTS / f"{NAME}.md").write_text(markdown(result))

    if args.check_docs:
        if not sync_docs(result, check=True):
            print(f"{DOCS.relative_to(DOCS.parents[1])}'s cpu-large table is out of date: run "
                  "python benchmarks/quality_large.py --report-only")
            return 1
        return 0
    if args.report_only:
        for entry in result["datasets"].values():
            aggregate(entry)
        save()
        sync_docs(result)
        return 0

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.embed import encode
    from coevo_ray.metrics import evaluate_kmeans_protocol

    for name in args.datasets.split(","):
        texts, labels = sample(name)
        entry = result["datasets"].setdefault(name, {})
        entry.update({"n": len(texts), "k": len(set(labels)), "kind": KINDS.get(name)})
        vectors = {}
        for alias in BASELINE_EMBEDDERS:
            encoder, prompt = untrained_encoder(alias)
            vectors[alias] = encode(encoder, texts, prompt=prompt)
            s = evaluate_kmeans_protocol(vectors[alias], labels, len(set(labels)))
            entry.setdefault("baseline_rows", {})[f"KMeans ({alias})"] = [round(s["acc"], 2), round(s["nmi"], 2)]
            entry.setdefault("baseline_spread", {})[f"KMeans ({alias})"] = [round(s["acc_std"], 2), round(s["nmi_std"], 2)]
        baseline_labels = FaissKMeans(len(set(labels)), seed=0).fit(vectors[EMBEDDER]).labels_
        raw = scores(vectors[EMBEDDER], labels)  # the raw texts as representation="auto" weighs them
        entry["raw_text"] = {"row": [raw["acc"], raw["nmi"]], "stability_ari": raw["stability_ari"],
                             "pairwise_ari": raw["pairwise_ari"]}
        aggregate(entry)
        save()
        if args.baselines_only:
            continue
        for llm in args.llms:
            for seed in (int(s) for s in args.seeds.split(",")):
                logging.info("quality_large: %s, %s, seed %d", name, llm, seed)
                key = f"{llm}-s{seed}{variant(args)}"
                fit = fit_rows(name, llm, seed, texts, labels, vectors[EMBEDDER], baseline_labels, args)
                earlier = entry.get("per_seed", {}).get(key, {})
                if fit.pop("rescored") and earlier.get("wall_s"):
                    # every stage reused: the wall time and machine stay those of the run that built them
                    fit.update({k: earlier[k] for k in ("wall_s", "machine") if k in earlier},
                               rescored_wall_s=fit["wall_s"])
                entry.setdefault("per_seed", {})[key] = fit
                aggregate(entry)
                save()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
