"""Helpers for tests and benchmarks (not used by the pipeline itself).

- Fake stages with the pipeline's contract and no model behind them, for testing the loop (or a
  stage of your own plugged in beside them) in seconds: ``CoEvolver(stages=fake_stages())``.
  Texts are expected to name their topic as ``topic<N>``; the fake LLM writes it into its
  interpretations and the fake embedder maps it to a well-separated direction, so KMeans
  recovers the topics. Every call is recorded in ``FakeStage.calls`` as ``(name, inputs)``.
- The paper's datasets (``read_jsonl``), Ray Train checkpoint probes and a worker killer for the
  fault-tolerance tests, and a random LoRA adapter for serving benchmarks."""

from __future__ import annotations

import json
import os
import random
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from coevo_ray.pipeline.context import RunContext
from coevo_ray.pipeline.embedding import TextsStage
from coevo_ray.rundir import fingerprint
from coevo_ray.tables import read_table

DIM = 16
# CI clones next to shared/; a checkout elsewhere can point at the datasets with COEVO_DATASETS.
DATASETS = Path(os.environ.get("COEVO_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def topic_of(text: str) -> int:
    match = re.search(r"topic(\d+)", text)
    return int(match.group(1)) if match else 0


def fake_vector(text: str, salt: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{salt}:{text}".encode()))
    vec = rng.normal(0, 0.05, DIM).astype(np.float32)
    vec[topic_of(text) % DIM] += 1.0
    return vec


class FakeStage:
    """Keys hash the inputs and the config ``section`` like a real stage; ``build`` logs the call
    and writes ``_write``'s files."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, name: str, section: str | None = None) -> None:
        self.name, self.section = name, section

    def key(self, ctx: RunContext, **inputs: Any) -> str:
        config = getattr(ctx.config, self.section) if self.section else None
        return fingerprint("fake", self.name, ctx.corpus_key, ctx.seed(), config, inputs)

    def build(self, ctx: RunContext, out: Path, **inputs: Any) -> None:
        FakeStage.calls.append((self.name, inputs))
        self._write(ctx, out, **inputs)

    def _write(self, ctx: RunContext, out: Path, **inputs: Any) -> None:
        (out / "done").write_text("")


class FakeInterpret(FakeStage):
    """Candidate c of text i: "about topic<N> (c)" — the greedy one names the text's topic."""

    def _write(self, ctx: RunContext, out: Path, llm, temperatures, step: str = "") -> None:
        rows = []
        for i, text in enumerate(ctx.model_texts()):
            for c, _ in enumerate(temperatures):
                answer = f"about topic{topic_of(text)} ({c}, {Path(llm.engine_dirs[0]).name})"
                rows.append({"id": i, "candidate": c, "text": text, "raw": answer, "interpretation": answer,
                             "keywords": [f"topic{topic_of(text)}", "word"], "fallback": "", "repaired": False,
                             "finish_reason": "stop"})
        pq.write_table(pa.Table.from_pylist(rows), out / "part-0.parquet")


class FakeEmbed(FakeStage):
    def _write(self, ctx: RunContext, out: Path, source: Path, column: str, emb_dir: Path,
               greedy_only: bool = False) -> None:
        table = read_table(source, filters=[("candidate", "=", 0)] if greedy_only else None)
        vectors = np.stack([fake_vector(str(t), emb_dir.name) for t in table.column(column).to_pylist()])
        keep = [c for c in ("id", "candidate") if c in table.column_names]
        pq.write_table(table.select(keep).append_column(
            "embedding", pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), DIM)), out / "part-0.parquet")


class FakeOnText(FakeStage):
    def _write(self, ctx: RunContext, out: Path, generated: Path, emb_dir: Path) -> None:
        (out / "on_text.json").write_text(json.dumps({"matched": 0.9, "shuffled": 0.1, "gap": 0.8, "n": 1}))


class FakePrefer(FakeStage):
    """One pair per text, or none when built with ``pairs=False``."""

    def __init__(self, name: str, pairs: bool = True) -> None:
        super().__init__(name, "prefer")
        self.pairs = pairs

    def _write(self, ctx: RunContext, out: Path, generated: Path, embedded: Path, n_clusters: int,
               iteration: int) -> None:
        (out / "stats.json").write_text(json.dumps({"pairs": len(ctx.corpus) if self.pairs else 0}))


class FakeDPO(FakeStage):
    def _write(self, ctx: RunContext, out: Path, llm, preferences: Path, iteration: int) -> None:
        (out / "dpo_metrics.json").write_text(json.dumps({"steps": 1, "loss": 0.69}))


class FakeTrainEmbedder(FakeStage):
    def _write(self, ctx: RunContext, out: Path, emb_dir: Path, generated: Path, greedy_emb: Path,
               iteration: int) -> None:
        (out / "embedder_metrics.json").write_text(json.dumps({"steps": 1, "mean_loss": 1.0}))


class FakeNames(FakeStage):
    def _write(self, ctx: RunContext, out: Path, llm, requests: list[str]) -> None:
        rows = [{"id": i, "raw": "Cluster of topic%d" % topic_of(r), "finish_reason": "stop"}
                for i, r in enumerate(requests)]
        pq.write_table(pa.Table.from_pylist(rows), out / "part-0.parquet")


def fake_stages(pairs: bool = True) -> dict[str, Any]:
    """A full set of fake stages (the real ``texts`` stage: it loads no model)."""
    return {"texts": TextsStage(), "interpret": FakeInterpret("interpret", "interpret"),
            "embed": FakeEmbed("embed", "embed"), "on_text": FakeOnText("on-text"), "prefer": FakePrefer("prefer", pairs),
            "dpo": FakeDPO("dpo", "train_llm"), "merge": FakeStage("merged"),
            "train_embedder": FakeTrainEmbedder("train-embedder", "train_embedder"), "names": FakeNames("names")}


def read_jsonl(name: str, n: int | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    path = DATASETS / name
    if not path.exists():
        import pytest

        pytest.skip(f"benchmark data not found at {path}")
    rows = [json.loads(line) for line in path.open()]
    if n is not None:
        random.Random(seed).shuffle(rows)
        rows = rows[:n]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def checkpoint_dirs(storage: Path) -> list[Path]:
    """Ray Train's checkpoint directories under a storage path (not its checkpoint_manager_snapshot.json)."""
    return [p for p in storage.rglob("checkpoint_*") if p.is_dir()]


def kill_a_train_worker_after_checkpoints(storage: Path, n_checkpoints: int = 2, timeout_s: float = 600):
    """Start a thread that SIGKILLs one Ray Train worker once ``storage`` holds ``n_checkpoints``
    checkpoint directories (two: the first one is registered by then — a directory appears while
    its upload is still in flight). Returns (thread, record): ``record["pid"]`` is the killed
    process, ``record["files"]`` the file names the checkpoints held then (they are deleted from
    the storage once the fit is exported)."""
    import signal
    import threading
    import time

    import psutil

    record: dict = {}

    def run() -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            checkpoints = checkpoint_dirs(storage)
            if len(checkpoints) >= n_checkpoints:
                workers = [p for p in psutil.process_iter(["cmdline"])
                           if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
                if workers:
                    record["files"] = {f.name for c in checkpoints for f in c.rglob("*") if f.is_file()}
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    record["pid"] = workers[-1].pid
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, record


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def random_lora_adapter(base_dir: str | os.PathLike, out_dir: str | os.PathLike, rank: int = 64,
                        b_std: float = 0.05, seed: int = 0,
                        target_modules: tuple[str, ...] = LORA_TARGETS) -> Path:
    """An untrained but non-zero LoRA adapter: it changes the outputs and costs exactly what a DPO
    adapter of the same rank costs to serve (throughput checks, serving-path tests)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cfg = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(target_modules), init_lora_weights=False,
                     task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, b_std)
    peft_model.save_pretrained(str(out_dir))
    return Path(out_dir)
