"""Ray session and hardware facts that pick the CPU or GPU path."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def ensure_ray(address: str | None = None, **init_kwargs) -> None:
    """Connect to (or start) Ray once; a job submitted with ``ray job submit`` joins its cluster."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    init_kwargs.setdefault("log_to_driver", True)
    init_kwargs.setdefault("ignore_reinit_error", True)
    ray.init(address=address, **init_kwargs)
    res = ray.cluster_resources()
    logger.info("Ray: %d node(s), %s CPU, %s GPU", len(ray.nodes()), res.get("CPU", 0), res.get("GPU", 0))


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0


def actor_threads(requested: int | None = None) -> int:
    """Threads for torch inside an actor. Ray pins OMP_NUM_THREADS to the actor's num_cpus (1),
    which would leave the other cores idle while one stage runs at a time."""
    import torch

    n = requested or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
