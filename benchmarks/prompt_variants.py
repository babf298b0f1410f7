"""Which prompt keeps a small CPU LLM's interpretations on the text? (issue 9)

For each dataset × LLM × prompt variant: greedy interpretations of a seeded sample, embedded with
the untrained embedder, clustered (KMeans, mean of 5 seeds). Rows as in issue 9's table: raw
texts, interpretations, keywords line only, text ⊕ interpretation (weight 1 = the Keyphrase
baseline, and weight 2), plus the on-text guard (matched − shuffled cosine) and parse fallbacks.
Then, for the best variant of each LLM on the first dataset, the same rows after iteration 0's
embedder training (InfoNCE + dropout pair + DEC on Ray Train, the library's defaults).

    python benchmarks/prompt_variants.py                      # everything (~1.5 h on 2 cores)
    python benchmarks/prompt_variants.py --llms smollm2-135m-instruct --n 100

Generation runs in one subprocess per (LLM, variant) — one vLLM engine per process — and is
cached under benchmarks/.cache/, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CACHE as BENCH_CACHE, labelled_sample, machine, write_result  # noqa: E402

CACHE = BENCH_CACHE / "prompt_variants"
#: variant → (prompt style, structured output: False, True (the full answer shape) or "sized"
#: (the shape the library uses: shrunk to fit max_tokens, prompts.interpretation_regex))
VARIANTS = {"paper": ("paper", False), "guided": ("guided", False), "exemplars": ("exemplars", False),
            "structured": ("guided", True), "structured-concise": ("concise", True),
            "structured-sized": ("guided", "sized")}


def cache_path(dataset: str, llm: str, variant: str, args) -> Path:
    return CACHE / f"{dataset}-n{args.n}-s{args.seed}-{llm}-{variant}-t{args.max_tokens}.json"


def generate(llm: str, variant: str, args) -> None:
    """Subprocess body: one engine, every dataset still missing from the cache."""
    from coevo_ray.data import PAPER_TASKS
    from coevo_ray.interpret import EngineSpec, GenerationSettings, InterpretUDF, exemplar_texts
    from coevo_ray.interpret.prompts import INTERPRETATION_REGEX, TaskDescription, interpretation_regex, render_prompt
    from coevo_ray.models import resolve_model

    style, structured = VARIANTS[variant]
    regex = interpretation_regex(args.max_tokens) if structured == "sized" else INTERPRETATION_REGEX
    spec = EngineSpec(model_dir=str(resolve_model(llm)), structured_regex=regex if structured else None)
    udf = None
    for dataset in args.datasets:
        out = cache_path(dataset, llm, variant, args)
        if out.exists():
            continue
        texts, _ = labelled_sample(dataset, args.n, args.seed)
        settings = GenerationSettings(task=PAPER_TASKS[dataset], prompt_style=style, temperatures=(0.0,),
                                      max_tokens=args.max_tokens, seed=args.seed,
                                      exemplars=exemplar_texts(texts, 8, args.seed) if style == "exemplars" else ())
        if udf is None:
            udf = InterpretUDF(spec, settings)
        udf.settings = settings
        start = time.perf_counter()
        rows = udf({"id": np.arange(len(texts)), "text": np.array(texts, dtype=object)})
        seconds = time.perf_counter() - start
        tokens = sum(len(udf.engine.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rows["raw"])
        prompt_tokens = len(udf.engine.tokenizer(render_prompt(udf.engine.tokenizer, texts[0], TaskDescription.parse(
            settings.task), style, settings.exemplars), add_special_tokens=False)["input_ids"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: rows[k] for k in ("raw", "interpretation", "keywords", "fallback",
                                                         "finish_reason")}
                                  | {"seconds": seconds, "output_tokens": tokens, "prompt_tokens_first_text": prompt_tokens}))
        print(f"{dataset} {llm} {variant}: {len(texts)} texts in {seconds:.0f} s", flush=True)


def reparsed(gen: dict, variant: str, texts) -> dict:
    """The cached raw answers parsed by the current parser (fallback rules change; answers don't)."""
    from coevo_ray.interpret import parse_interpretation
    from coevo_ray.interpret.prompts import worked_example

    example = worked_example(VARIANTS[variant][0])
    parsed = [parse_interpretation(a, t, example) for a, t in zip(gen["raw"], texts)]
    return {**gen, "interpretation": [p.text for p in parsed], "keywords": [p.keywords for p in parsed],
            "fallback": [p.fallback or "" for p in parsed]}


def rows_for(encoder, texts, labels, text_emb, gen) -> dict:
    from coevo_ray.clustering import l2_normalize
    from coevo_ray.embed import encode
    from coevo_ray.interpret.parsing import copied_words
    from coevo_ray.interpret.prompts import worked_example
    from coevo_ray.metrics import evaluate_kmeans_protocol, on_text_similarity

    k = len(set(labels))
    interp = encode(encoder, gen["interpretation"])
    keywords = encode(encoder, [", ".join(kw) or t for kw, t in zip(gen["keywords"], texts)])

    def score(x):
        s = evaluate_kmeans_protocol(x, labels, k)
        return {"acc": round(s["acc"], 2), "nmi": round(s["nmi"], 2)}

    concat = lambda w: np.hstack([l2_normalize(interp), w * l2_normalize(text_emb)])  # noqa: E731
    return {"interpretations": score(interp), "keywords_only": score(keywords),
            "text+interpretation": score(concat(1.0)), "text+interpretation_w2": score(concat(2.0)),
            "on_text": on_text_similarity(text_emb, interp, seed=0),
            "parse_fallbacks": sum(1 for f in gen["fallback"] if f),
            "cut_by_max_tokens": sum(1 for f in gen.get("finish_reason", []) if f == "length") if "finish_reason" in gen else None,
            "example_copied": sum(1 for a, t in zip(gen["raw"], texts)
                                  if copied_words(a, worked_example("guided"), t)),
            "output_tokens_per_text": round(gen["output_tokens"] / len(texts), 1),
            "prompt_tokens_first_text": gen.get("prompt_tokens_first_text"),
            "generation_s": round(gen["seconds"], 1)}


def train_then_rows(model_dir: str, texts, labels, gen, text_emb_fn) -> dict:
    """Iteration 0's embedder training on (text, greedy interpretation), then the same rows."""
    import tempfile

    import ray

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.embed import encode, load_encoder
    from coevo_ray.runtime import ensure_ray
    from coevo_ray.train_embedder import EmbedderTrainConfig, train_embedder

    ensure_ray()
    cfg = EmbedderTrainConfig()
    before = encode(load_encoder(model_dir, device="cpu"), gen["interpretation"])
    centroids = FaissKMeans(min(cfg.dec_clusters, len(texts) // 2), seed=0, normalize=False).fit(before).cluster_centers_
    pairs = ray.data.from_items([{"id": i, "text": t, "interpretation": s}
                                 for i, (t, s) in enumerate(zip(texts, gen["interpretation"]))])
    out = Path(tempfile.mkdtemp(prefix="coevo-bench-embedder-"))
    start = time.perf_counter()
    trained, _ = train_embedder(model_dir, pairs, out, cfg, centroids=centroids)
    seconds = time.perf_counter() - start
    encoder = load_encoder(str(trained), device="cpu")
    rows = rows_for(encoder, texts, labels, text_emb_fn(encoder), gen)
    rows["raw_texts"] = _score_texts(text_emb_fn(encoder), labels)
    rows["embedder_training_s"] = round(seconds, 1)
    return rows


def _score_texts(text_emb, labels) -> dict:
    from coevo_ray.metrics import evaluate_kmeans_protocol

    s = evaluate_kmeans_protocol(text_emb, labels, len(set(labels)))
    return {"acc": round(s["acc"], 2), "nmi": round(s["nmi"], 2)}


def markdown(result: dict) -> str:
    lines = []
    for dataset, by_llm in result["datasets"].items():
        lines += [f"\n### {dataset} (n={result['n']}, K={by_llm['k']})\n",
                  f"raw texts: ACC {by_llm['raw_texts']['acc']} / NMI {by_llm['raw_texts']['nmi']}\n",
                  "| LLM | variant | interpretations | keywords only | text ⊕ interp. | text ⊕ interp. (w=2) | on-text gap "
                  "| fallbacks | cut by max_tokens | example words copied | tokens/text | prompt tokens |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for llm, variants in by_llm["llms"].items():
            for variant, r in variants.items():
                cells = [f"{r[k]['acc']} / {r[k]['nmi']}" for k in
                         ("interpretations", "keywords_only", "text+interpretation", "text+interpretation_w2")]
                lines.append(f"| {llm} | {variant} | " + " | ".join(cells) +
                             f" | {r['on_text']['gap']} | {r['parse_fallbacks']} | {r.get('cut_by_max_tokens') if r.get('cut_by_max_tokens') is not None else ''} "
                             f"| {r.get('example_copied', '')} "
                             f"| {r['output_tokens_per_text']} | {r.get('prompt_tokens_first_text') or ''} |")
    trained = result.get("after_embedder_training", {})
    if trained:
        lines += ["\n### After iteration 0's embedder training (best variant per LLM, library defaults)\n",
                  "| LLM | dataset | variant | raw texts | interpretations | keywords only | text ⊕ interp. "
                  "| text ⊕ interp. (w=2) | training s |", "|---|---|---|---|---|---|---|---|---|"]
        for llm, r in trained.items():
            cells = [f"{r[k]['acc']} / {r[k]['nmi']}" for k in
                     ("raw_texts", "interpretations", "keywords_only", "text+interpretation", "text+interpretation_w2")]
            lines.append(f"| {llm} | {r['dataset']} | {r['variant']} | " + " | ".join(cells) +
                         f" | {r['embedder_training_s']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="bank77,clinc_domain,goemo")
    p.add_argument("--llms", default="smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--n", type=int, default=200, help="texts per dataset (seeded random sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=72, help="as in issue 9's measurement")
    p.add_argument("--embedder", default="all-minilm-l6-v2")
    p.add_argument("--no-train", action="store_true", help="skip the embedder-training rows")
    p.add_argument("--result", default="prompt_variants", help="name of the result files in benchmarks/results/")
    p.add_argument("--generate", nargs=2, metavar=("LLM", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.datasets = args.datasets.split(",")
    if args.generate:
        return generate(*args.generate, args)

    llms, variants = args.llms.split(","), args.variants.split(",")
    for llm in llms:
        for variant in variants:
            if not all(cache_path(d, llm, variant, args).exists() for d in args.datasets):
                cmd = [sys.executable, __file__, "--generate", llm, variant, "--datasets", ",".join(args.datasets),
                       "--n", str(args.n), "--seed", str(args.seed), "--max-tokens", str(args.max_tokens)]
                subprocess.run(cmd, check=True)

    from coevo_ray.embed import encode, load_encoder
    from coevo_ray.models import resolve_model

    model_dir = str(resolve_model(args.embedder))
    encoder = load_encoder(model_dir, device="cpu")
    result = {"machine": machine(), "n": args.n, "seed": args.seed, "max_tokens": args.max_tokens,
              "embedder": args.embedder, "generation": "vLLM fp32, greedy, repetition_penalty 1.0",
              "kmeans": "mean of 5 seeds", "datasets": {}}
    for dataset in args.datasets:
        texts, labels = labelled_sample(dataset, args.n, args.seed)
        text_emb = encode(encoder, texts)
        entry = {"k": len(set(labels)), "raw_texts": _score_texts(text_emb, labels), "llms": {}}
        for llm in llms:
            entry["llms"][llm] = {v: rows_for(encoder, texts, labels, text_emb, reparsed(
                                      json.loads(cache_path(dataset, llm, v, args).read_text()), v, texts))
                                  for v in variants}
        result["datasets"][dataset] = entry
        print(markdown({"n": args.n, "datasets": {dataset: entry}}), flush=True)

    if not args.no_train:
        dataset = args.datasets[0]
        texts, labels = labelled_sample(dataset, args.n, args.seed)
        result["after_embedder_training"] = {}
        for llm in llms:
            variants_here = result["datasets"][dataset]["llms"][llm]
            best = max(variants_here, key=lambda v: variants_here[v]["interpretations"]["acc"])
            gen = reparsed(json.loads(cache_path(dataset, llm, best, args).read_text()), best, texts)
            rows = train_then_rows(model_dir, texts, labels, gen, lambda enc: encode(enc, texts))
            result["after_embedder_training"][llm] = {"dataset": dataset, "variant": best, **rows}
            print(llm, best, json.dumps(rows), flush=True)

    result["command"] = "python benchmarks/prompt_variants.py " + " ".join(sys.argv[1:])
    write_result(f"{args.result}.json", result)
    (Path(__file__).resolve().parent / "results" / f"{args.result}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
