#!/usr/bin/env python
"""How to serve the DPO-trained LLM on CPU: output tok/s of the base model, the merged weights
(``merge_and_unload``), and the base model with a runtime LoRA (vLLM ``LoRARequest``), in one
process, on the same prompts, plus how many greedy outputs of merged and runtime LoRA agree.

The adapter is rank 64 like the paper's, on q/k/v/o, random but small, so the outputs stay
fluent yet differ from the base (a DPO adapter costs the same per token; training one here would
only add minutes). Results: benchmarks/results/adapter_serving.json.

    .venv/bin/python benchmarks/adapter_serving.py --n 24 --max-tokens 48
"""

from __future__ import annotations

import gc
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import count_tokens, generate_in_process, generation_parser, machine, texts as read_texts, write_result  # noqa: E402


def main(argv=None) -> int:
    p = generation_parser(__doc__, n=24)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--b-std", type=float, default=0.02, help="std of the random lora_B")
    args = p.parse_args(argv)

    from coevo_ray.interpret import EngineSpec, GenerationSettings
    from coevo_ray.models import resolve_model
    from coevo_ray.train_llm import merge_adapter
    from coevo_ray.testing import random_lora_adapter

    model_dir = str(resolve_model(args.llm))
    prompts = read_texts(args.n)
    settings = GenerationSettings(task="intent: user intent", temperatures=(0.0,), max_tokens=args.max_tokens)
    work = Path(tempfile.mkdtemp(prefix="coevo-serving-"))
    adapter = random_lora_adapter(model_dir, work / "adapter", rank=args.rank, b_std=args.b_std)
    merged = merge_adapter(model_dir, adapter, work / "merged", dtype=args.dtype)

    runs = {}
    outputs = {}
    for name, spec in (("base", EngineSpec(model_dir=model_dir, dtype=args.dtype)),
                       ("merged", EngineSpec(model_dir=str(merged), dtype=args.dtype)),
                       ("runtime_lora", EngineSpec(model_dir=model_dir, dtype=args.dtype, adapter_dir=str(adapter)))):
        raw, start_s, gen_s, tok = generate_in_process(spec, settings, prompts, batch_size=args.n, warmup=4)
        tokens = count_tokens(tok, raw)
        runs[name] = {"start_s": round(start_s, 1), "gen_s": round(gen_s, 2), "tokens": tokens,
                      "tok_s": round(tokens / gen_s, 1)}
        outputs[name] = raw
        print(name, runs[name], flush=True)
        gc.collect()

    result = {
        "machine": machine(),
        "settings": {"llm": args.llm, "dtype": args.dtype, "n_prompts": args.n, "max_tokens": args.max_tokens,
                     "lora_rank": args.rank, "lora_b_std": args.b_std, "engine": "vLLM in-process, eager"},
        "runs": runs,
        "ratios": {
            "merged_vs_base": round(runs["merged"]["tok_s"] / runs["base"]["tok_s"], 3),
            "runtime_lora_vs_base": round(runs["runtime_lora"]["tok_s"] / runs["base"]["tok_s"], 3),
            "merged_vs_runtime_lora": round(runs["merged"]["tok_s"] / runs["runtime_lora"]["tok_s"], 2),
        },
        "greedy_outputs": {
            "merged_equals_runtime_lora": sum(a == b for a, b in zip(outputs["merged"], outputs["runtime_lora"])),
            "adapter_differs_from_base": sum(a != b for a, b in zip(outputs["runtime_lora"], outputs["base"])),
            "n": args.n,
        },
    }
    write_result("adapter_serving.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
