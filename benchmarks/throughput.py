#!/usr/bin/env python
"""Stage performance against references measured in the same run, on the same inputs.

    python benchmarks/throughput.py                       # every section, ~30 min on 2 cores
    python benchmarks/throughput.py --sections gemm,generation --fresh

Sections (each figure is a ratio to its reference; seconds are reported beside it):
  gemm          torch GEMM FLOP/s at fp32 and bf16 (the compute limit generation is compared with)
  generation    output tok/s of the vLLM engine (the stage's EngineLoop, all requests in flight) at
                each --concurrency, vs the GEMM limit (2 × parameters × tok/s ÷ GEMM FLOP/s), for
                --llms and --dtypes; --with-transformers adds the transformers engine as reference
  profile       where a generation run's time goes (py-spy samples grouped: GEMM, attention, other
                model ops, engine and Python), SmolLM2-135M fp32 at the first --concurrency
  structured    the same run with vLLM structured output (the interpretation regex) on
  layout        the interpret stage through Ray Data: 1 actor × 2 threads vs 2 actors × 1 thread
  scheduler     vLLM's max_num_seqs at 128, 256 (its CPU default) and 512, 512 greedy requests
  ray_overhead  the interpret, embed and prefer stages through Ray vs the same work in-process
  dtype         fp32 vs bf16 side by side for every --llms model: greedy answers to --n-dtype
                seeded bank77 texts (all in flight) → output tok/s, how many answers are
                identical, and ACC of KMeans on the answers (interpretation; text ⊕ interpretation)
                with MiniLM beside its spread over 5 KMeans seeds; and DPO seconds per pair
                (2 workers × 1 CPU, the same pairs, one prompt per pair)
  admission     the interpret stage (--n-overhead-gen texts × 2 temperatures) with per-batch vs
                continuous admission, quiet and beside a process that keeps a core busy: tok/s and
                whether the answers are the same
  selection     R = 100 KMeans runs + averaged distances over N × C candidates vs one embedding
                pass over the N texts; one FAISS KMeans vs one scikit-learn KMeans
  training      seconds per DPO pair: TRL scoring every position (its CPU default) vs completion
                tokens only vs completion tokens + one prompt per pair (ours, the default), on
                2 workers × 1 CPU and 1 worker × 2 CPUs, same pairs; seconds per embedder pair on 1
                and 2 workers
  scaling       per-text seconds and peak memory (driver, Ray workers) of embed + KMeans +
                selection at N = 1k, 5k, 22.5k (clinc150_full), and of generation at N = 250, 1k

Every measurement runs in its own subprocess (engines and Ray sessions do not share memory
with the next one) and is cached under benchmarks/.cache/throughput/, so an interrupted run
resumes; --fresh remeasures. Results: benchmarks/results/throughput.{json,md}.

`--sections scaling --sizes 10000,100000 --gen-sizes "" --runs 20 --name scale-100k` is the
large-corpus benchmark (peak memory does not depend on R): sizes above 22.5k repeat clinc150_full
with seeded word-level perturbations (every text distinct).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import (  # noqa: E402
    RESULTS, PeakMemory, count_tokens, gemm_gflops, generate_in_process, machine, perturbed_candidates, texts as read_texts,
    variant_texts,
)

CACHE = HERE / ".cache" / "throughput"
TASK = "intent: user intent"
LLMS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
DTYPES = ("float32", "bfloat16")
#: py-spy frame names → the part of a generation step they stand for (first match wins).
PROFILE_GROUPS = (("GEMM (oneDNN)", ("onednn_mm", "cpu_unquantized_gemm")),
                  ("attention kernel", ("cpu_attention_with_kv_cache", "unified_attention")),
                  ("other model ops (norms, activations, rotary)", ("LlamaModel.forward", "Qwen2Model.forward")),
                  ("sampling, structured output", ("sample", "Sampler", "grammar", "xgrammar")),
                  ("scheduler, inputs, detokenising (Python)", ("",)))


# ----------------------------------------------------------------------------- helpers
def write_candidate_tables(texts, cands, root: Path) -> tuple[Path, Path]:
    """The two tables the prefer stage reads, as the interpret and embed stages write them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, c, _ = cands.shape
    gen, emb = root / "generated", root / "embedded"
    gen.mkdir(parents=True)
    emb.mkdir(parents=True)
    ids, cand = np.repeat(np.arange(n), c), np.tile(np.arange(c), n)
    rep = [t for t in texts for _ in range(c)]
    answers = [f"{t} [{j}]" for t, j in zip(rep, cand)]
    pq.write_table(pa.table({"id": ids, "candidate": cand, "text": rep, "raw": answers, "interpretation": answers,
                             "fallback": [""] * len(rep), "finish_reason": ["stop"] * len(rep)}),
                   gen / "part-0.parquet")
    flat = cands.reshape(n * c, -1)
    pq.write_table(pa.table({"id": ids, "candidate": cand,
                             "embedding": pa.FixedSizeListArray.from_arrays(flat.reshape(-1), flat.shape[1])}),
                   emb / "part-0.parquet")
    return gen, emb


def candidates_from_embedded(embedded: str, root: str, n_candidates: int) -> tuple[Path, Path]:
    """Run as a Ray task: synthetic candidates for every embedded text, written where the prefer
    stage reads them (kept out of the driver, whose memory the scaling section measures)."""
    from coevo_ray.tables import column_matrix, read_table

    table = read_table(Path(embedded), columns=["id", "text", "embedding"])
    return write_candidate_tables(table.column("text").to_pylist(),
                                  perturbed_candidates(column_matrix(table, "embedding"), n_candidates), Path(root))


def init_ray() -> None:
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


# ----------------------------------------------------------------------------- units (one subprocess each)
def unit_gemm(args) -> dict:
    return {dtype: {"gflops": gemm_gflops(dtype)} for dtype in DTYPES}


