"""Named setting bundles for the CLI and the benchmarks.

``paper`` is the library's defaults (paper A.1: 4 candidates, 2 iterations, R = 100, ≤ 10k DPO
pairs, embedder lr 3e-7) with the paper's final step: KMeans on the interpretations alone, where
the library clusters text ⊕ interpretation by default. ``quick`` is sized for a laptop-class
CPU, where one DPO step on 8 pairs of SmolLM2-135M takes ~17 s: one iteration, two candidates,
short interpretations, ≤ 96 DPO pairs (12 steps on 2 workers), and an embedder learning rate a small
model actually moves at. ``gpu`` is the paper's configuration (A.1) with its models by hub id
(Qwen2.5-7B-Instruct, e5-large) for a GPU cluster: bf16 engines serving the DPO adapter
through vLLM LoRA, DPO under DeepSpeed ZeRO-2 (all decided by the hardware plan once the cluster
reports GPUs). The weights must be in the local Hugging Face cache or given as directories.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"representation": "interpretation"},
    "gpu": {
        "llm": "Qwen/Qwen2.5-7B-Instruct",
        "embedder": "intfloat/e5-large",
        "representation": "interpretation",
        "interpret": {"dtype": "bfloat16", "adapter_serving": "lora"},
        "train_llm": {"bf16": True, "deepspeed": True},
    },
    "quick": {
        "iterations": 1,
        "interpret": {"temperatures": (0.0, 1.0), "max_tokens": 48},
        "prefer": {"n_runs": 20, "max_pairs": 96},
        "train_embedder": {"learning_rate": 1e-5},
    },
}


def profile_settings(name: str) -> dict[str, Any]:
    from coevo_ray.errors import InputError

    if name not in PROFILES:
        raise InputError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PROFILES[name].items()}
