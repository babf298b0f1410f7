"""Merged weights for serving: vLLM-CPU runs a request through a runtime LoRA ~7-16x slower than
the base model, so on CPU the next iteration generates from ``merge_and_unload()`` weights
instead. The adapter stays the artifact of record; the merged copy is a rebuildable cache."""

from __future__ import annotations

import os
from pathlib import Path

from coevo_ray._atomic import atomic_dir


def merge_adapter(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  dtype: str = "float32") -> Path:
    """Write base + adapter as one safetensors model directory (atomically)."""

    def build(tmp: Path) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch_dtype)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(tmp)

    return atomic_dir(Path(out_dir), build)


def serve_merged_by_default() -> bool:
    """Merged weights on CPU clusters; runtime LoRA on GPUs, where vLLM's LoRA kernels are fast."""
    from coevo_ray.runtime import cluster_gpus

    return cluster_gpus() == 0