def unit_generation(args) -> dict:
    """vLLM and transformers engines in-process on the same prompts (greedy)."""
    import torch

    from coevo_ray.interpret import EngineSpec, GenerationSettings
    from coevo_ray.interpret.prompts import INTERPRETATION_REGEX
    from coevo_ray.models import resolve_model

    model_dir = str(resolve_model(args.llm))
    texts = read_texts(args.n)
    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=args.max_tokens)
    spec = EngineSpec(model_dir=model_dir, dtype=args.dtype, backend=args.backend,
                      structured_regex=INTERPRETATION_REGEX if args.structured else None)
    if args.max_num_seqs:
        spec = replace(spec, engine_kwargs={**spec.engine_kwargs, "max_num_seqs": args.max_num_seqs})
    # All requests submitted at once: the engine holds min(n, max_num_seqs) of them per step.
    raw, start_s, gen_s, tok = generate_in_process(spec, settings, texts, batch_size=len(texts), warmup=4)
    tokens = count_tokens(tok, raw)
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).parameters())
    return {"start_s": round(start_s, 1), "gen_s": round(gen_s, 2), "tokens": tokens,
            "tok_s": round(tokens / gen_s, 1), "params": params, "requests": len(texts),
            **({"max_num_seqs": args.max_num_seqs} if args.max_num_seqs else {})}


def unit_profile(args) -> dict:
    """py-spy samples of one generation unit, grouped by what the sampled frame stack contains."""
    import collections
    import shutil

    raw = Path(tempfile.mkdtemp(prefix="coevo-tp-prof-")) / "samples.txt"
    cmd = [sys.executable, __file__, "--unit", "generation", "--llm", args.llm, "--dtype", "float32",
           "--backend", "vllm", "--n", str(args.n), "--max-tokens", str(args.max_tokens)]
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = subprocess.run([spy, "record", "-r", "50", "--format", "raw", "-o", str(raw), "--", *cmd],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "_run_engine" not in stack and "EngineLoop._run" not in stack and "LLMEngine.step" not in stack:
            continue  # engine start, imports, warm-up bookkeeping
        group = next(name for name, keys in PROFILE_GROUPS if any(k in stack for k in keys))
        counts[group] += int(n)
    total = sum(counts.values())
    # py-spy adds its own lines after the unit's JSON line
    result = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("{")))
    result["share_of_generation_time"] = {g: round(counts[g] / total, 3) for g, _ in PROFILE_GROUPS}
    result["samples"] = total
    shutil.rmtree(raw.parent, ignore_errors=True)
    return result


def unit_layout(args) -> dict:
    """The interpret stage through Ray Data on N texts with one actor binding both cores or two
    actors of one thread each (vLLM engines are not thread-safe to share, so 2 × 1 is two engines)."""
    from coevo_ray.data import load_corpus
    from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
    from coevo_ray.resources import StageResources
    from coevo_ray.models import resolve_model

    actors, threads = (int(x) for x in args.layout.split("x"))
    init_ray()
    spec = EngineSpec(model_dir=str(resolve_model("smollm2-135m-instruct")))
    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=args.max_tokens)
    t0 = time.perf_counter()
    rows = interpret_dataset(load_corpus(read_texts(args.n)).to_ray_dataset(), spec, settings,
                             StageResources(actors=actors, threads=threads, batch_size=64)).take_all()
    wall = time.perf_counter() - t0
    return {"actors": actors, "threads_per_actor": threads, "n": len(rows), "wall_s": round(wall, 1)}


def unit_interpret_in_process(args) -> dict:
    """ray_overhead's interpret reference: the stage's callable in this process, handed every
    request at once (the most an engine can be given)."""
    from coevo_ray.interpret import EngineSpec, GenerationSettings
    from coevo_ray.models import resolve_model

    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=args.max_tokens)
    spec = EngineSpec(model_dir=str(resolve_model("smollm2-135m-instruct")))
    texts = read_texts(args.n_overhead_gen)
    raw, start_s, gen_s, _ = generate_in_process(spec, settings, texts, batch_size=len(texts))
    return {"start_s": start_s, "gen_s": gen_s, "raw": raw}


