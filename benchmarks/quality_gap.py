"""Where the co-evolution's gap to plain KMeans comes from (issue 16), from the stages that
``benchmarks/quality.py`` cached: nothing is generated or trained here, only embedded and scored.

One row per (embedder, what is clustered), ACC / NMI, mean of 5 KMeans seeds, on the same
seeded sample as the quality table:
  texts                          plain KMeans ("KMeans" row of the quality table)
  iter-0 interpretations         the LLM's greedy answers, untrained embedder: what the LLM adds
  iter-0 texts ⊕ interpretations [E(text), E(interpretation)]: the Keyphrase representation
  trained · texts                the iteration-2 embedder on the raw texts: what embedder training adds
  trained · iter-2 interpretations   the loop's own result ("Ours iter-2")
  trained · texts ⊕ iter-2 interp.   representation="concat" on the loop's result
and the same first three with the strongest offline embedder (EmbeddingGemma-300m), plus how many
greedy answers were cut by ``max_tokens`` or fell back, and the DPO pairs each iteration found.

    python benchmarks/quality_gap.py --profile cpu            # every dataset whose fit finished

The main fit's stages are told from the Random ablation's (same names, other keys) by age: the
benchmark runs the main fit first and the Random fit reuses only iteration 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import DATASETS, machine, stratified_indices, write_result  # noqa: E402
from quality import CACHE, PROFILES, RESULTS, evaluate, sample_size  # noqa: E402

STRONG = "embeddinggemma-300m"


def main_stage(stages: Path, prefix: str) -> Path:
    """The oldest stage directory named ``<prefix>-<key>`` (the main fit's; see the docstring)."""
    found = [p for p in stages.glob(f"{prefix}-*") if p.name[len(prefix) + 1:].isalnum()]
    if not found:
        raise FileNotFoundError(f"no {prefix} stage under {stages}")
    return min(found, key=lambda p: p.stat().st_mtime)


def greedy_answers(stage: Path) -> tuple[list[str], dict[str, int]]:
    from coevo_ray.tables import greedy_table

    t = greedy_table(stage, ["id", "interpretation", "finish_reason", "fallback"])
    cut = sum(r == "length" for r in t.column("finish_reason").to_pylist())
    fell_back = sum(bool(f) for f in t.column("fallback").to_pylist())
    return t.column("interpretation").to_pylist(), {"cut_by_max_tokens": cut, "fallback": fell_back, "n": len(t)}


def dataset_gap(name: str, run: Path, sample, seed: int) -> dict:
    from coevo_ray.clustering import l2_normalize
    from coevo_ray.embed import encode, load_encoder, model_prompt
    from coevo_ray.models import resolve_model

    rows = [json.loads(line) for line in (DATASETS / f"{name}.jsonl").open()]
    labels_all = [r["label"] for r in rows]
    keep = stratified_indices(labels_all, sample_size(labels_all, sample), seed)
    texts, labels = [rows[i]["text"] for i in keep], [rows[i]["label"] for i in keep]
    stages = run / "stages"
    interp0, stats0 = greedy_answers(main_stage(stages, "iter0-interpret"))
    interp2, stats2 = greedy_answers(main_stage(stages, "iter2-interpret"))
    pairs = [json.loads((main_stage(stages, f"iter{t}-prefer") / "stats.json").read_text())["pairs"] for t in (1, 2)]

    def concat(a, b):
        return np.hstack([l2_normalize(a), l2_normalize(b)])

    out: dict = {"n": len(texts), "k": len(set(labels)), "greedy_answers": {"iter-0": stats0, "iter-2": stats2},
                 "dpo_pairs": {"iter-1": pairs[0], "iter-2": pairs[1]}, "rows": {}}
    config = json.loads((run / "manifest.json").read_text())["runs"][0]["config"]
    base = resolve_model(config["embed"]["embedder"])
    for label, path in ((config["embed"]["embedder"], base), (STRONG, resolve_model(STRONG))):
        enc = load_encoder(str(path), device="cpu")
        prompt = model_prompt(path)
        t, i0 = encode(enc, texts, prompt=prompt), encode(enc, interp0, prompt=prompt)
        out["rows"][f"{label} · texts"] = evaluate(t, labels)
        out["rows"][f"{label} · iter-0 interpretations"] = evaluate(i0, labels)
        out["rows"][f"{label} · iter-0 texts ⊕ interpretations"] = evaluate(concat(t, i0), labels)
        logging.info("quality_gap: %s %s done", name, label)
    trained = load_encoder(str(main_stage(stages, "iter2-train-embedder")), device="cpu")
    t, i2 = encode(trained, texts), encode(trained, interp2)
    out["rows"]["trained · texts"] = evaluate(t, labels)
    out["rows"]["trained · iter-2 interpretations"] = evaluate(i2, labels)
    out["rows"]["trained · texts ⊕ iter-2 interpretations"] = evaluate(concat(t, i2), labels)
    return out


def markdown(result: dict) -> str:
    lines = [f"Profile `{result['profile']}`: where Ours' gap to plain KMeans comes from; ACC / NMI, mean of 5 "
             "KMeans seeds; `trained` = the main fit's iteration-2 embedder. Command: "
             f"`{result['command']}`.", ""]
    for name, r in result["datasets"].items():
        g = r["greedy_answers"]
        lines += [f"### {name} (n={r['n']}, K={r['k']})", "",
                  f"Greedy answers cut by max_tokens / fallen back: iter-0 {g['iter-0']['cut_by_max_tokens']} / "
                  f"{g['iter-0']['fallback']}, iter-2 {g['iter-2']['cut_by_max_tokens']} / {g['iter-2']['fallback']} "
                  f"of {r['n']}; DPO pairs: iter-1 {r['dpo_pairs']['iter-1']}, iter-2 {r['dpo_pairs']['iter-2']}.", "",
                  "| embedder · clustered | ACC / NMI |", "|---|---|"]
        lines += [f"| {row} | {acc} / {nmi} |" for row, (acc, nmi) in r["rows"].items()]
        lines.append("")
    lines.append(f"Machine: {json.dumps(result['machine'])}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="cpu")
    p.add_argument("--datasets", default=None, help="comma-separated; default: the profile's sets whose fit finished")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    profile = PROFILES[args.profile]
    names = (args.datasets or profile["datasets"]).split(",")
    result = {"profile": args.profile, "seed": args.seed, "machine": machine(),
              "command": "python benchmarks/quality_gap.py " + " ".join(sys.argv[1:]), "datasets": {}}
    for name in names:
        runs = [r for r in (CACHE / args.profile).glob(f"{name}-n*-s{args.seed}")
                if any((r / "stages").glob("iter2-embed-interpretations-final-*"))]
        if not runs:
            logging.info("quality_gap: %s has no finished fit under %s; skipped", name, CACHE / args.profile)
            continue
        result["datasets"][name] = dataset_gap(name, runs[0], profile["sample"], args.seed)
    write_result(f"quality-gap-{args.profile}.json", result)
    (RESULTS / f"quality-gap-{args.profile}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
