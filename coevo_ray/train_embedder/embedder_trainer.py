"""Step 5 of the pipeline: train the embedder on (text, interpretation) pairs with L_E (eq. 16),
DDP over Ray Train workers (gloo on CPU, NCCL on GPUs: the hardware plan's ``TrainLayout``).

Fault tolerance: every ``checkpoint_every`` steps rank 0 reports a checkpoint (weights, Adam
state, step, running loss sums; safetensors + JSON); after a worker dies Ray Train restarts the
group (``FailureConfig``) and the loop resumes from it, skipping the batches already seen. The
dropout RNG is reseeded per step, so a resumed run ends with the same weights as an
uninterrupted one.

Every worker reads the whole pairs dataset, orders it by id and keeps every world-th row: Ray
Data's streaming split hands blocks to whichever worker asks first, and a Parquet stage's block
order follows its file names (random per run), so its shards — and with them the in-batch
negatives — would change from run to run. Each worker then runs the same number of steps (DDP
hangs when one rank runs out of batches first).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from coevo_ray.errors import InputError, TrainingError
from coevo_ray.train_embedder.embedder_config import EmbedderTrainConfig

if TYPE_CHECKING:
    from coevo_ray.hardware import TrainLayout

logger = logging.getLogger(__name__)

LOSS_PARTS = ("loss", "loss_cl", "loss_cl_dropout", "loss_dec")


#: Bumped when training changes what it computes for the same settings, so cached stages rebuild.
TRAINING_REVISION = 2  # 2: DEC on normalised embeddings with corpus-wide cluster frequencies

def plan_steps(n_rows: int, world: int, cfg: EmbedderTrainConfig) -> tuple[int, int]:
    """(per-worker batch size, steps per epoch): identical on every rank."""
    per_worker = n_rows // world
    if per_worker < 2:
        raise InputError(f"embedder training needs at least {2 * world} texts for {world} workers, got {n_rows}; "
                         "pass train_embedder={'enabled': False} or fewer workers")
    batch = min(cfg.batch_size, per_worker)
    return batch, per_worker // batch


def _rank_batches(shard, rank: int, world: int, batch: int, seed: int) -> Iterator[dict[str, list[str]]]:
    """This rank's rows in a seeded order, ``batch`` at a time (the last partial batch dropped)."""
    ids, texts, interps = [], [], []
    for block in shard.iter_batches(batch_size=4096, batch_format="numpy"):
        ids.append(np.asarray(block["id"]))
        texts.extend(str(t) for t in block["text"])
        interps.extend(str(t) for t in block["interpretation"])
    # Sorted here, not by Ray Data: its sort is a shuffle, costly even for a few rows.
    by_id = np.argsort(np.concatenate(ids) if ids else np.array([], dtype=np.int64), kind="stable")
    mine = by_id[rank::world]
    texts, interps = [texts[i] for i in mine], [interps[i] for i in mine]
    order = np.random.default_rng(seed).permutation(len(texts))
    for start in range(0, len(order) - batch + 1, batch):
        idx = order[start : start + batch]
        yield {"text": [texts[i] for i in idx], "interpretation": [interps[i] for i in idx]}


def features_on(features, device):
    """``model.preprocess`` output on ``device``: sentence-transformers returns CPU tensors, and
    neither it nor DDP moves a ``BatchEncoding`` (a ``UserDict``) to the model's GPU."""
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}


def _freeze_unused(loss_module, model, device) -> list[str]:
    """Parameters no loss reaches (BERT's pooler under mean pooling, DEC centroids at λ = 0) make
    DDP wait forever for their gradients; find them with one backward pass and freeze them."""
    feats = features_on(model.preprocess(["unused parameter probe", "second probe"]), device)
    total, *_ = loss_module(feats, feats)
    total.backward()
    frozen = []
    for name, p in loss_module.named_parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen.append(name)
        p.grad = None
    return frozen