def unit_ray_overhead(args) -> dict:
    """Each stage's work through Ray (Data actor pool / task) and the same work called in-process."""
    import numpy as np
    import ray

    from coevo_ray.config import EmbedConfig
    from coevo_ray.data import load_corpus
    from coevo_ray.embed import embed_dataset, encode, load_encoder
    from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
    from coevo_ray.models import resolve_model
    from coevo_ray.prefer import PreferenceConfig
    from coevo_ray.prefer.stage import preference_stage, preference_stage_on_ray
    from coevo_ray.resources import StageResources
    from coevo_ray.hardware import current_topology, wait_for_resources

    out = {}
    llm = str(resolve_model("smollm2-135m-instruct"))
    emb = str(resolve_model("all-minilm-l6-v2"))
    gen_texts = read_texts(args.n_overhead_gen)
    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=args.max_tokens)
    spec = EngineSpec(model_dir=llm)

    # The in-process reference runs in a process of its own: an engine left in this one would
    # share the cores with the Ray Data actor measured next.
    proc = subprocess.run([sys.executable, __file__, "--unit", "interpret_in_process", "--n-overhead-gen",
                           str(args.n_overhead_gen), "--max-tokens", str(args.max_tokens)],
                          capture_output=True, text=True, check=True)
    reference = json.loads(proc.stdout.strip().splitlines()[-1])
    raw, in_proc = reference["raw"], reference["start_s"] + reference["gen_s"]
    init_ray()
    out["interpret"] = {"n_texts": len(gen_texts), "in_process_s": round(in_proc, 1)}
    # Batches of 64 texts, as the stage is configured: they share the actor's engine.
    t0 = time.perf_counter()
    rows = interpret_dataset(load_corpus(gen_texts).to_ray_dataset(), spec, settings,
                             StageResources(batch_size=64)).take_all()
    ray_s = time.perf_counter() - t0
    same = sum(a == b for a, b in zip([r["raw"] for r in sorted(rows, key=lambda r: r["id"])], raw))
    out["interpret"].update({"ray_data_s": round(ray_s, 1), "ray_data_ratio": round(ray_s / in_proc, 2),
                             "ray_data_identical_outputs": f"{same}/{len(raw)}"})

    # The interpret actor pool is torn down asynchronously: the next references must not share
    # the cores with it.
    wait_for_resources({"CPU": ray.cluster_resources()["CPU"]})
    emb_texts = variant_texts(args.n_embed)[0]
    t0 = time.perf_counter()
    vecs = encode(load_encoder(emb, device="cpu"), emb_texts)
    in_proc = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = embed_dataset(load_corpus(emb_texts).to_ray_dataset(), emb, StageResources(batch_size=256)).take_all()
    ray_s = time.perf_counter() - t0
    ray_vecs = np.stack([r["embedding"] for r in sorted(rows, key=lambda r: r["id"])])
    out["embed"] = {"n_texts": len(emb_texts), "in_process_s": round(in_proc, 1), "ray_data_s": round(ray_s, 1),
                    "ratio": round(ray_s / in_proc, 2), "max_abs_diff": float(np.abs(ray_vecs - vecs).max())}
    # The stage as fit() runs it (Parquet in, Parquet out): under in_process_max_rows on one node
    # it encodes in the driver (a fresh process here, so the model load counts).
    with tempfile.TemporaryDirectory() as tmp:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from coevo_ray.embed import embed_parquet

        (Path(tmp) / "src").mkdir()
        (Path(tmp) / "out").mkdir()
        pq.write_table(pa.table({"id": np.arange(len(emb_texts)), "text": emb_texts}), Path(tmp) / "src" / "p.parquet")
        t0 = time.perf_counter()
        where = embed_parquet(Path(tmp) / "src", Path(tmp) / "out", emb, StageResources(batch_size=256), "text",
                              ["id"], in_process_max_rows=5000)
        stage_s = time.perf_counter() - t0
    out["embed"].update({"stage_s": round(stage_s, 1), "stage_ran_in": where, "stage_ratio": round(stage_s / in_proc, 2)})

    wait_for_resources({"CPU": ray.cluster_resources()["CPU"]})
    # At --n-prefer texts, above in_process_max_rows, where fit() runs the stage as a Ray task.
    # The embedded texts repeat, each copy moved by its own noise: the selection's cost depends
    # on N, K, R and the candidates, not on what the vectors say (see perturbed_candidates).
    copies = -(-args.n_prefer // len(vecs))
    rng = np.random.default_rng(1)
    pref_vecs = np.concatenate([vecs + rng.normal(scale=0.05, size=vecs.shape).astype(np.float32)
                                for _ in range(copies)])[:args.n_prefer]
    pref_texts = [f"{t} #{j}" for j in range(copies) for t in emb_texts][:args.n_prefer]
    cfg = PreferenceConfig(n_runs=args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        gen, embd = write_candidate_tables(pref_texts, perturbed_candidates(pref_vecs, args.candidates), Path(tmp))
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        t0 = time.perf_counter()
        preference_stage(str(gen), str(embd), str(Path(tmp) / "a"), args.k, cfg)
        in_proc = time.perf_counter() - t0
        t0 = time.perf_counter()
        preference_stage_on_ray(str(gen), str(embd), str(Path(tmp) / "b"), args.k, cfg)
        ray_s = time.perf_counter() - t0
    out["prefer"] = {"n_texts": len(pref_texts), "candidates": args.candidates, "runs": args.runs,
                     "in_process_s": round(in_proc, 1), "ray_task_s": round(ray_s, 1), "ratio": round(ray_s / in_proc, 2),
                     # Where fit()'s prefer stage runs this many texts (embed.in_process_max_rows).
                     "stage_ran_in": "driver" if (current_topology().one_cpu_node
                                                  and len(pref_texts) <= EmbedConfig().in_process_max_rows)
                     else "ray-task"}
    return out


def unit_selection(args) -> dict:
    from sklearn.cluster import KMeans

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.embed import encode, load_encoder
    from coevo_ray.models import resolve_model
    from coevo_ray.prefer import averaged_nearest_centroid_distances

    texts = read_texts(3080)  # all of bank77
    encoder = load_encoder(str(resolve_model("all-minilm-l6-v2")), device="cpu")
    t0 = time.perf_counter()
    greedy = encode(encoder, texts)
    embed_s = time.perf_counter() - t0
    cands = perturbed_candidates(greedy, args.candidates)
    t0 = time.perf_counter()
    averaged_nearest_centroid_distances(greedy, cands, 77, n_runs=args.runs, init="random")
    select_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    FaissKMeans(77, seed=0, init="random").fit(greedy)
    faiss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    KMeans(77, n_init=1, random_state=0, max_iter=25).fit(greedy)
    sk_s = time.perf_counter() - t0
    return {"n_texts": len(texts), "candidates": args.candidates, "runs": args.runs, "k": 77,
            "embedding_pass_s": round(embed_s, 2), "selection_s": round(select_s, 2),
            "selection_vs_embedding_pass": round(select_s / embed_s, 2),
            "faiss_kmeans_s": round(faiss_s, 3), "sklearn_kmeans_s": round(sk_s, 3),
            "sklearn_vs_faiss": round(sk_s / faiss_s, 2)}


def unit_training(args) -> dict:
    import ray
    from training_speed import dpo_pairs

    from coevo_ray.models import resolve_model
    from coevo_ray.train_embedder import EmbedderTrainConfig, train_embedder
    from coevo_ray.train_llm import LLMTrainConfig, train_dpo

    init_ray()
    work = Path(tempfile.mkdtemp(prefix="coevo-tp-train-"))
    texts = read_texts(256)
    llm = str(resolve_model("smollm2-135m-instruct"))
    pairs = dpo_pairs(llm, texts)
    out: dict = {"dpo": {}, "embedder": {}}
    # Same pairs, same loss, same 8 pairs per optimizer step in every layout (4 per worker step on
    # 2 workers; 4 × 2 accumulation on 1): only the LM-head scoring and the layout differ.
    layouts = {"2x1cpu": dict(num_workers=2, cpus_per_worker=1.0, gradient_accumulation_steps=1),
               "1x2cpu": dict(num_workers=1, cpus_per_worker=2.0, gradient_accumulation_steps=2)}
    n_pairs = 8 * args.dpo_steps
    # scoring: every_position = TRL on CPU (the code before issue 17); completion_only = the fused
    # head on completion tokens (completion_scoring.py); shared_prompt = that + one prompt per pair.
    scorings = {"every_position": dict(compact_lm_head=False, shared_prompt=False),
                "completion_only": dict(compact_lm_head=True, shared_prompt=False),
                "shared_prompt": dict(compact_lm_head=True, shared_prompt=True)}
    for layout, scoring in (("2x1cpu", "every_position"), ("2x1cpu", "completion_only"), ("2x1cpu", "shared_prompt"),
                            ("1x2cpu", "completion_only"), ("1x2cpu", "shared_prompt")):
        cfg = LLMTrainConfig(max_steps=args.dpo_steps, per_device_batch_size=4, checkpoint_every=0,
                             **scorings[scoring], **layouts[layout])
        t0 = time.perf_counter()
        _, m = train_dpo(llm, {k: v[:n_pairs] for k, v in pairs.items()}, work / f"dpo-{layout}-{scoring}", cfg,
                         storage_path=str(work / "ray"))
        wall = time.perf_counter() - t0
        step = statistics.median(m["step_times_s"][1:] or m["step_times_s"])  # step 1: allocations, gloo set-up
        out["dpo"][f"{layout}_{scoring}"] = {
            "pairs_per_step": m["pairs_per_step"], "s_per_step": step, "s_per_pair": round(step / m["pairs_per_step"], 3),
            "fit_wall_s": round(wall, 1), "margins": m.get("final_rewards/margins"), "loss": m.get("final_loss"),
            "margins_per_step": [round(x, 4) for x in m.get("margins_per_step", [])]}
    base = out["dpo"]["2x1cpu_every_position"]["s_per_pair"]
    for key, row in out["dpo"].items():
        row["speedup_vs_every_position"] = round(base / row["s_per_pair"], 2)
    rows = [{"id": i, "text": t, "interpretation": f"Reasoning: the customer asks: {t}\nKeywords: "
             f"{', '.join(t.split()[:5])}"} for i, t in enumerate(texts)]
    for workers in (1, 2):
        cfg = EmbedderTrainConfig(max_steps=args.embedder_steps, num_workers=workers, learning_rate=1e-5,
                                  checkpoint_every=0)
        _, m = train_embedder(str(resolve_model("all-minilm-l6-v2")), ray.data.from_items(rows), work / f"emb{workers}",
                              cfg, storage_path=str(work / "ray"))
        step = statistics.median(m["step_times_s"][1:] or m["step_times_s"])
        out["embedder"][f"{workers}_workers"] = {"pairs_per_step": m["batch_size"] * workers, "s_per_step": step,
                                                 "s_per_pair": round(step / (m["batch_size"] * workers), 4)}
    return out


def unit_scale_embed(args) -> dict:
    """embed (Ray Data, to Parquet) + KMeans + density selection (Ray task) for N texts."""

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.data import load_corpus
    from coevo_ray.embed import embed_dataset
    from coevo_ray.resources import StageResources
    from coevo_ray.models import resolve_model
    from coevo_ray.prefer import PreferenceConfig
    from coevo_ray.prefer.stage import preference_stage_on_ray
    from coevo_ray.tables import column_matrix, read_table

    import ray

    texts = variant_texts(args.n)[0]
    init_ray()
    work = Path(tempfile.mkdtemp(prefix="coevo-tp-scale-"))
    timings = {}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        embed_dataset(load_corpus(texts).to_ray_dataset(), str(resolve_model("all-minilm-l6-v2")),
                      StageResources(batch_size=256)).write_parquet(str(work / "emb"))
        timings["embed"] = time.perf_counter() - t0
        driver_after_embed = PeakMemory.driver_mib()
        t0 = time.perf_counter()  # what fit() does: the greedy vectors into the driver, one KMeans
        vecs = column_matrix(read_table(work / "emb", columns=["id", "embedding"]), "embedding")
        FaissKMeans(args.k, seed=0).fit(vecs)
        timings["kmeans"] = time.perf_counter() - t0
        del vecs
        gen, emb = ray.get(ray.remote(candidates_from_embedded).remote(str(work / "emb"), str(work), args.candidates))
        (work / "prefer").mkdir()
        t0 = time.perf_counter()
        preference_stage_on_ray(str(gen), str(emb), str(work / "prefer"), args.k,
                                PreferenceConfig(n_runs=args.runs, max_pairs=10_000))
        timings["selection"] = time.perf_counter() - t0
    n = len(texts)
    return {"n": n, "k": args.k, "candidates": args.candidates, "runs": args.runs,
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "ms_per_text": {k: round(1000 * v / n, 3) for k, v in timings.items()},
            "peak_driver_mib": PeakMemory.driver_mib(), "peak_driver_mib_after_embed": driver_after_embed,
            "peak_ray_workers_mib": round(mem.workers_peak / 2**20, 1)}


def unit_scale_generation(args) -> dict:
    from coevo_ray.data import load_corpus
    from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
    from coevo_ray.resources import StageResources
    from coevo_ray.models import resolve_model

    texts = variant_texts(args.n)[0]
    init_ray()
    spec = EngineSpec(model_dir=str(resolve_model("smollm2-135m-instruct")))
    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=16)
    work = Path(tempfile.mkdtemp(prefix="coevo-tp-gen-"))
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        interpret_dataset(load_corpus(texts).to_ray_dataset(), spec, settings,
                          StageResources(batch_size=128)).write_parquet(str(work))
        wall = time.perf_counter() - t0
    return {"n": len(texts), "max_tokens": 16, "seconds": round(wall, 1), "ms_per_text": round(1000 * wall / len(texts), 1),
            "peak_driver_mib": PeakMemory.driver_mib(), "peak_ray_workers_mib": round(mem.workers_peak / 2**20, 1)}


def unit_admission(args) -> dict:
    """The interpret stage as a fit runs it (Ray Data, one actor, the quick profile's two
    temperatures) under one admission mode, on a quiet machine or beside a process that keeps a
    core busy (``--busy``): seconds, output tokens per second, and a digest of the answers (equal
    digests = the same answers)."""
    import hashlib

    from coevo_ray.data import load_corpus
    from coevo_ray.interpret import EngineSpec, GenerationSettings, interpret_dataset
    from coevo_ray.models import resolve_model
    from coevo_ray.resources import StageResources

    model_dir = str(resolve_model(LLMS[0]))
    texts = read_texts(args.n)
    if args.gomp_spincount:  # before Ray starts: its workers inherit the environment
        os.environ["GOMP_SPINCOUNT"] = args.gomp_spincount
    init_ray()
    settings = GenerationSettings(task=TASK, temperatures=(0.0, 1.0), max_tokens=args.max_tokens, seed=0,
                                  admission=args.admission)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        t0 = time.perf_counter()
        rows = interpret_dataset(load_corpus(texts).to_ray_dataset(), EngineSpec(model_dir=model_dir), settings,
                                 StageResources(batch_size=64)).take_all()
        wall = time.perf_counter() - t0
    finally:
        if busy is not None:
            busy.kill()
    rows.sort(key=lambda r: (r["id"], r["candidate"]))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tokens = sum(len(tok(r["raw"], add_special_tokens=False)["input_ids"]) for r in rows)
    digest = hashlib.sha256("\x00".join(r["raw"] for r in rows).encode()).hexdigest()[:16]
    from coevo_ray.resources import GOMP_SPINCOUNT

    # What the actor ran with (resources.actor_runtime_env); None: libgomp's default (measured
    # before the library set one).
    return {"admission": args.admission, "busy": bool(args.busy),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", GOMP_SPINCOUNT),
            "requests": len(rows), "seconds": round(wall, 1),
            "tok_s": round(tokens / wall, 1), "answers_digest": digest}


def unit_dtype_answers(args) -> dict:
    """Greedy answers of ``--llm`` in ``--dtype`` for a seeded sample of bank77 texts, all in
    flight at once (the stage's engine loop): output tok/s, a short hash per answer (the summary
    counts identical answers across dtypes) and the KMeans ACC of what they give with MiniLM."""
    import hashlib

    import numpy as np
    from _common import labelled_sample

    from coevo_ray.clustering import l2_normalize
    from coevo_ray.embed import encode, load_encoder
    from coevo_ray.interpret import EngineSpec, GenerationSettings
    from coevo_ray.interpret.parsing import parse_interpretation
    from coevo_ray.interpret.prompts import INTERPRETATION_REGEX, worked_example
    from coevo_ray.metrics import evaluate_kmeans_protocol
    from coevo_ray.models import resolve_model

    texts, labels = labelled_sample("bank77", args.n, seed=0)
    model_dir = str(resolve_model(args.llm))
    settings = GenerationSettings(task=TASK, temperatures=(0.0,), max_tokens=args.max_tokens)
    spec = EngineSpec(model_dir=model_dir, dtype=args.dtype, structured_regex=INTERPRETATION_REGEX)
    raw, start_s, gen_s, tok = generate_in_process(spec, settings, texts, batch_size=len(texts), warmup=4)
    tokens = count_tokens(tok, raw)
    example = worked_example("guided")
    interps = [parse_interpretation(a, t, example).text for a, t in zip(raw, texts)]
    encoder = load_encoder(str(resolve_model("all-minilm-l6-v2")))
    e_int, e_txt = encode(encoder, interps), encode(encoder, texts)
    k = len(set(labels))
    scores = {name: evaluate_kmeans_protocol(x, labels, k)
              for name, x in (("interpretation", e_int),
                              ("concat", np.hstack([l2_normalize(e_int), l2_normalize(e_txt)])))}
    return {"llm": args.llm, "dtype": args.dtype, "requests": len(texts), "start_s": round(start_s, 1),
            "gen_s": round(gen_s, 2), "tokens": tokens, "tok_s": round(tokens / gen_s, 1),
            "answer_hashes": [hashlib.blake2b(a.encode(), digest_size=4).hexdigest() for a in raw],
            "acc": {n: round(s["acc"], 2) for n, s in scores.items()},
            "acc_std_over_kmeans_seeds": {n: round(s["acc_std"], 2) for n, s in scores.items()}}


def unit_dpo_dtype(args) -> dict:
    """Seconds per DPO pair for ``--llm`` with the plan's CPU layout (2 workers × 1 CPU, one
    prompt per pair) in fp32 or bf16 (``--dtype``): the same pairs, loss and margins per step."""
    from training_speed import dpo_pairs

    from coevo_ray.hardware import Topology, train_layout
    from coevo_ray.models import resolve_model
    from coevo_ray.train_llm import LLMTrainConfig, train_dpo

    init_ray()
    work = Path(tempfile.mkdtemp(prefix="coevo-tp-dpo-dtype-"))
    llm = str(resolve_model(args.llm))
    # 4 pairs per worker step: batch 1 × 4 accumulation for the 151k-vocabulary Qwen models
    # (batch 4 needs ~10 GB per worker for the 0.5B), batch 4 for SmolLM2.
    batch = 4 if "smollm2" in args.llm else 1
    cfg = LLMTrainConfig(max_steps=args.dpo_steps, per_device_batch_size=batch, gradient_accumulation_steps=4 // batch,
                         checkpoint_every=0, bf16=args.dtype == "bfloat16")
    n_pairs = 8 * args.dpo_steps
    pairs = {k: v[:n_pairs] for k, v in dpo_pairs(llm, read_texts(n_pairs)).items()}
    layout = train_layout(2, 1.0, Topology.of((os.cpu_count(), 0)), deepspeed=False, bf16=cfg.bf16)
    t0 = time.perf_counter()
    _, m = train_dpo(llm, pairs, work / "dpo", cfg, storage_path=str(work / "ray"), layout=layout)
    step = statistics.median(m["step_times_s"][1:] or m["step_times_s"])  # step 1: allocations, gloo set-up
    return {"llm": args.llm, "dtype": args.dtype, "pairs_per_step": m["pairs_per_step"], "s_per_step": step,
            "s_per_pair": round(step / m["pairs_per_step"], 3), "fit_wall_s": round(time.perf_counter() - t0, 1),
            "loss": m.get("final_loss"), "margins_per_step": [round(x, 4) for x in m.get("margins_per_step", [])]}


def unit_embedder_dtype(args) -> dict:
    """The embedder's training step on the plan's CPU layout (2 workers × 1 CPU) in fp32 or with
    bf16 autocast (``--dtype``), ``--llm`` naming the embedder: seconds per step, the losses, and
    the ACC of KMeans on 300 bank77 texts embedded by the trained model (the same pairs, seed and
    steps both ways)."""
    import ray

    from coevo_ray.embed import encode, load_encoder, model_prompt
    from coevo_ray.hardware import Topology, train_layout
    from coevo_ray.metrics import evaluate_kmeans_protocol
    from coevo_ray.models import resolve_model
    from coevo_ray.train_embedder import EmbedderTrainConfig, train_embedder
    from _common import labelled_sample

    init_ray()
    work = Path(tempfile.mkdtemp(prefix="coevo-tp-emb-dtype-"))
    texts, labels = labelled_sample("bank77", 300, seed=0)
    rows = [{"id": i, "text": t, "interpretation": f"Reasoning: the customer asks: {t}\nKeywords: "
             f"{', '.join(t.split()[:5])}"} for i, t in enumerate(texts)]
    model_dir = resolve_model(args.llm)
    prompt = model_prompt(model_dir)
    cfg = EmbedderTrainConfig(max_steps=args.embedder_steps, learning_rate=1e-5, checkpoint_every=0)
    layout = train_layout(2, 1.0, Topology.of((os.cpu_count(), 0)), bf16=args.dtype == "bfloat16")
    t0 = time.perf_counter()
    out, m = train_embedder(str(model_dir), ray.data.from_items(rows), work / "emb", cfg,
                            storage_path=str(work / "ray"), prompt=prompt, layout=layout)
    wall = time.perf_counter() - t0
    step = statistics.median(m["step_times_s"][1:] or m["step_times_s"])
    acc = evaluate_kmeans_protocol(encode(load_encoder(str(out)), texts, prompt=prompt), labels, len(set(labels)))
    return {"embedder": args.llm, "dtype": args.dtype, "s_per_step": round(step, 3), "fit_wall_s": round(wall, 1),
            "losses": {k: v for k, v in m.items() if "loss" in k and not isinstance(v, (list, dict))},
            "acc_after": round(acc["acc"], 2), "acc_std_over_kmeans_seeds": round(acc["acc_std"], 2)}


UNITS = {"admission": unit_admission, "gemm": unit_gemm, "generation": unit_generation, "profile": unit_profile, "layout": unit_layout,
         "ray_overhead": unit_ray_overhead, "interpret_in_process": unit_interpret_in_process,
         "selection": unit_selection, "training": unit_training, "scale_embed": unit_scale_embed,
         "scale_generation": unit_scale_generation,
         "dtype_answers": unit_dtype_answers, "dpo_dtype": unit_dpo_dtype,
         "embedder_dtype": unit_embedder_dtype}


# ----------------------------------------------------------------------------- driver
def plan(args) -> dict[str, list[str]]:
    """Section → the unit command lines it runs (each also names its cache file)."""
    sections = {
        "gemm": [["gemm"]],
        "generation": [["generation", "--llm", llm, "--dtype", dt, "--backend", be, "--n", str(n)]
                       for llm, sizes in args.llms.items() for dt in args.dtypes for n in sizes
                       for be in (("vllm", "transformers") if args.with_transformers else ("vllm",))],
        "profile": [["profile", "--llm", LLMS[0], "--n", str(args.concurrency[0])]],
        # Structured output's cost: the same greedy requests constrained to the interpretation shape.
        "structured": [["generation", "--llm", LLMS[0], "--dtype", "float32", "--backend", "vllm",
                        "--n", str(args.concurrency[0]), "--structured"]],
        "layout": [["layout", "--layout", layout, "--n", str(args.concurrency[0])] for layout in ("1x2", "2x1")],
        # vLLM's scheduler limit on CPU (its default there: 256 sequences per step), 512 requests.
        "scheduler": [["generation", "--llm", LLMS[0], "--dtype", "float32", "--backend", "vllm", "--n", "512",
                       "--max-num-seqs", str(seqs)] for seqs in (128, 256, 512)],
        "ray_overhead": [["ray_overhead"]],
        # Per-batch vs continuous admission (interpret/engine_loop.py), quiet and beside a busy process.
        "admission": [["admission", "--admission", mode, "--n", str(args.n_overhead_gen)] + (["--busy"] if busy else [])
                      + (["--gomp-spincount", spin] if spin else [])
                      for spin in ("", "1000") for mode in ("per-batch", "continuous") for busy in (False, True)],
        # fp32 vs bf16 for each LLM: answers (speed, identity, ACC) and DPO seconds per pair.
        "dtype": [["dtype_answers", "--llm", llm, "--dtype", dt, "--n", str(args.n_dtype)]
                  for llm in args.llms for dt in DTYPES]
                 + [["dpo_dtype", "--llm", llm, "--dtype", dt] for llm in args.llms for dt in DTYPES]
                 + [["embedder_dtype", "--llm", emb, "--dtype", dt] for emb in ("all-minilm-l6-v2", "embeddinggemma-300m")
                    for dt in DTYPES],
        "selection": [["selection"]],
        "training": [["training"]],
        "scaling": [["scale_embed", "--n", str(n), "--runs", str(args.runs)] for n in args.sizes]
                   + [["scale_generation", "--n", str(n)] for n in args.gen_sizes],
    }
    return {s: sections[s] for s in args.sections}


def unit_name(cmd: list[str]) -> str:
    """The cache file / results key of a unit, e.g. ``generation-<llm>-<dtype>-vllm-256``; a flag
    without a value keeps its name (``...-structured``)."""
    flags = {part for part, nxt in zip(cmd, cmd[1:] + ["--"]) if part.startswith("--") and nxt.startswith("--")}
    return "-".join(part[2:] if part in flags else part for part in cmd if part in flags or not part.startswith("--"))


def run_unit(cmd: list[str], args) -> dict:
    name = unit_name(cmd)
    cache = CACHE / f"{name}.json"
    if cache.exists() and not args.fresh:
        return json.loads(cache.read_text())
    print(f"[throughput] {name} ...", flush=True)
    t0 = time.perf_counter()
    common = ["--max-tokens", str(args.max_tokens), "--runs", str(args.runs),
              "--candidates", str(args.candidates), "--k", str(args.k), "--n-embed", str(args.n_embed), "--n-overhead-gen", str(args.n_overhead_gen), "--n-dtype", str(args.n_dtype),
              "--n-prefer", str(args.n_prefer),
              "--dpo-steps", str(args.dpo_steps), "--embedder-steps", str(args.embedder_steps)]
    proc = subprocess.run([sys.executable, __file__, "--unit", *cmd, *common], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1))
    print(f"[throughput] {name}: {time.perf_counter() - t0:.0f} s {json.dumps(result)[:300]}", flush=True)
    return result


