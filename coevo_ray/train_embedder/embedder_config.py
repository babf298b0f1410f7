"""Embedder training settings (paper 3.3 and A.1). Paper values are the defaults; the comments
say where a small CPU model may want something else."""

from __future__ import annotations

from dataclasses import dataclass, replace

from coevo_ray.choices import NegativeSource, check_choice
from coevo_ray.errors import InputError

@dataclass
class EmbedderTrainConfig:
    enabled: bool = True  # False: the embedder stays as loaded (the "w/o training" ablation)
    # Paper A.1: Adam, lr 3e-7, batch 32 — tuned for e5-large (335M). A 22M MiniLM barely moves
    # at 3e-7 over a few hundred pairs. None: the rate for the embedder's size, set when the fit
    # starts (coevo_ray.profiles.embedder_learning_rate; the quick profile's choice).
    learning_rate: float | None = 3e-7
    batch_size: int = 32  # per worker: in-batch negatives come from the worker's own batch
    epochs: int = 1  # not given in the paper
    max_steps: int = -1  # > 0 caps the optimizer steps (tests, quick profiles)
    tau: float = 0.1  # paper: τ = 0.1
    dec_weight: float = 1.0  # paper: λ = 1 (10 on ArxivS2S, Reddit, StackEx)
    dec_clusters: int = 256  # paper: K = 256, capped at the number of texts
    negatives: str = "texts"  # eq. 12 as written; "interpretations" = in-batch positives (MNRL)
    dropout_pair: bool = True  # eq. 13; False = the paper's "w/o Dropout" ablation
    num_workers: int | None = None  # None: one per GPU, or 2 CPU workers (fewer where memory is short)
    # Recompute activations in the backward pass (same gradients, less memory). None: the
    # hardware plan's choice (on for CPU workers from 100M parameters, coevo_ray.hardware).
    gradient_checkpointing: bool | None = None
    cpus_per_worker: float = 1.0
    max_failures: int = 1  # Ray Train restarts the workers this often, from the last checkpoint
    # Report a checkpoint (weights + Adam state + step, safetensors/JSON) every N steps, so a
    # killed worker costs at most N steps; 0 = only the final model.
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("negatives source", self.negatives, NegativeSource)
        if self.batch_size < 2:
            raise InputError(f"embedder batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        if self.tau <= 0 or (self.learning_rate is not None and self.learning_rate <= 0):
            raise InputError("tau and learning_rate must be > 0")
        if self.checkpoint_every < 0:
            raise InputError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.dec_clusters < 2:
            raise InputError(f"dec_clusters must be >= 2, got {self.dec_clusters}")

    def for_embedder(self, parameters: int) -> "EmbedderTrainConfig":
        """This configuration with ``learning_rate=None`` replaced by the rate for an embedder of
        ``parameters`` parameters (:func:`coevo_ray.profiles.embedder_learning_rate`)."""
        if self.learning_rate is not None:
            return self
        from coevo_ray.profiles import embedder_learning_rate

        return replace(self, learning_rate=embedder_learning_rate(parameters))
