#!/usr/bin/env python
"""Corpus scale: read → embed → KMeans on a sample → assign → write, through Ray, at N texts.

    python benchmarks/scale.py --sizes 100000,1000000            # ~45 min on 2 cores
    python benchmarks/scale.py --sizes 20000 --sample-sizes 20000,5000 --quality

Each N runs `EmbeddingKMeans(n_clusters=150, sample_size=S).fit(<directory of JSONL shards>)` in a
fresh driver process (all-MiniLM-L6-v2, one actor), and reports: seconds and ms per text per
step, peak driver RSS (ru_maxrss: the figure that must not grow with N), peak summed RSS of the
Ray workers, rows in = rows out, ids unique. The corpus is clinc150_full, then seeded word-level
variants of it (every text distinct, each with its source's label), written as 50,000-line JSONL
shards under benchmarks/.cache/scale/ by a separate process (not measured).

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


def unit_fit(args) -> dict:
    """One fit in this (fresh) process; the driver's peak RSS is this process's."""
    import ray

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
    assigned = ray.data.read_parquet(str(model.assignments_dir_))
    rows_out = assigned.count()
    unique_ids = assigned.select_columns(["id"]).groupby("id").count().count()
    id_range = (assigned.min("id"), assigned.max("id"))
    seconds = {**model.timings_, "total": round(total, 2)}
    return {"n": args.n, "sample_size": args.sample_size, "fit_rows": model.n_fit_rows_, "k": K,
            "rows_in": model.n_texts_, "rows_out": rows_out, "unique_ids": unique_ids, "id_range": id_range,
            "corpus_stats": model.corpus_stats_, "seconds": seconds,
            "ms_per_text": {k: round(1000 * v / args.n, 3) for k, v in seconds.items()},
            "peak_driver_mib": PeakMemory.driver_mib(), "peak_ray_workers_mib": round(mem.workers_peak / 2**20, 1),
            "assignments": str(model.assignments_dir_)}


def unit_quality(args) -> dict:
    """ACC / NMI / ARI of a fit's written assignments against the corpus labels."""
    import pyarrow.parquet as pq

    from coevo_ray.metrics import evaluate

    table = pq.read_table(args.assignments, columns=["id", "label", "cluster"]).sort_by("id")
    return evaluate(table.column("label").to_pylist(), table.column("cluster").to_numpy()).as_dict()


def run_unit(kind: str, args, n: int, sample_size: int, **flags) -> dict:
    name = f"{kind}-{n}-{sample_size}"
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
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cache.write_text(json.dumps(result, indent=1))
    print(f"[scale] {name}: {time.perf_counter() - start:.0f} s {json.dumps(result)[:400]}", flush=True)
    return result


def write_results(res: dict, name: str, argv: list[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"command": f"python benchmarks/scale.py {' '.join(argv)}",
                                                      "machine": machine(), "units": res}, indent=1))
    fits = [r for key, r in res.items() if key.startswith("fit-")]
    lines = [f"# {name}", "", f"Command: `python benchmarks/scale.py {' '.join(argv)}` (cached units are reused)", "",
             f"Machine: {json.dumps(machine())}", "",
             "EmbeddingKMeans(n_clusters=150, all-MiniLM-L6-v2, 1 embedding actor) on a directory of JSONL "
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
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
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
        print(json.dumps({"fit": unit_fit, "quality": unit_quality}[args.unit](args)))
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    res: dict = {}
    for n in (int(x) for x in args.sizes.split(",") if x):
        subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = {[str(HERE), str(HERE.parent)]!r}; "
                        f"import scale; scale.write_corpus({n})"], check=True)
        for s in (int(x) for x in args.sample_sizes.split(",") if x):
            fit = res[f"fit-{n}-{s}"] = run_unit("fit", args, n=n, sample_size=s)
            if args.quality:
                res[f"quality-{n}-{s}"] = run_unit("quality", args, n=n, sample_size=s,
                                                   assignments=fit["assignments"])
    write_results(res, args.name, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