def prompt_tokens(llm: str, n: int) -> int:
    """Prompt tokens of the ``n`` generation prompts, as the stage renders them."""
    from transformers import AutoTokenizer

    from coevo_ray.interpret import TaskDescription, render_prompt
    from coevo_ray.models import resolve_model

    tok = AutoTokenizer.from_pretrained(str(resolve_model(llm)))
    desc = TaskDescription.parse(TASK)
    return sum(len(tok(render_prompt(tok, t, desc, "guided"), add_special_tokens=False)["input_ids"])
               for t in read_texts(n))


def summarise(res: dict, args) -> dict:
    """The headline ratios, each to its reference. The GEMM limit counts 2 × parameters FLOPs
    per token; "output" uses generated tokens only (the issue's definition), "processed" adds the
    prompt tokens (an upper bound of the work: vLLM's prefix cache skips the shared prompt)."""
    out: dict = {}
    gemm = res.get("gemm", {}).get("gemm", {})
    for llm, sizes in args.llms.items():
        for dt in args.dtypes:
            for n in sizes:
                v = res.get("generation", {}).get(f"generation-{llm}-{dt}-vllm-{n}", {})
                h = res.get("generation", {}).get(f"generation-{llm}-{dt}-transformers-{n}", {})
                if "tok_s" not in v:
                    continue
                n_prompt = prompt_tokens(llm, n)
                row = {"requests": n, "vllm_tok_s": v["tok_s"], "transformers_tok_s": h.get("tok_s"),
                       "prompt_tokens": n_prompt, "output_tokens": v["tokens"]}
                if h.get("tok_s"):
                    row["vllm_vs_transformers"] = round(v["tok_s"] / h["tok_s"], 2)
                if dt in gemm:
                    limit = gemm[dt]["gflops"] * 1e9 / (2 * v["params"])
                    row["gemm_limit_tok_s"] = round(limit, 0)
                    row["vllm_output_share_of_gemm_limit"] = round(v["tok_s"] / limit, 4)
                    row["vllm_processed_share_of_gemm_limit"] = round((v["tokens"] + n_prompt) / v["gen_s"] / limit, 3)
                out[f"generation {llm} {dt} {n}"] = row
    return out


