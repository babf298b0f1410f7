"""n_clusters="auto": estimated vs. true K (kNN-graph eigengap, clustering/auto_k.py).

On each dataset: a seeded stratified sample embedded with the default embedder (raw texts), and —
when benchmarks/prompt_variants.py has cached them — the greedy interpretations of its sample.

    python benchmarks/auto_k.py [--datasets bank77,clinc_domain,goemo] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CACHE, DATASETS, labelled_sample, machine, stratified_indices, write_result  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="bank77,clinc_domain,goemo,massive_domain,reddit")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--k-max", type=int, default=200)
    args = p.parse_args()

    from coevo_ray.clustering import estimate_n_clusters
    from coevo_ray.embed import encode, load_encoder
    from coevo_ray.models import resolve_model

    encoder = load_encoder(str(resolve_model("all-minilm-l6-v2")), device="cpu")
    result = {"machine": machine(), "method": "eigengap of the normalised Laplacian of a 10-NN cosine graph (<= 2000 points)",
              "datasets": {}}
    for name in args.datasets.split(","):
        rows = [json.loads(line) for line in (DATASETS / f"{name}.jsonl").open()]
        keep = stratified_indices([r["label"] for r in rows], args.n, 0)
        texts, labels = [rows[i]["text"] for i in keep], [rows[i]["label"] for i in keep]
        start = time.perf_counter()
        k, scores = estimate_n_clusters(encode(encoder, texts), 2, args.k_max, seed=0)
        entry = {"texts": {"n": len(texts), "true_k": len(set(labels)), "estimated_k": k,
                           "seconds": round(time.perf_counter() - start, 1)}}
        for cached in sorted((CACHE / "prompt_variants").glob(f"{name}-n*-s0-*-t*.json")):
            n = int(cached.name.split("-n")[1].split("-")[0])
            gen = json.loads(cached.read_text())
            _, vlabels = labelled_sample(name, n, 0)
            k, _ = estimate_n_clusters(encode(encoder, gen["interpretation"]), 2, min(args.k_max, n - 1), seed=0)
            entry[cached.stem.split("-s0-")[1]] = {"n": n, "true_k": len(set(vlabels)), "estimated_k": k}
        result["datasets"][name] = entry
        print(name, json.dumps({key: {x: v[x] for x in ("n", "true_k", "estimated_k")} for key, v in entry.items()}),
              flush=True)
    write_result("auto_k.json", result)


if __name__ == "__main__":
    main()
