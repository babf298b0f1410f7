"""Named setting bundles, the same for ``CoEvolver(profile=...)`` and the CLI's ``--profile``.

``quick`` (the default of both) is sized for a laptop-class CPU: one iteration, two candidates,
short interpretations, ≤ 96 DPO pairs and an embedder learning rate chosen by the embedder's size
(:func:`embedder_learning_rate`). ``paper`` is the paper's appendix A.1 (4 candidates, 2 iterations, R = 100, ≤ 10k DPO pairs,
embedder lr 3e-7; the config dataclasses' own defaults) with its final step, KMeans on the
interpretations alone. ``gpu`` is ``paper`` with the paper's models by hub id (Qwen2.5-7B-Instruct,
e5-large) for a GPU cluster: bf16 engines serving the DPO adapter through vLLM LoRA, DPO under
DeepSpeed ZeRO-2 (the hardware plan decides all of it once the cluster reports GPUs); the weights
must be in the local Hugging Face cache or given as directories. ``None``: no profile, the
dataclasses' defaults (paper A.1 with ``representation="auto"``).

Explicit parameters win over the profile's, key by key inside a section given as a dict; a
section given as a config object replaces the profile's section whole.
"""

from __future__ import annotations

from typing import Any

#: What ``CoEvolver`` and ``coevo-ray`` use when no profile is named.
DEFAULT_PROFILE = "quick"

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "iterations": 1,
        "interpret": {"temperatures": (0.0, 1.0), "max_tokens": 48},
        "prefer": {"n_runs": 20, "max_pairs": 96},
        "train_embedder": {"learning_rate": None},  # None: embedder_learning_rate(the embedder's size)
    },
    "paper": {"representation": "interpretation"},
    "gpu": {
        "llm": "Qwen/Qwen2.5-7B-Instruct",
        "embedder": "intfloat/e5-large",
        "representation": "interpretation",
        "interpret": {"dtype": "bfloat16", "adapter_serving": "lora"},
        "train_llm": {"bf16": True, "deepspeed": True},
    },
}


#: ``learning_rate=None``'s embedder rate: below ``LARGE_EMBEDDER_PARAMS`` parameters the usual
#: sentence-transformers fine-tuning rate, which a 22M MiniLM needs to move at all over a few
#: hundred pairs (the paper's 3e-7 is for e5-large); from there a tenth of it: EmbeddingGemma-300m
#: trained at the small model's rate on a 135M LLM's answers clusters the texts worse after its
#: second round, at a tenth better than untrained (benchmarks/results/quality-cpu-large.md, bank77).
SMALL_EMBEDDER_LR, LARGE_EMBEDDER_LR, LARGE_EMBEDDER_PARAMS = 1e-5, 1e-6, 100_000_000


def embedder_learning_rate(parameters: int) -> float:
    """The embedder learning rate ``EmbedderTrainConfig(learning_rate=None)`` stands for, for an
    embedder of ``parameters`` parameters (0: not known, taken as small)."""
    return LARGE_EMBEDDER_LR if parameters >= LARGE_EMBEDDER_PARAMS else SMALL_EMBEDDER_LR


def profile_settings(name: str | None) -> dict[str, Any]:
    """A copy of profile ``name``'s settings (``None``: none)."""
    from coevo_ray.errors import InputError

    if name is None:
        return {}
    if name not in PROFILES:
        raise InputError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (or None: no profile)")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PROFILES[name].items()}


def with_profile(name: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` on top of profile ``name``: a parameter that is None takes the profile's value;
    a section dict is merged into the profile's section key by key (the caller's keys win)."""
    merged = profile_settings(name)
    for key, value in params.items():
        if value is None:
            continue
        base = merged.get(key)
        merged[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return merged