def summarise_dtypes(res: dict, args) -> list[dict]:
    """One row per LLM: bf16 against fp32 measured in the same run — output tok/s, identical greedy
    answers, ACC (with the KMeans-seed spread beside it) and DPO seconds per pair."""
    answers, dpo = res.get("dtype", {}), res.get("dtype", {})
    rows = []
    for llm in args.llms:
        a = {dt: answers.get(f"dtype_answers-{llm}-{dt}-{args.n_dtype}", {}) for dt in DTYPES}
        d = {dt: dpo.get(f"dpo_dtype-{llm}-{dt}", {}) for dt in DTYPES}
        row: dict = {"llm": llm}
        if all("tok_s" in a[dt] for dt in DTYPES):
            same = sum(x == y for x, y in zip(a["float32"]["answer_hashes"], a["bfloat16"]["answer_hashes"]))
            row.update({f"tok_s_{dt}": a[dt]["tok_s"] for dt in DTYPES})
            row["tok_s_bf16_over_fp32"] = round(a["bfloat16"]["tok_s"] / a["float32"]["tok_s"], 2)
            row["identical_answers"] = f"{same}/{len(a['float32']['answer_hashes'])}"
            for rep in ("interpretation", "concat"):
                row[f"acc_{rep}"] = {dt: a[dt]["acc"][rep] for dt in DTYPES}
                row[f"acc_{rep}_kmeans_seed_std"] = {dt: a[dt]["acc_std_over_kmeans_seeds"][rep] for dt in DTYPES}
        if all("s_per_pair" in d[dt] for dt in DTYPES):
            row.update({f"dpo_s_per_pair_{dt}": d[dt]["s_per_pair"] for dt in DTYPES})
            row["dpo_bf16_speedup"] = round(d["float32"]["s_per_pair"] / d["bfloat16"]["s_per_pair"], 2)
            row["dpo_loss"] = {dt: d[dt]["loss"] for dt in DTYPES}
            row["dpo_final_margin"] = {dt: (d[dt]["margins_per_step"] or [None])[-1] for dt in DTYPES}
        rows.append(row)
    return rows