def load_for_training(model_dir: str, cfg: EmbedderTrainConfig, centroids, cluster_frequency, device,
                      gradient_checkpointing: bool = False):
    """The sentence-transformers model and L_E around it (eq. 16) on ``device``, in training mode,
    with the parameters no loss reaches frozen: (model, loss module, frozen names). No Ray here,
    so that ``benchmarks/gpu_check.py`` runs it on a machine without it. ``gradient_checkpointing``
    (the hardware plan's): activations are recomputed in the backward pass instead of kept — the
    same gradients, in a fraction of the memory (benchmarks/results/embedder-train-memory.md)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from coevo_ray.train_embedder.losses import CoEvoEmbedderLoss

    torch.manual_seed(cfg.seed)
    model = SentenceTransformer(str(model_dir), device=str(device), trust_remote_code=False, local_files_only=True)
    if gradient_checkpointing:
        # Non-reentrant: the reentrant variant loses gradients under DDP when a parameter is frozen.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    loss_module = CoEvoEmbedderLoss(model, centroids, tau=cfg.tau, dec_weight=cfg.dec_weight, negatives=cfg.negatives,
                                    dropout_pair=cfg.dropout_pair, cluster_frequency=cluster_frequency).to(device)
    loss_module.train()
    return model, loss_module, _freeze_unused(loss_module, model, device)


def train_step(model, forward, optimizer, rows: dict[str, list[str]], prompt: str, device, bf16: bool = False):
    """One optimizer step of L_E on a batch of (text, interpretation) rows; ``forward`` is the loss
    module or its DDP wrapper. The embedder's task prompt (if any) is prepended, as
    ``encode(prompt=...)`` applies it. ``bf16``: autocast (GPU workers; the weights and the Adam
    state stay fp32). Returns the loss parts (L_E, ℓ_CL, ℓ_CL†, L_DEC)."""
    from contextlib import nullcontext

    import torch

    text_f = features_on(model.preprocess([prompt + t for t in rows["text"]]), device)
    interp_f = features_on(model.preprocess([prompt + t for t in rows["interpretation"]]), device)
    cast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with cast:
        parts = forward(text_f, interp_f)
    optimizer.zero_grad(set_to_none=True)
    parts[0].backward()
    optimizer.step()
    return parts


def _save_train_state(out: Path, loss_module, optimizer, step: int, sums: dict[str, float],
                      step_times: list[float]) -> None:
    """Weights and Adam moments as safetensors, counters as JSON (no pickle)."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in loss_module.state_dict().items()}
    adam_steps = {}
    for i, p in enumerate(q for g in optimizer.param_groups for q in g["params"]):
        state = optimizer.state.get(p, {})
        if state:
            tensors[f"adam.{i}.exp_avg"] = state["exp_avg"].detach().cpu().contiguous()
            tensors[f"adam.{i}.exp_avg_sq"] = state["exp_avg_sq"].detach().cpu().contiguous()
            adam_steps[str(i)] = float(state["step"])
    save_file(tensors, str(out / "train_state.safetensors"))
    (out / "train_state.json").write_text(json.dumps({"step": step, "sums": sums, "step_times": step_times,
                                                      "adam_steps": adam_steps}))


def _load_train_state(ckpt_dir: Path, loss_module, optimizer, device) -> tuple[int, dict[str, float], list[float]]:
    import torch
    from safetensors.torch import load_file

    meta = json.loads((ckpt_dir / "train_state.json").read_text())
    tensors = load_file(str(ckpt_dir / "train_state.safetensors"), device=str(device))
    loss_module.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(q for g in optimizer.param_groups for q in g["params"]):
        if str(i) in meta["adam_steps"]:
            optimizer.state[p] = {"step": torch.tensor(meta["adam_steps"][str(i)]),
                                  "exp_avg": tensors[f"adam.{i}.exp_avg"], "exp_avg_sq": tensors[f"adam.{i}.exp_avg_sq"]}
    return int(meta["step"]), meta["sums"], meta["step_times"]


def _train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    from coevo_ray.runtime import worker_scratch

    with worker_scratch("embedder") as scratch:
        _train_in(config, scratch)


