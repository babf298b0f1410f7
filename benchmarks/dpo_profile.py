#!/usr/bin/env python
"""Where a DPO step's time goes, in-process (no Ray): TRL's DPOTrainer on SmolLM2-135M + LoRA r64,
the guided prompt, 4 pairs per step, both cores in one process.

Variants, each timed on the same pairs (median step after the first, and the whole train() call):
  every_position   TRL's CPU default: the fused LM head scores prompt positions too
  completion_only  ours (coevo_ray.train_llm.completion_scoring)
  precompute_ref   completion_only + TRL's precompute_ref_log_probs (the reference pass is timed
                   separately: it runs when the trainer is built)
  shared_prompt    completion_only + one prompt per pair (coevo_ray.train_llm.shared_prompt; the
                   default)
With --py-spy, each variant runs under py-spy and the share of samples inside TRL's chunked
log-prob function (the LM head) is reported.

    .venv/bin/python benchmarks/dpo_profile.py --py-spy    # -> benchmarks/results/dpo_profile.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import machine, texts as read_texts, write_result  # noqa: E402

VARIANTS = ("every_position", "completion_only", "precompute_ref", "shared_prompt")


def run_variant(variant: str, steps: int) -> dict:
    from contextlib import nullcontext

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from training_speed import dpo_pairs
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from coevo_ray.models import resolve_model
    from coevo_ray.train_llm.completion_scoring import completion_tokens_only
    from coevo_ray.train_llm.shared_prompt import share_prompts

    torch.set_num_threads(os.cpu_count())
    model_dir = str(resolve_model("smollm2-135m-instruct"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = dpo_pairs(model_dir, read_texts(4 * steps))
    out = tempfile.mkdtemp(prefix="coevo-dpo-profile-")
    args = DPOConfig(output_dir=out, learning_rate=1e-5, beta=0.25, per_device_train_batch_size=4, max_steps=steps,
                     max_length=512, gradient_checkpointing=False, bf16=False, use_cpu=True, optim="adamw_torch",
                     lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none", seed=0,
                     remove_unused_columns=False, precompute_ref_log_probs=variant == "precompute_ref",
                     precompute_ref_batch_size=4 * steps)
    lora = LoraConfig(r=64, lora_alpha=128, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM")

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *a, **k) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k) -> None:
            self.times.append(time.perf_counter() - self.start)

    with completion_tokens_only() if variant != "every_position" else nullcontext():
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        t0 = time.perf_counter()
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_dict(pairs), processing_class=tok,
                             peft_config=lora)
        build_s = time.perf_counter() - t0
        if variant == "shared_prompt":
            assert share_prompts(trainer.model.get_base_model())
        timer = Steps()
        trainer.add_callback(timer)
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    logs = [e for e in trainer.state.log_history if "loss" in e]
    return {"variant": variant, "pairs": 4 * steps, "build_s": round(build_s, 1), "train_s": round(train_s, 1),
            "s_per_step": round(statistics.median(timer.times[1:] or timer.times), 2),
            "s_per_pair_incl_build": round((build_s + train_s) / (4 * steps), 2),
            "margins": [round(e.get("rewards/margins", 0.0), 4) for e in logs]}


def lm_head_share(raw: Path) -> float:
    inside = total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "training_step" not in stack:
            continue
        total += int(n)
        inside += int(n) if "ChunkedLogProbFunction" in stack else 0
    return round(inside / max(total, 1), 3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--py-spy", action="store_true")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:  # child process: one variant, its JSON as the last stdout line
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(json.dumps(run_variant(args.variant, args.steps)))
        return 0
    rows = []
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps)]
        raw = Path(tempfile.mkdtemp(prefix="coevo-dpo-spy-")) / "samples.txt"
        if args.py_spy:
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            cmd = [spy, "record", "-r", "40", "--format", "raw", "-o", str(raw), "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("{")))
        if args.py_spy:
            row["lm_head_share_of_step_samples"] = lm_head_share(raw)
        shutil.rmtree(raw.parent, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_result("dpo_profile.json", {"machine": machine(), "command": "python benchmarks/dpo_profile.py "
                                      + " ".join(sys.argv[1:]), "variants": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