def write_markdown(res: dict, summary: dict, name: str, argv: list[str], args) -> None:
    command = f"python benchmarks/throughput.py {' '.join(argv)}".strip()
    lines = [f"# {name}", "", f"Command: `{command}` (cached units are reused: the figures may come from several runs)", "",
             f"Machine: {json.dumps(machine())}", ""]
    generation = {k: v for k, v in summary.items() if k.startswith("generation ")}
    if generation:
        lines += ["| generation (LLM, dtype, requests in flight) | vLLM output tok/s | GEMM limit tok/s | "
                  "vLLM output ÷ limit | (prompt + output) ÷ limit | transformers tok/s |", "|---|---|---|---|---|---|"]
        for key, r in generation.items():
            lines.append(f"| {key.split(' ', 1)[1]} | {r['vllm_tok_s']} | {r.get('gemm_limit_tok_s')} | "
                         f"{r.get('vllm_output_share_of_gemm_limit')} | {r.get('vllm_processed_share_of_gemm_limit')} | "
                         f"{r.get('transformers_tok_s')} |")
        lines.append("")
    dtype_rows = summarise_dtypes(res, args) if "dtype" in res else []
    if dtype_rows:
        lines += ["| LLM | tok/s fp32 | tok/s bf16 | bf16 ÷ fp32 | identical greedy answers | ACC interp. fp32 / bf16 "
                  "(KMeans-seed std) | ACC text ⊕ interp. fp32 / bf16 (std) | DPO s/pair fp32 | DPO s/pair bf16 | "
                  "DPO bf16 speed-up | DPO reward margin after the last step fp32 / bf16 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in dtype_rows:
            def acc(rep):
                if f"acc_{rep}" not in r:
                    return "—"
                v, e = r[f"acc_{rep}"], r[f"acc_{rep}_kmeans_seed_std"]
                return f"{v['float32']} / {v['bfloat16']} ({e['float32']} / {e['bfloat16']})"
            lines.append(f"| {r['llm']} | {r.get('tok_s_float32', '—')} | {r.get('tok_s_bfloat16', '—')} | "
                         f"{r.get('tok_s_bf16_over_fp32', '—')} | {r.get('identical_answers', '—')} | {acc('interpretation')} | "
                         f"{acc('concat')} | {r.get('dpo_s_per_pair_float32', '—')} | {r.get('dpo_s_per_pair_bfloat16', '—')} | "
                         f"{r.get('dpo_bf16_speedup', '—')} | "
                         f"{' / '.join(str(r.get('dpo_final_margin', {}).get(dt)) for dt in DTYPES)} |")
        lines.append("")
        emb = {k: v for k, v in res["dtype"].items() if k.startswith("embedder_dtype-") and "s_per_step" in v}
        if emb:
            lines += ["| embedder training (2 workers, 6 steps) | dtype | s per step | final losses | ACC after (KMeans-seed std) |",
                      "|---|---|---|---|---|"]
            for v in emb.values():
                lines.append(f"| {v['embedder']} | {v['dtype']} | {v['s_per_step']} | {json.dumps(v['losses'])} | "
                             f"{v['acc_after']} ({v['acc_std_over_kmeans_seeds']}) |")
            lines.append("")
    for section, units in res.items():
        if section in ("generation", "dtype"):
            continue
        lines += [f"## {section}", ""]
        for unit, value in units.items():
            lines.append(f"- `{unit}`: `{json.dumps(value)}`")
        lines.append("")
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections",
                   default="gemm,generation,profile,structured,layout,scheduler,ray_overhead,selection,training,scaling")
    p.add_argument("--sizes", default="1000,5000,22500", help="N for the scaling section's embed+KMeans+selection")
    p.add_argument("--gen-sizes", default="250,1000", help="N for the scaling section's generation")
    p.add_argument("--concurrency", default="256,1024", help="requests in flight per generation measurement")
    p.add_argument("--llms", default=",".join(LLMS),
                   help="LLM aliases; ALIAS@N/M measures that one at N and M requests instead of --concurrency")
    p.add_argument("--dtypes", default="float32", help="bfloat16 too where the CPU has native bf16 (AMX)")
    p.add_argument("--with-transformers", action="store_true", help="also time the transformers engine")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--n-embed", type=int, default=2000, help="texts for the embed overhead")
    p.add_argument("--n-overhead-gen", type=int, default=480,
                   help="texts for the interpret overhead (480: the requests of the demo's first generation)")
    p.add_argument("--n-prefer", type=int, default=6000,
                   help="texts for the prefer overhead: just above embed.in_process_max_rows (5,000), the least "
                        "work fit() runs as a Ray task")
    p.add_argument("--n-dtype", type=int, default=300, help="stratified bank77 texts per answer unit of the dtype section")
    p.add_argument("--runs", type=int, default=100, help="KMeans runs in selection (paper: 100)")
    p.add_argument("--candidates", type=int, default=4, help="candidates per text (paper: 4 temperatures)")
    p.add_argument("--k", type=int, default=150, help="clusters for the scaling/overhead KMeans (clinc150: 150)")
    p.add_argument("--dpo-steps", type=int, default=4)
    p.add_argument("--embedder-steps", type=int, default=6)
    p.add_argument("--name", default="throughput", help="results/<name>.json and .md")
    p.add_argument("--fresh", action="store_true", help="remeasure instead of reading the cache")
    p.add_argument("--unit", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--llm", help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--structured", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--layout", help=argparse.SUPPRESS)
    p.add_argument("--max-num-seqs", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--admission", default="per-batch", help=argparse.SUPPRESS)
    p.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gomp-spincount", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.unit:  # child process: one measurement, its JSON as the last stdout line
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(json.dumps(UNITS[args.unit](args)))
        return 0

    args.sections = [s for s in args.sections.split(",") if s]
    args.concurrency = [int(n) for n in args.concurrency.split(",") if n]
    args.llms = {m.split("@")[0]: ([int(n) for n in m.split("@")[1].split("/")] if "@" in m else args.concurrency)
                 for m in args.llms.split(",") if m}
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.gen_sizes = [int(n) for n in args.gen_sizes.split(",") if n]
    started = time.time()
    res = {section: {unit_name(cmd): run_unit(cmd, args) for cmd in cmds} for section, cmds in plan(args).items()}
    summary = summarise(res, args)
    if "dtype" in res:
        summary["dtype"] = summarise_dtypes(res, args)
    result = {"machine": machine(), "command": f"python benchmarks/throughput.py {' '.join(argv)}".strip(),
              "settings": {k: v for k, v in vars(args).items() if k not in ("unit", "n", "llm", "dtype", "backend")},
              "results": res, "summary": summary, "wall_s": round(time.time() - started, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(res, summary, args.name, argv, args)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
