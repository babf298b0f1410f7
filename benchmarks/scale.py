#!/usr/bin/env python
"""Corpus scale: read → embed → KMeans on a sample → assign → write, through Ray, at N texts.

    python benchmarks/scale.py --sizes 100000,1000000            # ~45 min on 2 cores
    python benchmarks/scale.py --sizes 20000 --sample-sizes 20000,5000 --quality
    python benchmarks/scale.py --coevolve 20000 --name scale-llm-20k   # an LLM-using fit, ~80 min
    python benchmarks/scale.py --coevolve 20000 --keep-generation --name scale-llm-20k   # + ~8 min
    python benchmarks/scale.py --coevolve-stream 4000,20000 --stream-sample 1000 --name scale-coevolve-stream

Each N runs `EmbeddingKMeans(n_clusters=150, sample_size=S).fit(<directory of JSONL shards>)` in a
fresh driver process (all-MiniLM-L6-v2, one actor), and reports: seconds and ms per text per
step, peak driver RSS (ru_maxrss: the figure that must not grow with N), peak summed RSS of the
Ray workers, rows in = rows out, ids unique. The corpus is clinc150_full, then seeded word-level
variants of it (every text distinct, each with its source's label), written as 50,000-line JSONL
shards under benchmarks/.cache/scale/ by a separate process (not measured).

``--coevolve N`` instead runs one LLM-using fit on the same kind of corpus, in a fresh driver:
`CoEvolver(n_clusters=150, iterations=0)` (SmolLM2-135M, greedy answers of at most
``--max-tokens`` tokens sized by the grammar, MiniLM, no embedder training: a run that prices
generation at N and the driver's memory, not a quality run), text ⊕ interpretation clustered,
names and assignments written; the same memory figures, seconds per stage, rows out.
``--keep-generation`` adds a second such fit in the first one's run directory that reuses its
generation stage and runs every later stage again (embeddings, the on-text guard, KMeans, the
baseline, names, assignments): the driver's memory after a change to those stages, without
paying for generation again (the first fit's driver stays far below its peak while generating).

``--quality`` adds, per N and sample size, ACC / NMI / ARI of the assignments against the
labels (read back in a separate process): what fitting the centres on a sample changes.
Units are cached under benchmarks/.cache/scale/; results: benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import CACHE as CACHE_ROOT, RESULTS, PeakMemory, machine, variant_texts  # noqa: E402

CACHE = CACHE_ROOT / "scale"
SHARD_ROWS = 50_000
K = 150  # clinc150's intents


def corpus_dir(n: int) -> Path:
    return CACHE / f"corpus-{n}"


def write_corpus(n: int) -> Path:
    """JSON Lines shards of ``n`` labelled texts (written once; atomically)."""
    out = corpus_dir(n)
    if out.exists():
        return out
    texts, labels = variant_texts(n)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for start in range(0, n, SHARD_ROWS):
        with (tmp / f"part-{start // SHARD_ROWS:05d}.jsonl").open("w") as fh:
            for t, y in zip(texts[start:start + SHARD_ROWS], labels[start:start + SHARD_ROWS]):
                fh.write(json.dumps({"text": t, "label": y}) + "\n")
    tmp.rename(out)
    return out


def written_rows(assignments_dir) -> tuple[int, int, tuple[int, int]]:
    """Rows, distinct ids and the id range of the assignment shards a fit wrote, read by Ray Data."""
    import ray

    assigned = ray.data.read_parquet(str(assignments_dir))
    unique_ids = assigned.select_columns(["id"]).groupby("id").count().count()
    return assigned.count(), unique_ids, (assigned.min("id"), assigned.max("id"))


def unit_fit(args) -> dict:
    """One fit in this (fresh) process; the driver's peak RSS is this process's."""
    from coevo_ray import EmbeddingKMeans
    from coevo_ray.runtime import ensure_ray

    ensure_ray(quiet=True, log_to_driver=False, include_dashboard=False)
    work = CACHE / f"run-{args.n}-{args.sample_size}"
    shutil.rmtree(work, ignore_errors=True)  # measure every step: no stage reused
    with PeakMemory() as mem:
        start = time.perf_counter()
        model = EmbeddingKMeans(n_clusters=K, sample_size=args.sample_size, seed=0, output_dir=str(work))
        model.fit(str(corpus_dir(args.n)), label_field="label")
        total = time.perf_counter() - start
    rows_out, unique_ids, id_range = written_rows(model.assignments_dir_)
    seconds = {**model.timings_, "total": round(total, 2)}
    return {"n": args.n, "sample_size": args.sample_size, "fit_rows": model.n_fit_rows_, "k": K,
            "rows_in": model.n_texts_, "rows_out": rows_out, "unique_ids": unique_ids, "id_range": id_range,
            "corpus_stats": model.corpus_stats_, "seconds": seconds,
            "ms_per_text": {k: round(1000 * v / args.n, 3) for k, v in seconds.items()},
            "peak_driver_mib": PeakMemory.driver_mib(), "peak_ray_workers_mib": round(mem.workers_peak / 2**20, 1),
            "assignments": str(model.assignments_dir_)}


def unit_coevolve(args) -> dict:
    """One LLM-using fit in this (fresh) process, read from the corpus directory by Ray Data."""
    from coevo_ray import CoEvolver
    from coevo_ray.data import PAPER_TASKS
    from coevo_ray.runtime import ensure_ray

    ensure_ray(quiet=True, log_to_driver=False, include_dashboard=False)
    work = CACHE / f"run-coevolve-{args.n}"
    if args.keep_generation:  # everything but the generation stage goes
        kept = [stage for stage in (work / "stages").iterdir() if "-interpret-" in stage.name]
        for path in [*work.iterdir(), *(work / "stages").iterdir()]:
            if path in kept or path == work / "stages":
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    else:
        shutil.rmtree(work, ignore_errors=True)
    with PeakMemory() as mem:
        start = time.perf_counter()
        model = CoEvolver(task=PAPER_TASKS["clinc_intent"], n_clusters=K, iterations=0, seed=0, output_dir=str(work),
                          interpret={"temperatures": (0.0,), "max_tokens": args.max_tokens,
                                     "structured_output": True, "sized_answers": True},
                          train_embedder={"enabled": False})
        model.fit(str(corpus_dir(args.n)), labels="label", resume=bool(args.keep_generation))
        total = time.perf_counter() - start
    rows_out, unique_ids, _ = written_rows(model.assignments_dir_)
    seconds = {**model.timings_, "total": round(total, 2)}
    scores = {k: model.history_[-1].get(k) for k in ("acc", "nmi", "ari")}
    base = {k: (model.baseline_ or {}).get(k) for k in ("acc", "nmi", "ari")}
    return {"n": args.n, "max_tokens": args.max_tokens, "k": K, "generation_reused": bool(args.keep_generation),
            "rows_in": len(model.labels_),
            "rows_out": rows_out, "unique_ids": unique_ids, "seconds": seconds,
            "ms_per_text": {k: round(1000 * v / args.n, 3) for k, v in seconds.items()},
            "peak_driver_mib": PeakMemory.driver_mib(), "peak_ray_workers_mib": round(mem.workers_peak / 2**20, 1),
            "parse_fallbacks": model.history_[-1].get("parse_fallbacks"), "scores": scores,
            "baseline_scores": base, "assignments": str(model.assignments_dir_)}


def unit_stream(args) -> dict:
    """A fit on a sample, then the streaming pass over every other row (``CoEvolver(sample_size=S)``),
    in this (fresh) process. The run directory is kept, so an interrupted unit resumes (its stage
    seconds come from the manifest, written when each stage finished; the driver peak is then the
    last process's)."""
    import pyarrow.parquet as pq

    from coevo_ray import CoEvolver, EmbeddingKMeans
    from coevo_ray.data import PAPER_TASKS
    from coevo_ray.metrics import evaluate
    from coevo_ray.runtime import ensure_ray

    ensure_ray(quiet=True, log_to_driver=False, include_dashboard=False)
    work = CACHE / f"run-stream-{args.n}-{args.sample_size}-t{args.max_tokens}"
    resumed = (work / "manifest.json").exists()
    source = str(corpus_dir(args.n))
    with PeakMemory() as mem:
        start = time.perf_counter()
        model = CoEvolver(task=PAPER_TASKS["clinc_intent"], n_clusters=K, iterations=1, seed=0, output_dir=str(work),
                          sample_size=args.sample_size,
                          interpret={"max_tokens": args.max_tokens, "structured_output": True, "sized_answers": True})
        model.fit(source, labels="label", resume=True)
        total = time.perf_counter() - start
    rows_out, unique_ids, id_range = written_rows(model.assignments_dir_)
    manifest = json.loads((work / "manifest.json").read_text())["stages"]
    seconds: dict[str, float] = {}
    for entry in manifest.values():  # per step kind: the stream's units summed
        kind = "stream-units" if entry["stage"].startswith("stream-0") else entry["stage"]
        seconds[kind] = round(seconds.get(kind, 0.0) + entry["seconds"], 2)
    # Scores of every row's assignment, beside raw-text KMeans on the same embedder and corpus.
    labels = {}
    for path in sorted(corpus_dir(args.n).glob("*.jsonl")):
        for line in path.open():
            labels[len(labels)] = json.loads(line)["label"]
    table = pq.read_table(str(model.assignments_dir_), columns=["id", "cluster"]).sort_by("id")
    ours = evaluate([labels[i] for i in table.column("id").to_pylist()], table.column("cluster").to_numpy()).as_dict()
    km = EmbeddingKMeans(n_clusters=K, embedder=model.config.embed.embedder, sample_size=args.n, seed=0,
                         output_dir=str(work / "raw-text-kmeans")).fit(source, label_field="label")
    raw = pq.read_table(str(km.assignments_dir_), columns=["id", "cluster"]).sort_by("id")
    baseline = evaluate([labels[i] for i in raw.column("id").to_pylist()], raw.column("cluster").to_numpy()).as_dict()
    return {"n": args.n, "sample_size": args.sample_size, "fit_rows": model.n_fit_rows_, "k": K,
            "max_tokens": args.max_tokens, "rows_in": model.n_texts_, "rows_out": rows_out, "unique_ids": unique_ids,
            "id_range": id_range, "resumed": resumed, "seconds": {**seconds, "this_process": round(total, 2)},
            "peak_driver_mib": PeakMemory.driver_mib(), "peak_ray_workers_mib": round(mem.workers_peak / 2**20, 1),
            "scores": ours, "raw_text_kmeans": baseline, "sample_history": model.history_,
            "assignments": str(model.assignments_dir_)}


def unit_quality(args) -> dict:
    """ACC / NMI / ARI of a fit's written assignments against the corpus labels."""
    import pyarrow.parquet as pq

    from coevo_ray.metrics import evaluate

    table = pq.read_table(args.assignments, columns=["id", "label", "cluster"]).sort_by("id")
    return evaluate(table.column("label").to_pylist(), table.column("cluster").to_numpy()).as_dict()


def run_unit(kind: str, args, n: int, sample_size: int, **flags) -> dict:
    name = f"{kind}-{n}-{sample_size}" + (f"-t{flags['max_tokens']}" if "max_tokens" in flags else "") \
        + ("-kept-generation" if flags.get("keep_generation") else "")
    flags = {"n": n, "sample_size": sample_size, **flags}
    cache = CACHE / f"{name}.json"
    if cache.exists() and not args.fresh:
        return json.loads(cache.read_text())
    print(f"[scale] {name} ...", flush=True)
    cmd = [sys.executable, __file__, "--unit", kind, *[x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", str(v))]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-5000:], file=sys.stderr)
        raise SystemExit(f"[scale] {name} failed (exit {proc.returncode})")
    # The unit prints its result as one JSON line; libraries may print after it.
    result = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith('{"n"')))
    cache.write_text(json.dumps(result, indent=1))
    print(f"[scale] {name}: {time.perf_counter() - start:.0f} s {json.dumps(result)[:400]}", flush=True)
    return result


def write_results(res: dict, name: str, argv: list[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"command": f"python benchmarks/scale.py {' '.join(argv)}",
                                                      "machine": machine(), "units": res}, indent=1))
    fits = [r for key, r in res.items() if key.startswith("fit-")]
    coevolved = [r for key, r in res.items() if key.startswith("coevolve-")]
    lines = [f"# {name}", "", f"Command: `python benchmarks/scale.py {' '.join(argv)}` (cached units are reused)", "",
             f"Machine: {json.dumps(machine())}", ""]
    if fits:
        lines += ["EmbeddingKMeans(n_clusters=150, all-MiniLM-L6-v2, 1 embedding actor) on a directory of JSONL "
                  "shards: read + checks → embed → KMeans on a seeded sample → assign → write.", "",
                  "| N | sample | rows out | unique ids | read s | embed s | kmeans s | assign s | total s | "
                  "ms/text total | peak driver MiB | peak Ray workers MiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in fits:
        s = r["seconds"]
        lines.append(f"| {r['n']:,} | {r['fit_rows']:,} | {r['rows_out']:,} | {r['unique_ids']:,} | {s['read']} | "
                     f"{s['embed']} | {s['kmeans']} | {s['assign']} | {s['total']} | {r['ms_per_text']['total']} | "
                     f"{r['peak_driver_mib']} | {r['peak_ray_workers_mib']} |")
    quality = {k: v for k, v in res.items() if k.startswith("quality-")}
    if quality:
        lines += ["", "| N | KMeans fitted on | ACC | NMI | ARI |", "|---|---|---|---|---|"]
        for key, q in quality.items():
            _, n, sample = key.split("-")
            fit_rows = res[f"fit-{n}-{sample}"]["fit_rows"]
            lines.append(f"| {int(n):,} | {fit_rows:,} rows | {q['acc']:.2f} | {q['nmi']:.2f} | {q['ari']:.2f} |")
    if coevolved:
        lines += ["CoEvolver(n_clusters=150, iterations=0; SmolLM2-135M greedy, sized answers; MiniLM, no "
                  "embedder training; text ⊕ interpretation) on the same kind of corpus directory.", "",
                  "| N | max tokens | rows out | unique ids | seconds per stage | total s | ms/text | "
                  "peak driver MiB | peak Ray workers MiB | ACC (raw-text KMeans) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in coevolved:
            stages = ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items() if k != "total" and v >= 1)
            reused = " (generation reused)" if r.get("generation_reused") else ""
            lines.append(f"| {r['n']:,}{reused} | {r['max_tokens']} | {r['rows_out']:,} | {r['unique_ids']:,} | {stages} | "
                         f"{r['seconds']['total']} | {r['ms_per_text']['total']} | {r['peak_driver_mib']} | "
                         f"{r['peak_ray_workers_mib']} | {r['scores']['acc']:.2f} ({r['baseline_scores']['acc']:.2f}) |")
    if any(r.get("generation_reused") for r in coevolved):
        lines += ["", "\"generation reused\": the same fit again in the first one's run directory with only its "
                  "generation stage kept and every later stage run again by the code of the time it ran (see the "
                  "README, \"Large corpora\"); a fit's driver peaks after generation, so this row prices those "
                  "stages' memory."]
    streamed = [r for key, r in res.items() if key.startswith("stream-")]
    if streamed:
        lines += ["CoEvolver(n_clusters=150, sample_size=S, iterations=1; SmolLM2-135M, sized answers; MiniLM "
                  "co-trained; text ⊕ interpretation): the co-evolution (two temperatures, preferences, DPO, "
                  "embedder training) on the seeded sample, then one streaming pass of every other row through the "
                  "final LLM, embedder and centres, in resumable units. Seconds per stage from the run's manifest "
                  "(summed over the stream's units); ACC of every row beside raw-text KMeans (the same embedder, "
                  "untrained, on every row).", "",
                  "| N | sample | rows out | unique ids | seconds per stage | peak driver MiB | peak Ray workers MiB | "
                  "ACC / NMI | raw-text KMeans ACC / NMI |", "|---|---|---|---|---|---|---|---|---|"]
        for r in streamed:
            stages = ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items() if v >= 1)
            lines.append(f"| {r['n']:,} | {r['fit_rows']:,} | {r['rows_out']:,} | {r['unique_ids']:,} | {stages} | "
                         f"{r['peak_driver_mib']}{' (resumed)' if r['resumed'] else ''} | {r['peak_ray_workers_mib']} | "
                         f"{r['scores']['acc']:.2f} / {r['scores']['nmi']:.2f} | "
                         f"{r['raw_text_kmeans']['acc']:.2f} / {r['raw_text_kmeans']['nmi']:.2f} |")
        payload = json.loads((RESULTS / f"{name}.json").read_text())
        payload["runs"] = [{k: r[k] for k in ("n", "sample_size", "fit_rows", "rows_out", "unique_ids",
                                              "peak_driver_mib", "seconds", "scores", "raw_text_kmeans", "resumed")}
                           for r in streamed]
        (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def write_corpus_in_subprocess(n: int) -> None:
    """The corpus is written by another process, so it does not count in a unit's memory."""
    subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = {[str(HERE), str(HERE.parent)]!r}; "
                    f"import scale; scale.write_corpus({n})"], check=True)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--coevolve", type=int, default=None, metavar="N",
                   help="instead: one CoEvolver fit (iterations=0) on N texts")
    p.add_argument("--coevolve-stream", default=None, metavar="N1,N2",
                   help="instead: CoEvolver(sample_size=--stream-sample) at each N: one co-evolution iteration "
                        "(DPO) on the sample, then the streaming pass over the rest")
    p.add_argument("--stream-sample", type=int, default=1000, help="sample size of --coevolve-stream")
    p.add_argument("--max-tokens", type=int, default=16, help="answer cap of --coevolve and --coevolve-stream")
    p.add_argument("--keep-generation", type=int, nargs="?", const=1, default=0,
                   help="with --coevolve: also a fit that reuses the first one's generation (see above)")
    p.add_argument("--sample-sizes", default="100000", help="KMeans sample sizes (each run at every N)")
    p.add_argument("--quality", action="store_true", help="also score the assignments against the labels")
    p.add_argument("--name", default="scale-1m")
    p.add_argument("--fresh", action="store_true", help="remeasure cached units")
    p.add_argument("--unit", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sample-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--assignments", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.unit:
        units = {"fit": unit_fit, "coevolve": unit_coevolve, "quality": unit_quality, "stream": unit_stream}
        print(json.dumps(units[args.unit](args)))
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    res: dict = {}
    if args.coevolve_stream:
        for n in (int(x) for x in args.coevolve_stream.split(",") if x):
            write_corpus_in_subprocess(n)
            res[f"stream-{n}-{args.stream_sample}"] = run_unit("stream", args, n=n, sample_size=args.stream_sample,
                                                              max_tokens=args.max_tokens)
            write_results(res, args.name, argv)
        return 0
    if args.coevolve:
        write_corpus_in_subprocess(args.coevolve)
        res[f"coevolve-{args.coevolve}"] = run_unit("coevolve", args, n=args.coevolve, sample_size=args.coevolve,
                                                    max_tokens=args.max_tokens)
        if args.keep_generation:
            res[f"coevolve-{args.coevolve}-kept-generation"] = run_unit(
                "coevolve", args, n=args.coevolve, sample_size=args.coevolve, max_tokens=args.max_tokens,
                keep_generation=1)
        write_results(res, args.name, argv)
        return 0
    for n in (int(x) for x in args.sizes.split(",") if x):
        write_corpus_in_subprocess(n)
        for s in (int(x) for x in args.sample_sizes.split(",") if x):
            fit = res[f"fit-{n}-{s}"] = run_unit("fit", args, n=n, sample_size=s)
            if args.quality:
                res[f"quality-{n}-{s}"] = run_unit("quality", args, n=n, sample_size=s,
                                                   assignments=fit["assignments"])
    write_results(res, args.name, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
