"""How a Ray Data stage's actor pool is laid out, and the ``map_batches`` arguments that say it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageResources:
    """How a stage's actor pool is laid out; the defaults fit a 2-core machine."""

    # None: one actor per GPU (group) when the cluster has GPUs, else one (coevo_ray.hardware).
    actors: int | None = None
    cpus_per_actor: float = 1.0  # 2 on a 2-CPU cluster starves the upstream read step forever
    # "auto": one GPU per actor (a vLLM engine's tensor x pipeline parallel size) when the
    # cluster has GPUs, else none; an actor given no GPU sees none (coevo_ray.hardware).
    gpus_per_actor: float | str = "auto"
    batch_size: int = 64
    threads: int | None = None
    # Generation: requests each actor keeps queued in its engine, across Ray Data batches (as
    # many batches run at once as this takes). Twice vLLM's CPU max_num_seqs (256), so a full
    # batch is always waiting while one runs; README, "vLLM on CPU".
    requests_in_flight: int = 512

    def __post_init__(self) -> None:
        from coevo_ray.errors import InputError

        if self.actors is not None and (isinstance(self.actors, bool) or int(self.actors) < 1):
            raise InputError(f"actors must be a positive integer or None (one per GPU), got {self.actors!r}")
        if self.gpus_per_actor != "auto" and (isinstance(self.gpus_per_actor, str) or float(self.gpus_per_actor) < 0):
            raise InputError(f"gpus_per_actor must be 'auto' or a number >= 0, got {self.gpus_per_actor!r}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def resolved(self) -> bool:
        return self.actors is not None and self.gpus_per_actor != "auto"

    def map_batches_kwargs(self, concurrent_calls: int | None = None) -> dict[str, Any]:
        """``Dataset.map_batches`` arguments for a callable class on this pool; with
        ``concurrent_calls`` > 1 each actor runs that many batches at once, in threads. ``"auto"``
        fields must have been decided by the hardware plan (``coevo_ray.hardware.actor_layout``)."""
        import ray

        if not self.resolved:
            from coevo_ray.errors import InputError

            raise InputError("map_batches_kwargs needs resources with actors and gpus_per_actor decided: pass them "
                             "through coevo_ray.hardware.actor_layout first")
        calls = {} if concurrent_calls is None else {"max_concurrent_calls_per_actor": concurrent_calls,
                                                     "enable_true_multi_threading": concurrent_calls > 1}
        return {"batch_size": self.batch_size, "compute": ray.data.ActorPoolStrategy(size=self.actors, **calls),
                "num_cpus": self.cpus_per_actor, "num_gpus": self.gpus_per_actor,
                "runtime_env": actor_runtime_env(self.threads, self.gpus_per_actor)}


#: OpenMP threads spin this many times at a barrier before sleeping (libgomp: torch's and vLLM-CPU's
#: threads). libgomp's default spins 300 times longer: beside another busy process, threads bound
#: to a shared core then burn their time slices waiting, and generation slows far beyond the fair
#: share; this limit costs a little on a quiet machine (benchmarks/results/throughput-admission.md).
#: A GOMP_SPINCOUNT set by the user is kept.
GOMP_SPINCOUNT = "1000"


def actor_runtime_env(threads: int | None, gpus: float = 0.0) -> dict:
    """Process-wide thread settings for an actor. Ray sets OMP_NUM_THREADS to the actor's
    num_cpus; torch.set_num_threads in ``__init__`` only reaches that thread, and vLLM-CPU aborts
    when its attention metadata (built on another thread) disagrees with the kernel's thread
    count. OpenMP's spin limit (``GOMP_SPINCOUNT``) must be in the environment the process starts
    with. Ray Data's actor pools already restart dead actors and retry their batches
    (max_restarts=-1)."""
    n = threads or os.cpu_count() or 1
    return {"env_vars": {"OMP_NUM_THREADS": str(n), "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", GOMP_SPINCOUNT),
                         **hidden_gpus_env(gpus)}}


def hidden_gpus_env(gpus: float) -> dict[str, str]:
    """Environment of a Ray worker given ``gpus`` GPUs: none visible when it was given none."""
    return {} if gpus > 0 else {"CUDA_VISIBLE_DEVICES": ""}
