"""Helpers the benchmark scripts share: real texts, machine facts, in-process generation."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache"  # one folder per benchmark
DATASETS = Path(os.environ.get("COEVO_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def texts(n: int, name: str = "bank77.jsonl") -> list[str]:
    """``n`` texts spread evenly over the file (deterministic)."""
    rows = [json.loads(line) for line in (DATASETS / name).open()]
    return [r["text"] for r in rows[:: max(1, len(rows) // n)][:n]]


def machine() -> dict:
    """What the figures depend on: the development machines differ between sessions (AVX-512 with
    native bf16 on some, AVX2 only on others), and so do GEMM speed and the best dtype."""
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "commit": code_commit()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    info["cpu"] = fields.get("model name")
    info["isa"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    return info


def code_commit() -> str | None:
    """The commit of the code that measured (``+dirty`` when the tree had uncommitted changes)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def gemm_gflops(dtype: str = "float32", seconds: float = 3.0) -> float:
    """torch's square-matmul speed on every core: the best of 1024² and 2048² over ``seconds``
    each (the limit generation and training are compared with)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    dt, best = getattr(torch, dtype), 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        a @ b  # warm-up
        reps = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return round(best / 1e9, 1)


def count_tokens(tok, outputs: list[str]) -> int:
    return sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs)


def generate_in_process(spec, settings, batch: list[str], batch_size: int, warmup: int = 0):
    """(raw outputs, engine start s, generation s, tokenizer) with the stage's own UDF; the first
    ``warmup`` texts go through once, untimed (first-call allocations would otherwise count)."""
    import numpy as np

    from coevo_ray.interpret.stage import InterpretUDF

    t0 = time.perf_counter()
    udf = InterpretUDF(spec, settings)
    start_s = time.perf_counter() - t0
    if warmup:
        udf({"id": np.arange(warmup), "text": np.array(batch[:warmup], dtype=object)})
    t1 = time.perf_counter()
    raw: list[str] = []
    for i in range(0, len(batch), batch_size):
        chunk = batch[i : i + batch_size]
        out = udf({"id": np.arange(i, i + len(chunk)), "text": np.array(chunk, dtype=object)})
        raw.extend(out["raw"])
    return raw, start_s, time.perf_counter() - t1, udf.engine.tokenizer


def perturbed_candidates(greedy, n_candidates: int, seed: int = 0):
    """(N, C, D): candidate 0 is the real vector, the others it plus noise (the selection cost
    does not depend on what the vectors say)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    noise = rng.normal(scale=0.05, size=(len(greedy), n_candidates - 1, greedy.shape[1])).astype(np.float32)
    return np.concatenate([greedy[:, None, :], greedy[:, None, :] + noise], axis=1)


def write_result(name: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def generation_parser(description: str, n: int):
    """The options every generation benchmark takes."""
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=n, help="bank77 texts (one greedy request each)")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--llm", default="smollm2-135m-instruct")
    p.add_argument("--dtype", default="float32")
    return p


def stratified_indices(labels: list[str], n: int, seed: int):
    """Indices of a seeded sample that keeps the label proportions (every label at least once
    when n allows): rank each row within its label in random order, take the lowest ranks."""
    import numpy as np

    if not n or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    sizes, seen, key = {}, {}, np.empty(len(labels))
    for y in labels:
        sizes[y] = sizes.get(y, 0) + 1
    for i in order:
        y = labels[i]
        seen[y] = seen.get(y, 0) + 1
        key[i] = (seen[y] - 0.5) / sizes[y] + rng.random() * 1e-9
    return np.sort(np.argsort(key, kind="stable")[:n])


def labelled_sample(dataset: str, n: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random sample of a paper dataset: texts as the models see them, and labels."""
    from coevo_ray.data import load_corpus

    corpus = load_corpus(DATASETS / f"{dataset}.jsonl", label_field="label").sample(n, seed)
    return corpus.model_texts(), list(corpus.labels)


class PeakMemory:
    """Peak RSS of this process (ru_maxrss) and, sampled every 0.2 s, the summed RSS of the Ray
    worker processes this driver's cluster started (its descendants; shared pages count in each)."""

    def __init__(self) -> None:
        self.workers_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    cmd = p.cmdline()
                    if cmd and cmd[0].startswith("ray::"):
                        total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.workers_peak = max(self.workers_peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def driver_mib() -> float:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def variant_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` distinct clinc150_full texts and their labels; beyond the file's 22.5k, seeded
    word-level variants of its texts (each keeps its source's label)."""
    import random

    rows = [(r["text"], r["label"]) for r in map(json.loads, (DATASETS / "clinc150_full.jsonl").open())]
    rng = random.Random(seed)
    rng.shuffle(rows)
    out, labels = [t for t, _ in rows[:n]], [y for _, y in rows[:n]]
    seen = set(out)
    filler = ("please", "now", "today", "quickly", "again", "for me", "thanks", "hey", "ok so", "actually")
    while len(out) < n:
        text, label = rng.choice(rows)
        words = text.split()
        if len(words) > 3 and rng.random() < 0.5:
            del words[rng.randrange(len(words))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(filler))
        variant = " ".join(words)
        if variant not in seen:
            seen.add(variant)
            out.append(variant)
            labels.append(label)
    return out, labels
