#!/usr/bin/env python
"""Output tokens/s of the interpretation stage, in one process, on the same prompts:

  * vLLM through the Ray Data actor pool vs the same vLLM engine called in-process (Ray overhead);
  * vLLM vs the transformers engine (both in-process).

Engine start-up is timed separately and reported; tok/s counts generation only for in-process
runs and the whole stage (actor + engine start included) for Ray Data, plus a start-corrected
figure. Results go to benchmarks/results/generation_throughput.json.

    .venv/bin/python benchmarks/generation_throughput.py --n 100 --max-tokens 48
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import count_tokens, generate_in_process, generation_parser, machine, texts as read_texts, write_result  # noqa: E402


def main(argv=None) -> int:
    p = generation_parser(__doc__, n=100)
    p.add_argument("--temperatures", default="0")
    p.add_argument("--batch-size", type=int, default=50)
    args = p.parse_args(argv)

    import ray

    from coevo_ray.data import load_corpus
    from coevo_ray.interpret import EngineSpec, GenerationSettings, StageResources, interpret_dataset
    from coevo_ray.models import resolve_model

    model_dir = str(resolve_model(args.llm))
    texts = read_texts(args.n)
    temps = tuple(float(t) for t in args.temperatures.split(","))
    settings = GenerationSettings(task="intent: user intent", temperatures=temps, max_tokens=args.max_tokens)
    vllm_spec = EngineSpec(model_dir=model_dir, dtype=args.dtype)
    hf_spec = EngineSpec(model_dir=model_dir, dtype=args.dtype, backend="transformers")

    # Ray first, so the in-process vLLM engine (which binds both cores) is not alive meanwhile.
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    rows = interpret_dataset(load_corpus(texts).to_ray_dataset(), vllm_spec, settings,
                             StageResources(batch_size=args.batch_size)).take_all()
    ray_wall = time.perf_counter() - t0
    ray.shutdown()
    rows.sort(key=lambda r: (r["id"], r["candidate"]))
    ray_raw = [r["raw"] for r in rows]

    v_raw, v_start, v_gen, tok = generate_in_process(vllm_spec, settings, texts, args.batch_size)
    v_tokens = count_tokens(tok, v_raw)
    ray_tokens = count_tokens(tok, ray_raw)
    h_raw, h_start, h_gen, _ = generate_in_process(hf_spec, settings, texts, args.batch_size)
    h_tokens = count_tokens(tok, h_raw)

    result = {
        "machine": machine(),
        "settings": {"n_texts": len(texts), "temperatures": temps, "max_tokens": args.max_tokens,
                     "batch_size": args.batch_size, "llm": args.llm, "dtype": args.dtype},
        "vllm_in_process": {"start_s": round(v_start, 1), "gen_s": round(v_gen, 1), "tokens": v_tokens,
                            "tok_s": round(v_tokens / v_gen, 1)},
        "vllm_ray_data": {"wall_s": round(ray_wall, 1), "tokens": ray_tokens,
                          "tok_s_wall": round(ray_tokens / ray_wall, 1),
                          "tok_s_start_corrected": round(ray_tokens / max(ray_wall - v_start, 1e-9), 1)},
        "transformers_in_process": {"start_s": round(h_start, 1), "gen_s": round(h_gen, 1), "tokens": h_tokens,
                                    "tok_s": round(h_tokens / h_gen, 1)},
        "identical_outputs_ray_vs_in_process": sum(a == b for a, b in zip(ray_raw, v_raw)),
        "n_requests": len(v_raw),
    }
    result["ratios"] = {
        "ray_data_vs_in_process_wall": round(result["vllm_ray_data"]["tok_s_wall"] / result["vllm_in_process"]["tok_s"], 3),
        "ray_data_vs_in_process_start_corrected": round(result["vllm_ray_data"]["tok_s_start_corrected"] / result["vllm_in_process"]["tok_s"], 3),
        "vllm_vs_transformers": round(result["vllm_in_process"]["tok_s"] / result["transformers_in_process"]["tok_s"], 3),
    }
    write_result("generation_throughput.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
