"""``coevo-ray``: cluster a corpus from the command line.

With no arguments it clusters the bundled demo (240 customer-support requests, 10 intents) with
the offline default models and the ``quick`` profile (one co-evolution iteration sized for a
laptop CPU); ``--profile paper`` runs the paper's settings. As a Ray job, through the thin
wrapper in the repository:

    ray job submit --working-dir . -- python examples/cluster.py --output-dir /tmp/coevo-demo
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from coevo_ray.choices import Backend, PromptStyle, Representation, options
from coevo_ray.config import EmbedConfig
from coevo_ray.profiles import DEFAULT_PROFILE, PROFILES


def default_input() -> str:
    return str(resources.files("coevo_ray") / "demo" / "support_requests.jsonl")


def default_output_dir(source: str | None, method: str) -> str:
    """``runs/<input name>`` (``runs/demo`` for the bundled demo; ``-kmeans`` for that method), so
    runs on different inputs never share a directory: ``data/bank77.jsonl`` → ``runs/bank77``, a
    directory or glob → its last fixed path part, ``s3://bucket/corpus/`` → ``runs/corpus``."""
    if source is None:
        name = "demo"
    else:
        parts = [p for p in source.rstrip("/").replace("\\", "/").split("/") if p and not any(c in p for c in "*?[")]
        name = Path(parts[-1]).stem if parts else "input"
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "input"
    return str(Path("runs") / (name + ("-kmeans" if method == "kmeans" else "")))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="coevo-ray", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=None,
                   help="JSON Lines, CSV, Parquet or text: a file, or read by Ray Data on the cluster a directory, "
                        "a glob ('data/*.jsonl') or a URI (s3://...) (default: bundled demo)")
    p.add_argument("--method", default="coevolve", choices=("coevolve", "kmeans"),
                   help="kmeans: the embedder + KMeans alone, for any corpus size: Ray Data reads, embeds, "
                        "assigns and writes Parquet shards; the centres are fitted on --kmeans-sample rows")
    p.add_argument("--kmeans-sample", type=int, default=100_000,
                   help="with --method kmeans: rows the KMeans centres are fitted on (all when fewer)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default=None, help="column with ground truth; enables ACC/NMI/ARI")
    p.add_argument("--task", default=None, help='task description "<task>: <standard>", e.g. "intent: user intent"')
    p.add_argument("--k", default=None, help="number of clusters, or 'auto' (default: the number of labels)")
    p.add_argument("--llm", default=None, help="model alias, local directory or HF id (default: the profile's, "
                   "else smollm2-135m-instruct)")
    p.add_argument("--embedder", default=None, help="model alias, local directory or HF id (default: the profile's, "
                   "else all-minilm-l6-v2)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=tuple(PROFILES),
                   help="quick: 1 iteration, 2 candidates, short outputs; paper: the paper's settings; gpu: the "
                        "paper's models and settings on GPUs (bf16); the same profiles as CoEvolver(profile=...)")
    p.add_argument("--iterations", type=int, default=None, help="co-evolution iterations (overrides the profile)")
    p.add_argument("--max-pairs", type=int, default=None, help="cap on DPO pairs per iteration (overrides the profile)")
    p.add_argument("--sample", type=int, default=None, help="cluster a seeded random sample of this many texts")
    p.add_argument("--sample-size", type=int, default=None,
                   help="co-evolve on a seeded sample of about this many rows, then stream every other row through "
                        "the trained LLM and embedder (resumable units; needs --k)")
    p.add_argument("--representation", default=None, choices=options(Representation),
                   help="what KMeans clusters (default: the profile's; auto outside the paper and gpu profiles): "
                        "auto chooses per fit, the raw texts (the untrained embedder) unless text, concat or "
                        "interpretation is measurably more stable across KMeans seeds")
    p.add_argument("--text-weight", type=float, default=1.0,
                   help="with --representation concat: weight of the raw-text embedding")
    p.add_argument("--prompt-style", default="guided", choices=options(PromptStyle))
    p.add_argument("--structured-output", default=None, action=argparse.BooleanOptionalAction,
                   help="force 'Reasoning: …\\nKeywords: …' answers with vLLM structured output "
                        "(default: on with the vllm backend)")
    p.add_argument("--backend", default="vllm", choices=options(Backend))
    p.add_argument("--temperatures", default=None, help="comma-separated, e.g. 0,0.5,1.0,1.5")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--output-dir", default=None,
                   help="run directory: finished stages, assignments.jsonl, assignments.parquet/, summary.json, "
                        "report.html (default: runs/<input name>, runs/demo for the demo)")
    p.add_argument("--verbose", action="store_true",
                   help="show every log line (Ray, vLLM, TRL, ...) on the console; by default they go to run.log")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished stages of an earlier run in --output-dir even if its settings differ")
    p.add_argument("--save-model", default=None, help="also save the fitted model here (CoEvolver.load reads it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-actors", type=int, default=None,
                   help="generation actors, one LLM engine each (default: one per GPU, or one on a CPU cluster)")
    p.add_argument("--gen-batch-size", type=int, default=64)
    p.add_argument("--embed-actors", type=int, default=None,
                   help="embedding actors (default: one per GPU, or one on a CPU cluster)")
    p.add_argument("--gpus-per-actor", type=_gpus, default="auto",
                   help="GPUs per generation/embedding actor; auto: one per actor when the cluster has GPUs")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local one)")
    return p.parse_args(argv)


