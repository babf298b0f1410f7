"""The Ray session, Ray Train plumbing (storage, checkpoints, ranks) and worker set-up. What
hardware there is and what runs where is decided in :mod:`coevo_ray.hardware`."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from coevo_ray.errors import TrainingError

logger = logging.getLogger(__name__)


def ensure_ray(address: str | None = None, quiet: bool = False, log_to_driver: bool = True, **init_kwargs) -> None:
    """Connect to (or start) Ray once; a job submitted with ``ray job submit`` joins its cluster.
    ``quiet`` turns Ray Data's progress bars off (the stage lines say how far a fit is);
    ``log_to_driver=False`` leaves what the workers print in Ray's log files (only for a session
    this call starts)."""
    import ray

    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    init_kwargs["log_to_driver"] = log_to_driver
    init_kwargs.setdefault("ignore_reinit_error", True)
    ray.init(address=address, **init_kwargs)
    res = ray.cluster_resources()
    logger.info("Ray: %d node(s), %s CPU, %s GPU", len(ray.nodes()), res.get("CPU", 0), res.get("GPU", 0))


def in_input_order(ds):
    """``ds``, executed in its input's order: which rows share a batch, and the order of its
    blocks, then depend on the data only, not on which upstream task finished first — batched
    float rounding (generation steps, embedding padding) and anything numbered by block order
    are the same on every run, whatever the machine's load. The dataset gets a context of its
    own: the one it shares with the datasets it came from (a user's, say) is left as it was."""
    import copy

    context = copy.deepcopy(ds.context)
    context.execution_options.preserve_order = True
    ds._context = context  # Ray Data has no public setter; execution reads the final dataset's context
    return ds


def actor_threads(requested: int | None = None) -> int:
    """Threads for torch inside an actor. Ray pins OMP_NUM_THREADS to the actor's num_cpus (1),
    which would leave the other cores idle while one stage runs at a time."""
    import torch

    n = requested or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


#: DeepSpeed's CPU communication op, JIT-built with g++/ninja under torch's extension lock.
DEEPSPEED_CPU_OP = "deepspeed_shm_comm"


def deepspeed_extensions_ready(build: bool = False, stale_after_s: float = 120.0) -> None:
    """DeepSpeed on CPU workers: every process that starts DeepSpeed's comm backend runs torch's
    extension build of its shared-memory op (a no-op once built; ``make install`` builds it once,
    ``build=True``) under a lock file. A build killed mid-way leaves that file behind and every
    later start waits on it forever (torch's ``FileBaton`` records no owner), so a lock older than
    any no-op check takes is removed first (15 minutes when the op was never built)."""
    import time

    from torch.utils.cpp_extension import _get_build_directory  # private: where torch builds it

    build_dir = Path(_get_build_directory(DEEPSPEED_CPU_OP, verbose=False))
    lock = build_dir / "lock"
    built = any(build_dir.glob(f"{DEEPSPEED_CPU_OP}*.so"))
    limit = stale_after_s if built else 900.0
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        age = None
    if age is not None and age > limit:
        logger.warning("removing a stale torch extension lock %s (%.0f s old): a killed build left it", lock, age)
        lock.unlink(missing_ok=True)
    if build:
        from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

        ShareMemCommBuilder().load(verbose=False)


@contextmanager
def _train_storage(storage_path: str | None) -> Iterator[str]:
    """Ray Train's storage path: the caller's, or a temporary one removed after the fit (one node
    only: several nodes need a path they all share)."""
    if storage_path:
        yield storage_path
        return
    tmp = tempfile.mkdtemp(prefix="coevo-train-")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def worker_scratch(kind: str) -> Iterator[Path]:
    """A Ray Train worker's local scratch directory, named after the run and rank: a worker
    restarted after a crash first removes what the dead one left; it goes when the worker ends."""
    import ray.train

    ctx = ray.train.get_context()
    path = Path(tempfile.gettempdir()) / f"coevo-{kind}-{ctx.get_experiment_name()}-rank{ctx.get_world_rank()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def report_staged(metrics: dict, stage: Path | None, write: Callable[[Path], Any]) -> None:
    """``ray.train.report`` with a checkpoint written by ``write(stage)`` (rank 0 passes a stage,
    the others None: every rank reports). The upload is synchronous, so the stage goes afterwards."""
    import ray.train

    checkpoint = None
    if stage is not None:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        write(stage)
        checkpoint = ray.train.Checkpoint.from_directory(str(stage))
    try:
        ray.train.report(metrics, checkpoint=checkpoint)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def fit_and_export(make_trainer: Callable[[Any, Any], Any], name: str, storage_path: str | None, max_failures: int,
                   out_dir, what: str) -> tuple[Path, dict[str, Any]]:
    """Build a Ray Train trainer with ``make_trainer(run_config, progress)``, run it, copy its final
    checkpoint to ``out_dir`` and return its metrics. ``progress``: the handle rank 0 posts its
    steps to (``progress.report_step``; the driver logs them as ``<what>: n/N steps``). The run keeps
    two checkpoints for restarts (``max_failures``) under ``storage_path`` (a temporary one when
    None); the copy is the artifact, so they are deleted from the storage afterwards (hundreds of
    MB per fit otherwise)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    from coevo_ray.progress import train_progress

    with _train_storage(storage_path) as storage, train_progress(what) as progress:
        # A fresh name per fit: Ray Train V2 restores a run whose name and storage path exist.
        run_config = RunConfig(name=f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}", storage_path=storage,
                               failure_config=FailureConfig(max_failures=max_failures),
                               checkpoint_config=CheckpointConfig(num_to_keep=2))
        result = make_trainer(run_config, progress).fit()
        if result.checkpoint is None:
            raise TrainingError(f"{what} finished without reporting a checkpoint")
        out = Path(out_dir)
        with result.checkpoint.as_directory() as ckpt:
            shutil.copytree(ckpt, out, dirs_exist_ok=True)
        removed = _remove_checkpoints(result)
    logger.debug("%s: exported to %s; removed %d Ray Train checkpoint(s) from storage", what, out, removed)
    return out, dict(result.metrics or {})


def _remove_checkpoints(result) -> int:
    """Every ``checkpoint_*`` directory of the run: the kept ones, and any a killed worker was still
    uploading (Ray Train never registered those, so it never deletes them)."""
    import pyarrow.fs

    fs = result.filesystem
    entries = fs.get_file_info(pyarrow.fs.FileSelector(result.path, allow_not_found=True))
    doomed = [e.path for e in entries if e.type == pyarrow.fs.FileType.Directory and e.base_name.startswith("checkpoint_")]
    for path in doomed:
        fs.delete_dir(path)
    return len(doomed)


def parameters_digest(module, name_contains: str = "") -> str:
    """A hash of a module's parameters (those whose name contains ``name_contains``): compares
    DDP ranks with each other and a trained model with its initial state."""
    import hashlib

    digest = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        if name_contains in name:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def gather_from_ranks(value: Any) -> list[Any]:
    """``value`` of every Train rank, in rank order (a collective: every rank calls it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def rank_nodes() -> list[str]:
    """The Ray node ID of every Train rank, in rank order (a collective). Recorded in the
    training metrics so a multi-node run shows where its workers ran."""
    import ray

    return gather_from_ranks(ray.get_runtime_context().get_node_id())
