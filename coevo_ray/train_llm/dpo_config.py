"""DPO settings. Every paper value is set explicitly: TRL's own defaults differ (lr 1e-6,
beta 0.1, bf16 on, gradient checkpointing on)."""

from __future__ import annotations

from dataclasses import dataclass, field

from coevo_ray.errors import InputError
from coevo_ray.hardware import VLLM_LORA_RANKS


@dataclass
class LLMTrainConfig:
    learning_rate: float = 1e-5  # paper A.1 (TRL default 1e-6)
    beta: float = 0.25  # paper A.1 (TRL default 0.1)
    per_device_batch_size: int = 4  # paper A.1: batch 4 (per worker here)
    # Pairs per worker step = per_device_batch_size × this. A 151k-token vocabulary (Qwen) makes
    # batch 4 need far more memory per CPU worker than 1 × 4 (logits of chosen, rejected, reference).
    gradient_accumulation_steps: int = 1
    lora_r: int = 64  # paper A.1
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: float = 1.0
    max_steps: int = -1  # > 0 caps the steps (tests, quick profiles)
    max_length: int = 512
    gradient_checkpointing: bool = False  # TRL default True; off: small models, CPU
    # None: the hardware plan's (bf16 on GPU workers: a 7B base is 28 GB in fp32; fp32 on CPUs).
    bf16: bool | None = None
    # Score only the completion tokens in TRL's fused LM head on CPUs too (TRL does so on GPUs
    # only; completion_scoring.py). Same loss; False keeps TRL's own choice, for comparisons.
    compact_lm_head: bool = True
    # Run each pair's prompt once, chosen and rejected answers packed behind it with a block mask
    # (shared_prompt.py). Same loss; False keeps TRL's [prompt + chosen; prompt + rejected] batch.
    shared_prompt: bool = True
    # None: DeepSpeed ZeRO-2 on GPU workers, off on CPU (it runs there too, on DeepSpeed's CPU
    # accelerator over gloo, but DDP is faster on a few cores).
    deepspeed: bool | None = None
    num_workers: int | None = None  # None: one per GPU, or 2 CPU workers on a CPU cluster
    cpus_per_worker: float = 1.0
    max_failures: int = 1  # Ray Train restarts the workers this often, from the last checkpoint
    # Report a checkpoint (adapter + optimizer + trainer state) every N optimizer steps, so a
    # killed worker costs at most N steps; 0 = only the final adapter.
    checkpoint_every: int = 50
    seed: int = 0
    logging_steps: int = 1
    # Other DPOConfig arguments, e.g. {"precompute_ref_log_probs": True}: with one epoch that is the
    # same reference work moved ahead of the first step (README, "Training"); it pays off with more.
    extra_dpo_args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lora_target_modules = tuple(self.lora_target_modules)
        if not 1 <= self.lora_r <= VLLM_LORA_RANKS[-1]:
            # vLLM serves adapters up to its largest max_lora_rank; a larger one could not be served.
            raise InputError(f"lora_r must be between 1 and {VLLM_LORA_RANKS[-1]} (vLLM's largest LoRA rank), "
                             f"got {self.lora_r}")
        if self.per_device_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise InputError("per_device_batch_size and gradient_accumulation_steps must be >= 1")
        if self.checkpoint_every < 0:
            raise InputError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
