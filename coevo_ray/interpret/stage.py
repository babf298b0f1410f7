"""Step 1 of the pipeline on Ray Data: every text → one interpretation per temperature.

Fan-out happens inside the actor: one request per (text, temperature), all of a batch handed to
the engine at once so vLLM schedules them together. We do not use ``ray.data.llm``'s processor:
it keeps only the first sample when n > 1 and takes one SamplingParams per row, while the
paper's candidates need several temperatures per text, each seeded per request so a rerun
reproduces it whatever the batching.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from coevo_ray.interpret.engine import EngineSpec
from coevo_ray.interpret.engine_loop import EngineLoop
from coevo_ray.interpret.parsing import parse_interpretation
from coevo_ray.interpret.prompts import TaskDescription, render_prompt, worked_example
from coevo_ray.resources import StageResources
from coevo_ray.runtime import in_input_order

logger = logging.getLogger(__name__)


#: Bumped when the generation table's columns change, so cached stages of an older layout are rebuilt.
GENERATION_SCHEMA = 2  # 2: finish_reason, copied_example fallback


def request_seed(seed: int, row_id: int, candidate: int) -> int:
    """A per-request seed that depends only on (global seed, row, candidate)."""
    digest = hashlib.blake2b(f"{seed}:{row_id}:{candidate}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class GenerationSettings:
    task: str
    prompt_style: str = "guided"
    temperatures: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    max_tokens: int = 96
    seed: int = 0
    exemplars: tuple[str, ...] = ()  # corpus texts shown by the "exemplars" prompt style
    admission: str = "per-batch"  # InterpretConfig.admission


def _configure_cpu_env(threads: int | None) -> None:
    # Must happen before vllm is imported in this process.
    n = threads or os.cpu_count() or 1
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # unset → vLLM wants 92% of RAM free
    # By default vLLM keeps one core for its front end; bind every core we were given.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{n - 1}")
    # In-process engine core: loads several times faster, at slightly lower tok/s.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class InterpretUDF:
    """Ray Data callable class: one engine per actor, reused for every batch. Calls may run in
    several threads at once (``interpret_dataset`` allows it): their requests share the engine."""

    def __init__(self, spec: EngineSpec, settings: GenerationSettings, threads: int | None = None) -> None:
        if spec.backend == "vllm":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(spec.kv_cache_gib)
            _configure_cpu_env(threads)
        from coevo_ray.runtime import actor_threads

        actor_threads(threads)
        self.engine = EngineLoop(spec, continuous=settings.admission == "continuous")
        self.settings = settings
        self.desc = TaskDescription.parse(settings.task)
        self.example = worked_example(settings.prompt_style)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        s = self.settings
        ids = [int(i) for i in batch["id"]]
        texts = [str(t) for t in batch["text"]]
        prompts = [render_prompt(self.engine.tokenizer, t, self.desc, s.prompt_style, s.exemplars)
                   for t in texts]
        req_prompts, req_temps, req_seeds, req_rows = [], [], [], []
        for row, (rid, prompt) in enumerate(zip(ids, prompts)):
            for cand, temp in enumerate(s.temperatures):
                req_prompts.append(prompt)
                req_temps.append(temp)
                req_seeds.append(request_seed(s.seed, rid, cand))
                req_rows.append((row, cand))
        completions = self.engine.generate(req_prompts, req_temps, req_seeds, s.max_tokens)
        out: dict[str, list] = {k: [] for k in ("id", "candidate", "temperature", "text", "raw",
                                                "finish_reason", "reasoning", "keywords", "interpretation",
                                                "fallback", "repaired")}
        for (row, cand), (answer, finish_reason) in zip(req_rows, completions):
            parsed = parse_interpretation(answer, texts[row], self.example)
            out["id"].append(ids[row])
            out["candidate"].append(cand)
            out["temperature"].append(float(s.temperatures[cand]))
            out["text"].append(texts[row])
            out["raw"].append(answer)
            out["finish_reason"].append(finish_reason)
            out["reasoning"].append(parsed.reasoning)
            out["keywords"].append(parsed.keywords)
            out["interpretation"].append(parsed.text)
            out["fallback"].append(parsed.fallback or "")
            out["repaired"].append(parsed.repaired)
        return out


def interpret_dataset(ds, spec: EngineSpec, settings: GenerationSettings, resources: StageResources):
    """Lazily map a Dataset of ``{id, text}`` to one row per (text, temperature). ``"auto"``
    fields of ``resources`` are decided by the hardware plan for the connected cluster (an
    engine spanning ``tensor_parallel_size`` GPUs gets that many per actor)."""
    from dataclasses import replace

    from coevo_ray.hardware import actor_layout, current_topology, engine_gpus

    if not resources.resolved:
        resources = actor_layout(resources, current_topology(), engine_gpus(spec.engine_kwargs))
    if resources.gpus_per_actor > 0 and spec.device == "cpu":
        spec = replace(spec, device="cuda")  # the transformers engine on the actor's GPU
    n_temps = len(settings.temperatures)
    if settings.admission == "per-batch":
        # A batch runs alone: big enough to fill the engine (requests_in_flight requests), with a
        # second call queued behind it so the next batch is ready when one finishes.
        resources = replace(resources, batch_size=max(resources.batch_size, -(-resources.requests_in_flight // n_temps)))
        calls = 2
    else:
        calls = max(1, -(-resources.requests_in_flight // (resources.batch_size * n_temps)))
    out = ds.map_batches(InterpretUDF, fn_constructor_kwargs={"spec": spec, "settings": settings,
                                                              "threads": resources.threads},
                         **resources.map_batches_kwargs(calls))
    return in_input_order(out)