def _train_in(config: dict[str, Any], scratch: Path) -> None:
    import ray.train
    import torch
    from ray.train.torch import get_device, prepare_model

    from coevo_ray.progress import report_step
    from coevo_ray.runtime import gather_from_ranks, parameters_digest, rank_nodes, report_staged

    cfg = EmbedderTrainConfig(**config["train"])
    prompt = config.get("prompt", "")
    bf16 = config["layout"]["bf16"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    stage = scratch / "checkpoint" if rank == 0 else None  # rank 0 writes the checkpoints
    device = get_device()  # the GPU Ray Train gave this worker, or the CPU
    model, loss_module, frozen = load_for_training(config["model_dir"], cfg, config.get("centroids"),
                                                   config.get("cluster_frequency"), device,
                                                   config["layout"]["gradient_checkpointing"])
    initial = parameters_digest(loss_module.model)
    ddp = prepare_model(loss_module)
    optimizer = torch.optim.Adam([p for p in loss_module.parameters() if p.requires_grad], lr=cfg.learning_rate)
    batch, steps_per_epoch = plan_steps(config["n_rows"], world, cfg)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)
    shard = ray.train.get_dataset_shard("train")
    sums = dict.fromkeys(LOSS_PARTS, 0.0)
    step_times: list[float] = []
    step = resumed_from = 0
    previous = ray.train.get_checkpoint()
    if previous is not None:
        with previous.as_directory() as ckpt:
            if (Path(ckpt) / "train_state.json").exists():  # a final-model checkpoint has none
                step, sums, step_times = _load_train_state(Path(ckpt), loss_module, optimizer, device)
        resumed_from = step
        if rank == 0 and step:
            logger.info("embedder: resuming from the checkpoint at step %d/%d", step, total_steps)
    while step < total_steps:
        epoch, start = step // steps_per_epoch, step
        done_in_epoch = step - epoch * steps_per_epoch  # batches a restored run has already seen
        for position, rows in enumerate(_rank_batches(shard, rank, world, batch, cfg.seed + 1000 * epoch + rank)):
            if position < done_in_epoch:
                continue
            torch.manual_seed(cfg.seed + 7919 * step + rank)  # dropout masks depend on the step only
            began = time.perf_counter()
            parts = train_step(model, ddp, optimizer, rows, prompt, device, bf16)
            step_times.append(round(time.perf_counter() - began, 3))
            for key, value in zip(LOSS_PARTS, parts):
                sums[key] += float(value.detach())
            step += 1
            if rank == 0:
                report_step(config.get("progress"), step, total_steps)
                if step % 10 == 0 or step == total_steps:
                    logger.info("embedder: step %d/%d loss %.4f", step, total_steps, float(parts[0]))
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
                report_staged({"step": step, "mean_loss": sums["loss"] / step}, stage,
                              lambda out, step=step: _save_train_state(out, loss_module, optimizer, step, sums, step_times))
            if step >= total_steps or step % steps_per_epoch == 0:
                break
        if step == start:
            raise TrainingError(f"rank {rank} got no training batch (batch {batch}, {config['n_rows']} rows)")
    metrics: dict[str, Any] = {f"mean_{k}": v / max(step, 1) for k, v in sums.items()}
    metrics.update(steps=step, world_size=world, batch_size=batch, frozen=frozen, step_times_s=step_times,
                   resumed_from_step=resumed_from, rank_nodes=rank_nodes(),
                   rank_digest=parameters_digest(loss_module.model), initial_digest=initial)
    # Every rank's trained parameters, hashed: DDP keeps them equal, and the metrics show it.
    metrics["rank_digests"] = gather_from_ranks(metrics["rank_digest"])

    def write_model(out: Path) -> None:
        model.save(str(out), create_model_card=False)
        (out / "embedder_metrics.json").write_text(json.dumps(metrics, indent=2))

    report_staged(metrics, stage, write_model)


def train_embedder(
    model_dir: str | os.PathLike,
    pairs,
    out_dir: str | os.PathLike,
    cfg: EmbedderTrainConfig,
    centroids: np.ndarray | None = None,
    storage_path: str | None = None,
    cluster_frequency: np.ndarray | None = None,
    prompt: str = "",
    layout: "TrainLayout | None" = None,
) -> tuple[Path, dict[str, Any]]:
    """Train on ``pairs`` (a Ray Dataset with ``id``, ``text``, ``interpretation``); write a
    sentence-transformers directory to ``out_dir``. ``centroids`` (K, D) initialise DEC;
    ``cluster_frequency`` (K,) is DEC's f_j over the whole corpus (``dec_loss.cluster_frequency``);
    ``prompt`` is prepended to both sides, as the embed stage encodes them (``embed.model_prompt``);
    ``layout``: the hardware plan's (default: planned for the connected cluster from ``cfg``)."""
    from ray.data import ExecutionOptions
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer

    from coevo_ray.hardware import current_topology, embedder_train_layout
    from coevo_ray.models import ModelSize
    from coevo_ray.runtime import fit_and_export

    # Materialised first: the workers then read blocks from the object store and launch no Ray
    # Data tasks, which would wait forever for a CPU while the workers hold every core.
    pairs = pairs.select_columns(["id", "text", "interpretation"]).materialize()
    n_rows = pairs.count()
    size = ModelSize.of(model_dir)
    cfg = cfg.for_embedder(size.parameters)
    layout = layout or embedder_train_layout(cfg, current_topology(), size)
    scaling, torch_config = layout.scaling()
    plan_steps(n_rows, scaling.num_workers, cfg)  # fail here, not inside the workers
    layout.wait_until_free()
    config = {"model_dir": str(model_dir), "train": asdict(cfg), "n_rows": n_rows, "prompt": prompt, "layout": asdict(layout),
              "centroids": None if centroids is None else np.asarray(centroids, np.float32),
              "cluster_frequency": None if cluster_frequency is None else np.asarray(cluster_frequency, np.float32)}
    return fit_and_export(
        lambda run_config, progress: TorchTrainer(
            _train_loop, train_loop_config={**config, "progress": progress}, scaling_config=scaling,
            torch_config=torch_config,
            datasets={"train": pairs},
            # Every worker sees every row (it keeps its own), in the same order on every run.
            dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
            run_config=run_config),
        f"embedder-{n_rows}", storage_path, cfg.max_failures, out_dir, "embedder training")
