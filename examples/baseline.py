#!/usr/bin/env python
"""The paper's "E5-KMeans" row with our embedder: embed the raw texts, KMeans (5 seeds), print
ACC / NMI / ARI (mean ± std, percent).

    python examples/baseline.py --input ../shared/datasets/bank77.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.add_argument("--embedder", default="all-minilm-l6-v2")
    p.add_argument("--k", type=int, default=None, help="default: number of distinct labels")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)

    from coevo_ray.data import load_corpus
    from coevo_ray.embed import encode, load_encoder, model_prompt
    from coevo_ray.metrics import evaluate_kmeans_protocol
    from coevo_ray.models import resolve_model

    corpus = load_corpus(args.input, text_field=args.text_field, label_field=args.label_field)
    k = args.k or corpus.n_classes
    start = time.perf_counter()
    path = resolve_model(args.embedder)
    emb = encode(load_encoder(path), corpus.model_texts(), show_progress=True, prompt=model_prompt(path))
    t_embed = time.perf_counter() - start
    scores = evaluate_kmeans_protocol(emb, corpus.labels, k)
    result = {"input": args.input, "n": len(corpus), "k": k, "embedder": args.embedder,
              "embed_s": round(t_embed, 1), **{key: round(v, 2) for key, v in scores.items()}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.input}: {len(corpus)} texts, K={k}, {args.embedder}: "
              f"ACC {scores['acc']:.2f}±{scores['acc_std']:.2f} NMI {scores['nmi']:.2f}±{scores['nmi_std']:.2f} "
              f"ARI {scores['ari']:.2f}±{scores['ari_std']:.2f} (KMeans mean of 5 seeds; embedding {t_embed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
