#!/usr/bin/env python
"""The compute floor of a finished fit: the seconds its generation and DPO stages would take if
every FLOP of their GEMMs ran at this machine's measured fp32 GEMM speed, against the seconds
they took (read from the run directory, nothing is rerun).

    make demo && python benchmarks/demo_floor.py --run runs/demo   # -> results/demo_floor.{json,md}

Counted (a lower bound: attention, norms, sampling and the 16-token rounding of vLLM's prefix
cache blocks are left out):
  generation  2 × non-embedding parameters per token the engine computes — the prompt's shared
              part once per stage, each request's own part (its prompt tokens after the longest
              prefix all prompts share) and each output token — plus 2 × LM-head parameters per
              output token (a prefill scores only its last position)
  DPO         per pair, its prompt once and its two answers (one prompt per pair, the default):
              4 × non-embedding parameters per token for the policy's forward and backward (LoRA:
              no gradients for the frozen weights, no gradient checkpointing) and 2 × for the
              reference's forward; 6 × LM-head parameters per answer token (completion-only
              scoring)
The LLM's parameters come from its safetensors headers and the GEMM speed from torch in this
process (the best of 1024² and 2048² fp32 matmuls over 3 s each, as `throughput.py --sections
gemm` measures it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import RESULTS, gemm_gflops, machine  # noqa: E402

from coevo_ray.cost import dpo_flops, generation_flops, parameter_counts  # noqa: E402

TARGET_S = 300  # issue 17: the demo's fit in 5 minutes


def shared_prefix_len(prompts: list[list[int]]) -> int:
    first, n = prompts[0], len(prompts[0])
    for ids in prompts[1:]:
        n = min(n, len(ids))
        while n and ids[:n] != first[:n]:
            n -= 1
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo", help="a finished fit's output directory")
    p.add_argument("--name", default="demo_floor", help="results/<name>.json and .md")
    args = p.parse_args(argv)

    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.interpret.prompts import TaskDescription, exemplar_texts, render_prompt
    from coevo_ray.models import resolve_model

    run = Path(args.run)
    summary = json.loads((run / "summary.json").read_text())
    stages = {entry["stage"]: run / "stages" / dirname
              for dirname, entry in json.loads((run / "manifest.json").read_text())["stages"].items()}
    config = CoEvolverConfig.from_dict({**summary["config"], "output_dir": None})
    cfg = config.interpret
    model_dir = resolve_model(cfg.llm)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    body, head = parameter_counts(model_dir)
    desc = TaskDescription.parse(config.task)
    gflops = gemm_gflops("float32")
    timings = summary["timings_s"]

    def prompts_for(texts: list[str], exemplars: tuple[str, ...]) -> list[list[int]]:
        return [tok(render_prompt(tok, t, desc, cfg.prompt_style, exemplars), add_special_tokens=False)["input_ids"]
                for t in texts]

    def n_tokens(outputs: list[str]) -> list[int]:
        return [len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs]

    generated = next(path for name, path in stages.items() if name.endswith("-interpret"))
    greedy = pq.read_table(generated, columns=["id", "candidate", "text"]).to_pylist()
    corpus_texts = [row["text"] for row in sorted(greedy, key=lambda r: r["id"]) if row["candidate"] == 0]
    exemplars = (exemplar_texts(corpus_texts, cfg.n_exemplars, config.seed)
                 if cfg.prompt_style == "exemplars" else ())

    rows = []
    for name, path in stages.items():
        if name.endswith("-interpret"):
            table = pq.read_table(path, columns=["text", "raw"])
            # A text's candidates share its whole prompt: vLLM's prefix cache computes it once.
            prompts = prompts_for(sorted(set(table.column("text").to_pylist())), exemplars)
            shared = shared_prefix_len(prompts)
            own = sum(len(ids) - shared for ids in prompts)
            output = sum(n_tokens(table.column("raw").to_pylist()))
            flops = generation_flops(body, head, shared, own, output)
            detail = {"requests": table.num_rows, "distinct_prompts": len(prompts), "shared_prompt_tokens": shared, "own_prompt_tokens": own,
                      "output_tokens": output}
        elif name.endswith("-dpo"):
            prefer = stages[name.replace("-dpo", "-prefer")]
            pairs = pq.read_table(prefer / "pairs.parquet", columns=["text", "chosen", "rejected"])
            prompt = sum(len(ids) for ids in prompts_for(pairs.column("text").to_pylist(), exemplars))
            answers = sum(n_tokens(pairs.column("chosen").to_pylist())) + sum(n_tokens(pairs.column("rejected").to_pylist()))
            flops = dpo_flops(body, head, prompt, answers)
            detail = {"pairs": pairs.num_rows, "prompt_tokens": prompt, "answer_tokens": answers}
        else:
            continue
        floor = flops / (gflops * 1e9)
        measured = timings.get(name)
        rows.append({"stage": name, **detail, "tflop": round(flops / 1e12, 2), "floor_s": round(floor, 1),
                     "measured_s": measured, "share_of_gemm_limit": round(floor / measured, 3) if measured else None})

    llm_floor = sum(r["floor_s"] for r in rows)
    llm_measured = sum(r["measured_s"] or 0 for r in rows)
    rest = round(sum(v for v in timings.values()) - llm_measured, 1)
    result = {"run": str(run), "command": f"python benchmarks/demo_floor.py {' '.join(sys.argv[1:] if argv is None else argv)}".strip(),
              "machine": machine(), "llm": str(cfg.llm), "non_embedding_params": body, "lm_head_params": head,
              "gemm_fp32_gflops": gflops, "stages": rows, "llm_stages_floor_s": round(llm_floor, 1),
              "llm_stages_measured_s": round(llm_measured, 1), "other_stages_measured_s": rest,
              # The share of the GEMM limit the LLM stages would need on average for the fit to take
              # TARGET_S with every other stage as measured.
              "share_needed_for_target": round(llm_floor / (TARGET_S - rest), 3) if rest < TARGET_S else None}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# {args.name}", "", f"Command: `{result['command']}` on `{run}`", "",
             f"Machine: {json.dumps(result['machine'])}; torch fp32 GEMM {gflops} GFLOP/s; {cfg.llm}: "
             f"{body / 1e6:.1f}M non-embedding + {head / 1e6:.1f}M LM-head parameters", "",
             "| stage | work | TFLOP | at 100% of the GEMM limit s | measured s | share of the limit |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        work = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r.items()
                         if k not in ("stage", "tflop", "floor_s", "measured_s", "share_of_gemm_limit"))
        lines.append(f"| {r['stage']} | {work} | {r['tflop']} | {r['floor_s']} | {r['measured_s']} | "
                     f"{r['share_of_gemm_limit']} |")
    lines += ["", f"Generation and DPO: {result['llm_stages_floor_s']} s at the GEMM limit, "
              f"{result['llm_stages_measured_s']} s measured; every other stage: {rest} s measured. "
              f"A {TARGET_S} s fit with the other stages as measured needs the LLM stages at "
              f"{result['share_needed_for_target']} of the GEMM limit on average."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