def _gpus(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    from coevo_ray.console import console

    if args.output_dir is None:
        args.output_dir = default_output_dir(args.input, args.method)
    with console(Path(args.output_dir) / "run.log", args.verbose) as out:
        return run(args, out)


def run(args, out) -> int:
    """The CLI's work; user-facing lines go to ``out`` (everything else is in run.log)."""
    from coevo_ray import CoEvolver, StageResources, load_corpus
    from coevo_ray.data.dataset import collect_corpus, is_scale_input, read_corpus_dataset
    from coevo_ray.errors import CoEvoError
    from coevo_ray.runtime import ensure_ray

    demo = args.input is None
    path = default_input() if demo else args.input
    label_field = "label" if demo and args.label_field is None else args.label_field
    if args.method == "kmeans":
        return run_kmeans(args, path, label_field, out)
    task = args.task or ("intent: customer request" if demo else None)
    if task is None:
        print("error: --task is required for your own data (e.g. --task 'topic: post topic')", file=out)
        return 2
    if args.sample_size and (args.sample or not args.k):
        print("error: --sample-size streams the whole input past a fit on a sample: it needs --k and excludes --sample",
              file=out)
        return 2
    try:
        if args.sample_size:  # the input goes to fit as it is: read on the cluster, never gathered here
            corpus, fit_args = path, {"text_field": args.text_field, "label_field": label_field}
        elif is_scale_input(path):
            ensure_ray(args.ray_address, quiet=not args.verbose)
            corpus, fit_args = collect_corpus(read_corpus_dataset(path, args.text_field, label_field)), {}
        else:
            corpus, fit_args = load_corpus(path, text_field=args.text_field, label_field=label_field), {}
        if args.sample:
            corpus = corpus.sample(args.sample, seed=args.seed)
        k = args.k or corpus.n_classes
        if k is None:
            print("error: --k is required when the input has no labels (a number or 'auto')", file=out)
            return 2
        if k != "auto":
            try:
                k = int(k)
            except ValueError:
                print(f"error: --k must be an integer or 'auto', got {args.k!r}", file=out)
                return 2
        # Only what the command line sets explicitly; the rest comes from --profile, as in Python.
        interpret = {"backend": args.backend, "prompt_style": args.prompt_style,
                     "structured_output": args.structured_output,
                     "resources": StageResources(actors=args.gen_actors, batch_size=args.gen_batch_size,
                                                 gpus_per_actor=args.gpus_per_actor)}
        if args.temperatures:
            interpret["temperatures"] = tuple(float(t) for t in args.temperatures.split(","))
        if args.max_tokens:
            interpret["max_tokens"] = args.max_tokens
        embed = {"resources": StageResources(actors=args.embed_actors, batch_size=256, gpus_per_actor=args.gpus_per_actor)}
        ensure_ray(args.ray_address, quiet=not args.verbose)
        model = CoEvolver(task=task, n_clusters=k, profile=args.profile, llm=args.llm, embedder=args.embedder,
                          iterations=args.iterations, representation=args.representation, seed=args.seed,
                          output_dir=args.output_dir, sample_size=args.sample_size, verbose=2 if args.verbose else 1, interpret=interpret, embed=embed,
                          cluster={"text_weight": args.text_weight},
                          prefer={"max_pairs": args.max_pairs} if args.max_pairs is not None else None)
        start = time.perf_counter()
        model.fit(corpus, resume=args.resume, **fit_args)
        if args.save_model:
            model.save(args.save_model)
    except CoEvoError as exc:
        print(f"error: {exc}", file=out)
        return 2
    except BaseException as exc:
        print(f"error: {type(exc).__name__}: {exc} (details in {Path(args.output_dir) / 'run.log'})", file=out)
        raise
    base = model.baseline_
    if base and "acc" in base:
        print(f"baseline (raw texts, {model.config.embed.embedder} + KMeans): ACC {base['acc']:.2f} NMI {base['nmi']:.2f} "
              f"ARI {base['ari']:.2f}", file=out)
    for entry in model.history_:
        guard = entry["on_text"]
        on_text = f"on-text cos {guard['matched']:.2f} vs {guard['shuffled']:.2f} shuffled"
        if "acc" in entry:
            print(f"iteration {entry['iteration']}: ACC {entry['acc']:.2f} NMI {entry['nmi']:.2f} "
                  f"ARI {entry['ari']:.2f} ({on_text})", file=out)
        else:
            print(f"iteration {entry['iteration']}: done, no labels ({on_text})", file=out)
    if base:
        print(f"final vs baseline clustering: agreement ARI {base['agreement_ari']:.1f}; silhouette "
              f"{base['final_silhouette']:.3f} (co-evolved, {model.representation_}) vs {base['silhouette']:.3f} (raw texts)", file=out)
    for c, (name, kws) in enumerate(zip(model.cluster_names_, model.cluster_keywords_)):
        print(f"  cluster {c:3d} ({int(model.cluster_sizes_[c]):4d} texts) {name}  [{', '.join(kws[:5])}]", file=out)
    written = [name for name in ("assignments.jsonl", "assignments.parquet/", "summary.json", "report.html", "run.log")
               if (Path(model.run_dir_) / name.rstrip("/")).exists()]  # a fit on a sample writes no JSON Lines copy
    print(f"{model.n_texts_} texts -> {model.n_clusters_} clusters in {time.perf_counter() - start:.1f} s; "
          f"outputs in {Path(model.run_dir_)} ({', '.join(written)})", file=out)
    return 0


def run_kmeans(args, path: str, label_field: str | None, out) -> int:
    """``--method kmeans``: :class:`~coevo_ray.EmbeddingKMeans` on the input, at any size."""
    from coevo_ray import EmbeddingKMeans, StageResources
    from coevo_ray.errors import CoEvoError
    from coevo_ray.runtime import ensure_ray

    if args.k is None or not str(args.k).isdigit():
        print("error: --method kmeans needs --k (a number of clusters)", file=out)
        return 2
    start = time.perf_counter()
    try:
        ensure_ray(args.ray_address, quiet=not args.verbose)
        resources = StageResources(actors=args.embed_actors, batch_size=256, gpus_per_actor=args.gpus_per_actor)
        model = EmbeddingKMeans(n_clusters=int(args.k), embedder=args.embedder or EmbedConfig.embedder, sample_size=args.kmeans_sample,
                                seed=args.seed, output_dir=args.output_dir, resources=resources)
        model.fit(path, text_field=args.text_field, label_field=label_field)
    except CoEvoError as exc:
        print(f"error: {exc}", file=out)
        return 2
    steps = ", ".join(f"{name} {s:.0f} s" for name, s in model.timings_.items())
    print(f"{model.n_texts_} texts -> {model.n_clusters} clusters (centres fitted on {model.n_fit_rows_} rows) in "
          f"{time.perf_counter() - start:.1f} s ({steps}); assignments in {model.assignments_dir_} "
          "(Parquet shards: id, text, cluster, distance)", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
