"""A stand-in LoRA adapter: untrained but non-zero, so it changes the outputs and costs exactly
what a DPO adapter of the same rank costs to serve (throughput checks, serving-path tests)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def random_lora_adapter(base_dir: str | os.PathLike, out_dir: str | os.PathLike, rank: int = 64,
                        b_std: float = 0.05, seed: int = 0,
                        target_modules: tuple[str, ...] = DEFAULT_TARGETS) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cfg = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(target_modules), init_lora_weights=False,
                     task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, b_std)
    peft_model.save_pretrained(str(out_dir))
    return Path(out_dir)
