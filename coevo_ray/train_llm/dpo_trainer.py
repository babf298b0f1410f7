"""Step 4 of the pipeline: DPO of the LLM with a LoRA adapter, TRL's DPOTrainer inside Ray Train.

The reference model is the adapter-disabled base (TRL does this when given a PEFT config), so
there is no second copy of the weights in memory; iterations t >= 2 load the previous adapter into
that same PEFT model, so the reference stays the base model. Rank 0 reports the adapter as a Ray Train
checkpoint together with the DPO metrics.

Fault tolerance: every ``checkpoint_every`` steps every rank reports its part of the Hugging Face
checkpoint (rank 0: adapter, optimizer, scheduler, trainer state; each rank: its RNG state and,
under DeepSpeed ZeRO-2, its own optimizer partition ``zero_pp_rank_<r>_…``). Ray Train merges the
parts into one checkpoint directory; when ``FailureConfig`` restarts the worker group, every rank
resumes from it (the Trainer skips the batches already seen) and finds its own files there.
``training_args.bin``, a full pickle, is left out of the reported checkpoint.

Hardware (GPU or CPU workers, NCCL or gloo, DeepSpeed, bf16) comes from the hardware plan's
:class:`~coevo_ray.hardware.TrainLayout`; the workers only ask Ray Train for their device.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coevo_ray.errors import InputError
from coevo_ray.train_llm.dpo_config import LLMTrainConfig

if TYPE_CHECKING:
    from coevo_ray.hardware import TrainLayout

logger = logging.getLogger(__name__)

DPO_METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")

# Buckets sized for LoRA (tens of millions of trainable parameters), not DeepSpeed's 5e8 default:
# with overlap_comm, two 5e8-element fp32 buckets hold ~4 GB per GPU for nothing.
ZERO_BUCKET = 50_000_000
ZERO2 = {
    "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True,
                          "reduce_bucket_size": ZERO_BUCKET, "allgather_bucket_size": ZERO_BUCKET},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"},
    # No "optimizer" block: on CPU it would JIT-compile cpu_adam for minutes; HF's AdamW is used.
}


def step_timer():
    """A ``TrainerCallback`` recording each optimizer step's wall time, for the benchmarks."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self._start = 0.0

        def on_step_begin(self, *args, **kwargs) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, *args, **kwargs) -> None:
            self.durations.append(round(time.perf_counter() - self._start, 3))

    return StepTimer()


