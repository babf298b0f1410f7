"""What a fit will cost, said before it starts: the GEMM work of its generation, DPO, embedding and
embedder-training stages (``benchmarks/demo_floor.py`` counts the same FLOPs on a finished run)
at this machine's matrix speed, measured now, times the share of that speed those stages reached
in the measured runs, plus the fixed start-up costs of the stages.

A rough figure for planning, logged in one line; on GPU clusters there is no measured rate to
scale, and the line says so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coevo_ray.metrics.on_text import ON_TEXT_SAMPLE

if TYPE_CHECKING:
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.hardware import HardwarePlan

logger = logging.getLogger(__name__)

# Shares of the fp32 GEMM limit the LLM stages reach, and the seconds the other stages take per
# start, as measured on the 2-core machines (benchmarks/results/demo_floor.md, training_speed).
GENERATION_SHARE = 0.45
DPO_SHARE = 0.6
# The embedder's passes and its training (EmbeddingGemma in a cpu-large fit: quality-cpu-large.json,
# reddit's stage timings); training also recomputes the forward pass (gradient checkpointing).
EMBEDDING_SHARE = 0.7
EMBEDDER_TRAINING_SHARE = 0.35
ENGINE_START_S = 15.0  # a generation stage's actor start and engine load (SmolLM2-sized)
TRAINING_START_S = 35.0  # a Ray Train run's start, imports, model load and export
#: Tokens of the guided prompt every request shares (prefix-cached once per stage).
SHARED_PROMPT_TOKENS = 154
#: Output tokens per answer as a share of max_tokens (structured answers end before the cap).
OUTPUT_FILL = 0.85


def parameter_counts(model_dir: Path) -> tuple[int, int]:
    """(non-embedding parameters, LM-head parameters) from the safetensors headers (tied or not,
    the head is a vocabulary × hidden GEMM per scored position)."""
    from safetensors import safe_open

    total, head = 0, 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), "np") as fh:
            for name in fh.keys():
                size = 1
                for dim in fh.get_slice(name).get_shape():
                    size *= dim
                if "embed_tokens" in name or "word_embeddings" in name or name.endswith("lm_head.weight"):
                    head = max(head, size)  # a tied head is the embedding matrix
                    continue
                total += size
    return total, head


def generation_flops(body: int, head: int, shared: int, own: int, output: int) -> float:
    """GEMM FLOPs of a generation stage: 2 × non-embedding parameters per computed token (the
    shared prompt once, each request's own prompt part, every output token) and 2 × LM-head
    parameters per output token."""
    return 2.0 * body * (shared + own + output) + 2.0 * head * output


def dpo_flops(body: int, head: int, prompt: int, answers: int) -> float:
    """GEMM FLOPs of DPO with one prompt per pair: 4 × non-embedding parameters per token for the
    policy's forward and backward (LoRA), 2 × for the reference forward, 6 × LM-head parameters
    per answer token (completion-only scoring)."""
    return 6.0 * body * (prompt + answers) + 6.0 * head * answers


def embedding_flops(body: int, tokens: float) -> float:
    """GEMM FLOPs of embedding ``tokens`` tokens: 2 × non-embedding parameters per token."""
    return 2.0 * body * tokens


def embedder_training_flops(body: int, pairs: int, text: float, interpretation: float) -> float:
    """GEMM FLOPs of one embedder round over ``pairs`` (text, interpretation) pairs: each pair's
    text twice (InfoNCE and the dropout pair) and its interpretation, forward, backward and a
    recomputed forward: 8 × non-embedding parameters per token."""
    return 8.0 * body * pairs * (2 * text + interpretation)


def matmul_gflops(seconds: float = 0.25, n: int = 1024) -> float:
    """fp32 matrix-multiply speed of this process's BLAS (NumPy: the driver does not import torch)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


@dataclass(frozen=True)
class FitCost:
    answers: int
    pairs: int
    generation_s: float
    dpo_s: float
    embedder_s: float  # embedding passes and embedder training
    other_s: float
    gflops: float
    streamed: int = 0  # rows of a fit on a sample that the final LLM answers once, after the loop
    stream_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.generation_s + self.dpo_s + self.embedder_s + self.other_s + self.stream_s

    def describe(self) -> str:
        def minutes(s: float) -> str:
            return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"

        stream = (f", the streaming pass over {self.streamed:,} more rows ≈ {minutes(self.stream_s)}"
                  if self.streamed else "")
        return (f"cost estimate: {self.answers:,} LLM answers ≈ {minutes(self.generation_s)}, ≤ {self.pairs:,} DPO "
                f"pairs ≈ {minutes(self.dpo_s)}, embedder ≈ {minutes(self.embedder_s)}, other stages ≈ "
                f"{minutes(self.other_s)}{stream}: about "
                f"{minutes(self.total_s)} on this machine (matrix speed {self.gflops:.0f} GFLOP/s measured now; "
                "a rough figure, see docs/performance.md)")


def estimate(config: "CoEvolverConfig", n_texts: int, mean_chars: float, llm_dir: Path, embedder_dir: Path,
             gflops: float | None = None, streamed: int = 0) -> FitCost:
    """The cost of fitting ``config`` on ``n_texts`` texts of ``mean_chars`` characters, and of
    streaming ``streamed`` more rows through the final LLM and embedder (a fit on a sample)."""
    interp, last = config.interpret, config.iterations
    temps = len(interp.temperatures)
    # Each LLM generates once: every temperature when another iteration follows, greedy otherwise.
    per_text = [temps if t < last else 1 for t in range(last + 1)]
    answers = n_texts * sum(per_text)
    own = mean_chars / 4 + 8  # about 4 characters per token, plus the chat template's own tokens
    out = OUTPUT_FILL * interp.max_tokens
    body, head = parameter_counts(llm_dir)
    gflops = gflops or matmul_gflops()
    gen_flops = sum(generation_flops(body, head, SHARED_PROMPT_TOKENS, n_texts * own, n_texts * k * out)
                    for k in per_text)
    pairs_per_iteration = min(config.prefer.max_pairs, n_texts * (temps - 1))
    pairs = pairs_per_iteration * last
    dpo = dpo_flops(body, head, pairs * (SHARED_PROMPT_TOKENS + own), pairs * 2 * out)
    # Per iteration the embedder embeds the greedy answers, then (trained) the answers the next
    # step needs (every candidate when an iteration follows) and the texts, and a sample of both
    # for the on-text guard; it trains on one (text, greedy answer) pair per text.
    embedder_body = parameter_counts(embedder_dir)[0]
    guard = min(ON_TEXT_SAMPLE, n_texts) * (own + out)
    embedded = sum(n_texts * (out + k * out + 2 * own) + guard for k in per_text)
    rounds = (last + 1) * int(config.train_embedder.enabled)
    embedder_s = (embedding_flops(embedder_body, embedded) / (EMBEDDING_SHARE * gflops * 1e9)
                  + rounds * embedder_training_flops(embedder_body, n_texts, own, out)
                  / (EMBEDDER_TRAINING_SHARE * gflops * 1e9))
    trainings = last + rounds
    engines = (last + 1) + int(config.cluster.name_clusters) + last * int(last > 0)  # generations, names, merges
    # The pass: one greedy answer per row, each row's text and answer embedded, and per unit a
    # generation and an embedding actor pool.
    units = -(-streamed // config.stream_unit_rows)
    stream_flops = units * generation_flops(body, head, SHARED_PROMPT_TOKENS, 0, 0) + generation_flops(
        body, head, 0, streamed * own, streamed * out)
    stream_s = (stream_flops / (GENERATION_SHARE * gflops * 1e9) + 2 * units * ENGINE_START_S
                + embedding_flops(embedder_body, streamed * (own + out)) / (EMBEDDING_SHARE * gflops * 1e9))
    return FitCost(answers=answers, pairs=pairs, generation_s=gen_flops / (GENERATION_SHARE * gflops * 1e9),
                   dpo_s=dpo / (DPO_SHARE * gflops * 1e9), embedder_s=embedder_s,
                   other_s=trainings * TRAINING_START_S + engines * ENGINE_START_S, gflops=gflops,
                   streamed=streamed, stream_s=stream_s)


def log_estimate(config: "CoEvolverConfig", texts: list[str], plan: "HardwarePlan", llm_dir: Path,
                 embedder_dir: Path, streamed: int = 0) -> FitCost | None:
    """Log the estimate of a fit before it starts (one line); None on GPU clusters. ``streamed``:
    the rows outside the sample of a fit on a sample."""
    if plan.topology.gpus:
        logger.info("cost estimate: none for GPU clusters (no measured rate; docs/performance.md gives the formula)")
        return None
    try:
        cost = estimate(config, len(texts), sum(map(len, texts)) / max(len(texts), 1), llm_dir, embedder_dir,
                        streamed=streamed)
    except Exception as exc:  # noqa: BLE001 — an estimate never stops a fit (weights not in safetensors, …)
        logger.info("cost estimate: unavailable (%s: %s)", type(exc).__name__, exc)
        return None
    # The rates are fp32 GEMM's (NumPy: the driver does not import torch, so bf16 is not measured).
    bf16 = " (the LLM stages at fp32 speed: this fit's LLM runs bf16)" if plan.engine_dtype == "bfloat16" else ""
    logger.info("%s%s", cost.describe(), bf16)
    return cost
