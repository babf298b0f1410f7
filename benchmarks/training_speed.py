#!/usr/bin/env python
"""Seconds per training step and per pair, through the library's own Ray Train paths:

  * DPO (TRL + LoRA r=64, paper batch 4 per worker) for each LLM, on 2 CPU workers;
  * embedder training (L_E, batch 32 per worker) on 1 and on 2 CPU workers.

Pairs are real bank77 texts with the guided chat prompt; chosen/rejected are short
interpretation-shaped answers (~40-60 tokens, the length the generation stage writes). The
first step of each run (allocations, gloo set-up) is left out of the per-step median.
Results: benchmarks/results/training_speed.json.

    .venv/bin/python benchmarks/training_speed.py --llms smollm2-135m-instruct qwen2.5-coder-0.5b-instruct
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, texts as read_texts, write_result  # noqa: E402

TASK = "intent: user intent"


def dpo_pairs(model_dir: str, texts: list[str]) -> dict[str, list[str]]:
    from transformers import AutoTokenizer

    from coevo_ray.interpret import TaskDescription, render_prompt

    tok = AutoTokenizer.from_pretrained(model_dir)
    desc = TaskDescription.parse(TASK)
    return {
        "prompt": [render_prompt(tok, t, desc, "guided") for t in texts],
        "chosen": [f"Reasoning: The customer writes \"{t[:80]}\" and wants help with it.\n"
                   f"Keywords: {', '.join(t.split()[:6])}" for t in texts],
        "rejected": ["Reasoning: I'm ready to assist with any text analysis task. What is your request?\n"
                     "Keywords: text, analysis, task, request, assistance"] * len(texts),
    }


def per_step(times: list[float]) -> float:
    steady = times[1:] or times
    return statistics.median(steady)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llms", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    p.add_argument("--dpo-steps", type=int, default=3)
    p.add_argument("--embedder", default="all-minilm-l6-v2")
    p.add_argument("--embedder-steps", type=int, default=6)
    args = p.parse_args(argv)

    import ray

    from coevo_ray.models import resolve_model
    from coevo_ray.train_embedder import EmbedderTrainConfig, train_embedder
    from coevo_ray.train_llm import LLMTrainConfig, train_dpo

    ray.init(include_dashboard=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="coevo-train-bench-"))
    texts = read_texts(256)
    result = {"machine": machine(), "dpo": {}, "embedder": {}}

    for alias in args.llms:
        model_dir = str(resolve_model(alias))
        # Paper: batch 4, r 64, lr 1e-5. Qwen's 151k-token logits at batch 4 need ~10 GB per worker:
        # the same 4 pairs per worker step as 1 × 4 accumulation steps.
        big = "qwen" in alias
        cfg = LLMTrainConfig(max_steps=args.dpo_steps, num_workers=2, per_device_batch_size=1 if big else 4,
                             gradient_accumulation_steps=4 if big else 1)
        pairs = dpo_pairs(model_dir, texts[: 4 * 2 * args.dpo_steps])
        t0 = time.perf_counter()
        _, metrics = train_dpo(model_dir, pairs, work / f"dpo-{alias}", cfg, storage_path=str(work / "ray"))
        wall = time.perf_counter() - t0
        step = per_step(metrics["step_times_s"])
        result["dpo"][alias] = {
            "workers": metrics["world_size"], "pairs_per_step": metrics["pairs_per_step"],
            "step_times_s": metrics["step_times_s"], "s_per_step": round(step, 2),
            "s_per_pair": round(step / metrics["pairs_per_step"], 3), "run_wall_s": round(wall, 1),
        }
        print(alias, result["dpo"][alias], flush=True)

    emb_dir = str(resolve_model(args.embedder))
    rows = [{"id": i, "text": t, "interpretation": f"Reasoning: the customer asks: {t}\nKeywords: {', '.join(t.split()[:5])}"}
            for i, t in enumerate(texts)]
    ds = ray.data.from_items(rows)
    for workers in (1, 2):
        cfg = EmbedderTrainConfig(max_steps=args.embedder_steps, num_workers=workers, learning_rate=1e-5)
        t0 = time.perf_counter()
        _, metrics = train_embedder(emb_dir, ds, work / f"emb-{workers}", cfg, storage_path=str(work / "ray"))
        wall = time.perf_counter() - t0
        step = per_step(metrics["step_times_s"])
        result["embedder"][f"{workers}_workers"] = {
            "steps": metrics["steps"], "pairs_per_step": metrics["batch_size"] * workers,
            "step_times_s": metrics["step_times_s"], "s_per_step": round(step, 3),
            "s_per_pair": round(step / (metrics["batch_size"] * workers), 4), "run_wall_s": round(wall, 1),
        }
        print(workers, result["embedder"][f"{workers}_workers"], flush=True)
    e1, e2 = result["embedder"]["1_workers"], result["embedder"]["2_workers"]
    result["ratios"] = {"embedder_pairs_per_s_2_vs_1_workers": round(e1["s_per_pair"] / e2["s_per_pair"], 2)}
    write_result("training_speed.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