def _step_poster(progress):
    """A ``TrainerCallback`` posting each optimizer step to the driver's progress line."""
    from transformers import TrainerCallback

    from coevo_ray.progress import report_step

    class StepPoster(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            report_step(progress, state.global_step, state.max_steps)

    return StepPoster()


def _ray_checkpoint_reporter():
    """A ``TrainerCallback`` reporting each Hugging Face checkpoint to Ray Train. Every rank
    reports the files it wrote (rank 0 the shared ones; every rank its RNG state and its ZeRO
    optimizer partition), and Ray Train merges them into one directory: a restarted rank finds its
    own partition there. Like ``ray.train.huggingface.transformers.RayTrainReportCallback``,
    without the pickled ``training_args.bin``."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    from coevo_ray.runtime import report_staged

    class RayCheckpointReporter(TrainerCallback):
        def on_save(self, args, state, control, **kwargs) -> None:
            source = get_last_checkpoint(args.output_dir)
            stage = Path(args.output_dir) / "report" if source else None
            report_staged({"step": state.global_step}, stage, lambda out: shutil.copytree(
                source, out / "checkpoint", ignore=shutil.ignore_patterns("training_args.bin")))

    return RayCheckpointReporter()


def _train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker; Hugging Face's output directory is the worker's scratch."""
    from contextlib import nullcontext

    from coevo_ray.runtime import deepspeed_extensions_ready, worker_scratch
    from coevo_ray.train_llm.completion_scoring import completion_tokens_only

    if config["layout"]["deepspeed"] and not config["layout"]["use_gpu"]:
        deepspeed_extensions_ready()
    scoring = completion_tokens_only() if config["train"]["compact_lm_head"] else nullcontext()
    with worker_scratch("dpo") as scratch, scoring:
        _train_in(config, str(scratch))


def build_dpo_trainer(config: dict[str, Any], out_dir: str):
    """TRL's ``DPOTrainer`` as every worker builds it — LoRA on the base model, the paper's
    settings, the hardware layout's precision and DeepSpeed, each pair's prompt run once
    (``shared_prompt``) — and whether the prompt sharing is on. No Ray here, so that
    ``benchmarks/gpu_check.py`` runs this on a machine without it. Train inside
    ``completion_tokens_only()`` when ``compact_lm_head`` is set, as the workers do.
    ``config``: model_dir, pairs, train (an ``LLMTrainConfig`` as a dict), layout (a
    ``TrainLayout`` as a dict), evaluate, init_adapter_dir."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from coevo_ray.hardware import TrainLayout
    from coevo_ray.train_llm.shared_prompt import share_prompts

    cfg = LLMTrainConfig(**config["train"])
    layout = TrainLayout(**config["layout"])
    torch.manual_seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(config["model_dir"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        config["model_dir"], dtype=torch.bfloat16 if layout.bf16 else torch.float32
    )
    pairs = config["pairs"]
    data = Dataset.from_dict({"prompt": pairs["prompt"], "chosen": pairs["chosen"], "rejected": pairs["rejected"]})
    args = DPOConfig(
        output_dir=out_dir,
        learning_rate=cfg.learning_rate,
        beta=cfg.beta,
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=layout.bf16,
        # Without use_cpu, accelerate on CPU sees one process and DeepSpeed's batch check fails.
        use_cpu=not layout.use_gpu,
        deepspeed=ZERO2 if layout.deepspeed else None,
        optim="adamw_torch",  # the paper's Adam(W); explicit so DeepSpeed does not build its own
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.checkpoint_every else "no",
        save_steps=cfg.checkpoint_every or 500,
        save_total_limit=1,  # local copies; Ray Train keeps the reported ones
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **cfg.extra_dpo_args,
    )
    peft_config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM",
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, eval_dataset=data if config.get("evaluate") else None,
                         processing_class=tok, peft_config=peft_config)
    # TRL patched the fused LM head into the base model; the prompt sharing wraps that forward.
    shared = cfg.shared_prompt and share_prompts(trainer.model.get_base_model())
    if config.get("init_adapter_dir"):
        _continue_adapter(trainer.model, config["init_adapter_dir"], cfg)
    return trainer, shared


def _train_in(config: dict[str, Any], out_dir: str) -> None:
    import ray.train

    from coevo_ray.runtime import gather_from_ranks, parameters_digest, rank_nodes, report_staged

    cfg = LLMTrainConfig(**config["train"])
    rank = ray.train.get_context().get_world_rank()
    trainer, shared = build_dpo_trainer(config, out_dir)
    step_times = step_timer()
    trainer.add_callback(step_times)
    if cfg.checkpoint_every:
        trainer.add_callback(_ray_checkpoint_reporter())
    if rank == 0:
        trainer.add_callback(_step_poster(config.get("progress")))
    initial_digest = parameters_digest(trainer.model, "lora_")
    resume_dir, resumed_from = None, 0
    previous = ray.train.get_checkpoint()
    # The worker group was restarted after a failure. (A final-adapter checkpoint has no
    # "checkpoint/" inside: training then reruns, it cannot resume from an adapter alone.)
    restored = Path(previous.to_directory(str(Path(out_dir) / "restored"))) / "checkpoint" if previous else None
    if restored is not None and restored.is_dir():
        resume_dir = str(restored)
        resumed_from = json.loads((Path(resume_dir) / "trainer_state.json").read_text())["global_step"]
        logger.info("DPO: resuming from the checkpoint at step %d", resumed_from)
    # No evaluate() before train(): it makes HF's Trainer skip the DDP wrap, and the ranks then
    # train apart (seen here: different adapters on the two ranks).
    trainer.train(resume_from_checkpoint=resume_dir)
    final_digest = parameters_digest(trainer.model, "lora_")
    before, after = {}, {}
    if config.get("evaluate"):
        after = trainer.evaluate()
        # The initial policy is the base model (PEFT initialises lora_B to zero), so "before
        # training" is measured with the adapter disabled.
        with trainer.model.disable_adapter():
            before = trainer.evaluate()
    logs = [e for e in trainer.state.log_history if "loss" in e and "eval_loss" not in e]
    # Every rank's trained parameters, hashed: DDP keeps them equal, and the metrics show it.
    metrics: dict[str, Any] = {"steps": trainer.state.global_step, "rank_digest": final_digest,
                               "rank_digests": gather_from_ranks(final_digest),
                               "world_size": trainer.args.world_size,
                               "distributed_type": str(trainer.accelerator.distributed_type),
                               "layout": config["layout"],
                               "initial_digest": initial_digest, "step_times_s": step_times.durations,
                               "resumed_from_step": resumed_from, "rank_nodes": rank_nodes(),
                               "shared_prompt": shared,
                               "margins_per_step": [float(e["rewards/margins"]) for e in logs if "rewards/margins" in e],
                               "pairs_per_step": cfg.per_device_batch_size * cfg.gradient_accumulation_steps
                               * trainer.args.world_size}
    for key in DPO_METRICS:
        values = [e[key] for e in logs if key in e]
        if values:
            metrics[key] = float(sum(values) / len(values))
            metrics[f"final_{key}"] = float(values[-1])
    for prefix, ev in (("before", before), ("after", after)):
        for key, value in ev.items():
            if key.startswith("eval_rewards") or key == "eval_loss":
                metrics[f"{prefix}/{key[5:]}"] = float(value)

    def write_adapter(out: Path) -> None:
        trainer.model.save_pretrained(out)
        (out / "dpo_metrics.json").write_text(json.dumps(metrics, indent=2))

    report_staged(metrics, Path(out_dir) / "adapter" if rank == 0 else None, write_adapter)


def _continue_adapter(model, adapter_dir: str, cfg: LLMTrainConfig) -> None:
    """Iteration t >= 2 goes on training the previous iteration's adapter, and the reference stays
    the base model (adapters disabled), as in iteration 1. The weights are loaded into the adapter
    TRL created from ``peft_config``: handed a ``PeftModel`` instead, TRL 1.16 copies its adapter
    into a frozen "ref" adapter and scores the reference with that, i.e. with iteration t-1's LLM."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from coevo_ray.interpret.engine import adapter_rank

    if adapter_rank(adapter_dir) != cfg.lora_r:
        raise InputError(f"cannot continue the adapter in {adapter_dir}: rank {adapter_rank(adapter_dir)}, "
                         f"but train_llm.lora_r is {cfg.lora_r}")
    loaded = set_peft_model_state_dict(model, load_file(str(Path(adapter_dir) / "adapter_model.safetensors")))
    if loaded.unexpected_keys:
        raise InputError(f"the adapter in {adapter_dir} does not fit this model: {loaded.unexpected_keys[:3]} ...")


def train_dpo(
    model_dir: str,
    pairs: dict[str, list[str]],
    out_dir: str | os.PathLike,
    cfg: LLMTrainConfig,
    storage_path: str | None = None,
    evaluate: bool = False,
    init_adapter_dir: str | None = None,
    layout: "TrainLayout | None" = None,
) -> tuple[Path, dict[str, Any]]:
    """Train a LoRA adapter on ``pairs`` (prompt/chosen/rejected), from ``init_adapter_dir`` when
    given; copy it to ``out_dir``. ``layout``: the hardware plan's (default: planned for the
    connected cluster from ``cfg``)."""
    from ray.train.torch import TorchTrainer

    from coevo_ray.hardware import current_topology, train_layout
    from coevo_ray.runtime import fit_and_export

    if not pairs["prompt"]:
        raise InputError("no preference pairs to train on")
    layout = layout or train_layout(cfg.num_workers, cfg.cpus_per_worker, current_topology(), cfg.deepspeed, cfg.bf16)
    scaling, torch_config = layout.scaling()
    layout.wait_until_free()
    config = {"model_dir": str(model_dir), "pairs": pairs, "train": asdict(cfg), "evaluate": evaluate,
              "layout": asdict(layout),
              "init_adapter_dir": str(init_adapter_dir) if init_adapter_dir else None}
    return fit_and_export(
        lambda run_config, progress: TorchTrainer(_train_loop, train_loop_config={**config, "progress": progress},
                                                  scaling_config=scaling, torch_config=torch_config,
                                                  run_config=run_config),
        f"dpo-{len(pairs['prompt'])}", storage_path, cfg.max_failures, out_dir, "DPO")
