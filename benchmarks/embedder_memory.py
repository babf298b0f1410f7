#!/usr/bin/env python
"""Peak memory of one embedder-training worker, with and without gradient checkpointing: what
the hardware plan sizes its CPU workers from (``coevo_ray.hardware.embedder_worker_bytes``).

Each configuration runs in a fresh process (its peak RSS is its own): the library's
``load_for_training`` + ``train_step`` — L_E with the dropout pair and DEC, Adam, fp32 on the CPU
— on a batch of real bank77 texts whose interpretations are made as long as the answer cap (the
worst case the generation stage writes). The figures are what one Ray Train worker holds; the
plan adds Ray's own worker overhead on top.

    .venv/bin/python benchmarks/embedder_memory.py --embedders all-minilm-l6-v2 embeddinggemma-300m
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, texts as read_texts, write_result  # noqa: E402


def one_worker(embedder: str, checkpointing: bool, batch: int, answer_tokens: int, steps: int) -> dict:
    """Runs in the child process: one worker's load and ``steps`` optimizer steps."""
    import numpy as np
    import torch

    from coevo_ray.embed import model_prompt
    from coevo_ray.models import parameter_count, resolve_model
    from coevo_ray.train_embedder import EmbedderTrainConfig
    from coevo_ray.train_embedder.embedder_trainer import load_for_training, train_step

    torch.set_num_threads(2)
    model_dir = resolve_model(embedder)
    texts = read_texts(batch * steps)
    tok_words = max(1, int(answer_tokens * 0.75))  # ~0.75 words per token in English prose
    interps = [" ".join((f"Reasoning: the customer writes {t}".split() * 50)[:tok_words]) for t in texts]
    cfg = EmbedderTrainConfig(batch_size=batch, learning_rate=1e-5)
    model, loss, _ = load_for_training(str(model_dir), cfg, np.random.default_rng(0).normal(size=(64, loss_dim(model_dir))).astype("float32"),
                                       None, "cpu", checkpointing)
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    opt = torch.optim.Adam([p for p in loss.parameters() if p.requires_grad], lr=cfg.learning_rate)
    prompt = model_prompt(model_dir, "auto")
    times, losses = [], []
    for s in range(steps):
        rows = {"text": texts[s * batch:(s + 1) * batch], "interpretation": interps[s * batch:(s + 1) * batch]}
        began = time.perf_counter()
        parts = train_step(model, loss, opt, rows, prompt, "cpu")
        times.append(time.perf_counter() - began)
        losses.append(round(float(parts[0].detach()), 4))
    seq = model.preprocess([prompt + interps[0]])["input_ids"].shape[1]
    return {"embedder": embedder, "gradient_checkpointing": checkpointing, "batch": batch,
            "parameters": parameter_count(model_dir), "interpretation_tokens": int(seq),
            "rss_after_load_mib": round(after_load), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "s_per_step": round(statistics.median(times[1:] or times), 1), "losses": losses}


def loss_dim(model_dir: Path) -> int:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True).get_sentence_embedding_dimension()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedders", nargs="+", default=["all-minilm-l6-v2", "embeddinggemma-300m"])
    p.add_argument("--batch", type=int, default=32, help="rows per worker step (EmbedderTrainConfig.batch_size)")
    p.add_argument("--answer-tokens", type=int, default=128, help="interpretation length (the answer cap)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--checkpointing", nargs="+", type=lambda v: v == "on", default=[False, True],
                   metavar="{on,off}", help="gradient checkpointing settings to measure (default: off on)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_worker(args.child[0], args.child[1] == "1", args.batch, args.answer_tokens, args.steps)))
        return
    import psutil

    from coevo_ray.hardware import embedder_worker_bytes
    from coevo_ray.models import ModelSize, parameter_count, resolve_model

    rows = []
    for embedder in args.embedders:
        for checkpointing in args.checkpointing:
            out = subprocess.run([sys.executable, __file__, "--child", embedder, str(int(checkpointing)),
                                  "--batch", str(args.batch), "--answer-tokens", str(args.answer_tokens),
                                  "--steps", str(args.steps)], capture_output=True, text=True)
            if out.returncode == -signal.SIGKILL:  # the kernel's OOM killer: the peak is the machine's memory
                row = {"embedder": embedder, "gradient_checkpointing": checkpointing, "batch": args.batch,
                       "parameters": parameter_count(resolve_model(embedder)), "peak_rss_mib": None,
                       "killed": f"out of memory (machine: {psutil.virtual_memory().total / 2**20:.0f} MiB)"}
            elif out.returncode:
                raise SystemExit(out.stderr[-3000:])
            else:
                row = json.loads(out.stdout.strip().splitlines()[-1])
            print(row, flush=True)
            rows.append(row)
    # Rows of earlier runs stay unless measured again (one configuration per run is allowed: a
    # configuration that runs out of memory takes minutes to get there).
    path = Path(__file__).resolve().parent / "results" / "embedder-train-memory.json"
    earlier = json.loads(path.read_text()) if path.exists() else {"commands": [], "rows": []}
    measured = {(r["embedder"], r["gradient_checkpointing"], r["batch"]) for r in rows}
    rows = [r for r in earlier["rows"] if (r["embedder"], r["gradient_checkpointing"], r["batch"]) not in measured] + rows
    rows.sort(key=lambda r: (r["parameters"], r["batch"], r["gradient_checkpointing"]))
    for r in rows:  # the plan's estimate as the code now computes it, for old rows too
        r["plan_estimate_mib"] = round(embedder_worker_bytes(ModelSize.of(resolve_model(r["embedder"])), r["batch"],
                                                             r["gradient_checkpointing"]) / 2**20)
    command = "python benchmarks/embedder_memory.py " + " ".join(sys.argv[1:])
    commands = [c for c in earlier.get("commands", []) if c != command] + [command]
    write_result("embedder-train-memory.json", {"commands": commands, "machine": machine(), "rows": rows})
    lines = ["# Embedder training: peak memory of one worker", "",
             "Commands (rows merge by embedder, checkpointing and batch): " + ", ".join(f"`{c}`" for c in commands), "",
             "One process = one Ray Train worker: the library's `load_for_training` + `train_step` (L_E with the dropout "
             f"pair and DEC, Adam, fp32, CPU), batch {args.batch}, interpretations at the {args.answer_tokens}-token "
             "answer cap. `plan` is `coevo_ray.hardware.embedder_worker_bytes`, which the plan sizes CPU workers from; "
             "it must stay above the peak.", "",
             "| embedder | parameters | checkpointing | RSS after load (MiB) | peak RSS (MiB) | plan (MiB) | s / step | losses |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = r["peak_rss_mib"] if r["peak_rss_mib"] is not None else f"killed: {r['killed']}"
        lines.append(f"| {r['embedder']} | {r['parameters'] / 1e6:.1f}M | {'on' if r['gradient_checkpointing'] else 'off'} | "
                     f"{r.get('rss_after_load_mib', '')} | {peak} | {r['plan_estimate_mib']} | {r.get('s_per_step', '')} | "
                     f"{' / '.join(map(str, r.get('losses', [])))} |")
    lines += ["", f"Machine: {machine().get('cpu')}, ISA {', '.join(machine().get('isa', []))}."]
    (Path(__file__).resolve().parent / "results" / "embedder-train-memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
