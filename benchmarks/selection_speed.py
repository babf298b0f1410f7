#!/usr/bin/env python
"""The density-guided selection step against the work around it, in one process:

  * R KMeans runs + averaged nearest-centroid distances for N texts × C candidates, with
    k-means++ seeding (scikit-learn's, the default) and with FAISS's random seeding;
  * the reference: one embedding pass over the N texts with the default embedder;
  * one FAISS KMeans vs one scikit-learn KMeans on the same vectors.

Candidate 0 is each text's real embedding; candidates 1..C-1 are that vector plus Gaussian noise
(the cost does not depend on what the vectors say). Results: benchmarks/results/selection_speed.json.

    .venv/bin/python benchmarks/selection_speed.py --dataset bank77.jsonl --runs 100 --candidates 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, machine, perturbed_candidates, write_result  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="bank77.jsonl")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--embedder", default="all-minilm-l6-v2")
    args = p.parse_args(argv)

    import numpy as np
    from sklearn.cluster import KMeans

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.data import load_corpus
    from coevo_ray.embed import encode, load_encoder
    from coevo_ray.models import resolve_model
    from coevo_ray.prefer import averaged_nearest_centroid_distances

    corpus = load_corpus(DATASETS / args.dataset, label_field="label")
    k = corpus.n_classes
    encoder = load_encoder(str(resolve_model(args.embedder)), device="cpu")
    t0 = time.perf_counter()
    greedy = encode(encoder, corpus.texts)
    embed_s = time.perf_counter() - t0

    cands = perturbed_candidates(greedy, args.candidates)

    timings = {}
    winners = {}
    for init in ("k-means++", "random"):
        t0 = time.perf_counter()
        dist = averaged_nearest_centroid_distances(greedy, cands, k, n_runs=args.runs, init=init)
        timings[init] = time.perf_counter() - t0
        winners[init] = dist.argmin(axis=1)
        print(init, round(timings[init], 1), "s", flush=True)

    t0 = time.perf_counter()
    FaissKMeans(k, seed=0, init="random").fit(greedy)
    faiss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    KMeans(k, n_init=1, random_state=0, max_iter=25).fit(greedy)
    sklearn_s = time.perf_counter() - t0

    n, c = cands.shape[:2]
    result = {
        "machine": machine(),
        "settings": {"dataset": args.dataset, "n_texts": n, "candidates": c, "clusters": k, "runs": args.runs,
                     "dim": int(greedy.shape[1]), "embedder": args.embedder},
        "embedding_pass_s": round(embed_s, 2),
        "selection_s": {name: round(v, 2) for name, v in timings.items()},
        "one_kmeans_s": {"faiss_random_init": round(faiss_s, 3), "sklearn_kmeans++_n_init1": round(sklearn_s, 3)},
        "same_winners_kmeans++_vs_random": float(np.mean(winners["k-means++"] == winners["random"])),
        "ratios": {
            "selection_kmeans++_vs_embedding_pass": round(timings["k-means++"] / embed_s, 2),
            "selection_random_vs_embedding_pass": round(timings["random"] / embed_s, 2),
            "kmeans++_vs_random_selection": round(timings["k-means++"] / timings["random"], 2),
            "sklearn_vs_faiss_one_kmeans": round(sklearn_s / faiss_s, 2),
        },
    }
    write_result("selection_speed.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
