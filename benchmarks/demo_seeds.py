#!/usr/bin/env python
"""The README's demo figures, measured as a newcomer meets them: run in a fresh clone, it times
``make demo`` (install included the first time: only the fit's seconds are compared), reruns the
demo with seeds 1 and 2, runs the README's quick start block, and optionally ``make demo`` again
beside a busy process (the same assignments are expected: the seed decides them, not the load).

    git clone <repo> /tmp/c && cd /tmp/c && python3 benchmarks/demo_seeds.py [--busy]

Writes ``benchmarks/results/demo-seeds.json`` in that clone (copy it back to commit it). Only the
standard library: it runs before and beside the project's environment.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "make demo; .venv/bin/coevo-ray --seed S --output-dir runs/demo-sS (S = 1, 2); README quick start"


def timed(cmd: list[str], log: Path, stdout: Path | None = None) -> float:
    """Seconds ``cmd`` took; its output in ``log`` (its standard output alone in ``stdout`` if given)."""
    start = time.perf_counter()
    with log.open("w") as err, (stdout.open("w") if stdout else err) as out:
        done = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=err)
    if done.returncode:
        sys.exit(f"{cmd} failed ({done.returncode}): see {log}")
    return round(time.perf_counter() - start, 1)


def run_record(run: Path, command: str, seed: int) -> dict:
    s = json.loads((run / "summary.json").read_text())
    stages_s = sum(v for v in s["timings_s"].values() if isinstance(v, (int, float)))
    keep = ("iteration", "acc", "nmi", "ari", "representation")
    return {"command": command, "seed": seed, "representation": s["representation"],
            "baseline": {k: s["baseline"][k] for k in ("acc", "nmi", "ari")},
            "iterations": [{k: h[k] for k in keep if k in h} for h in s["history"]],
            "stages_s": round(stages_s, 1), "engine_dtype": s["hardware_plan"].get("engine_dtype")}


def quickstart(logs: Path) -> dict:
    """The README's first Python block, as a user pastes it."""
    block = re.search(r"## Quick start\s+```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    printed = logs / "quickstart.out"
    wall = timed([str(ROOT / ".venv/bin/python"), "-c", block], logs / "quickstart.log", stdout=printed)
    return {"command": "the README's quick start block (python -c)", "wall_s": wall,
            "printed": printed.read_text().splitlines()}


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 2), "std": round(statistics.pstdev(values), 2),
            "values": [round(v, 2) for v in values]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", action="store_true", help="also make demo beside a busy process")
    args = p.parse_args()
    logs = ROOT / "runs" / "demo-seeds-logs"
    logs.mkdir(parents=True, exist_ok=True)
    wall, runs = {}, {}
    wall["demo-s0"] = timed(["make", "demo"], logs / "demo-s0.log")  # installs first on a fresh clone
    runs["demo-s0"] = run_record(ROOT / "runs/demo", "make demo", 0)
    for seed in (1, 2):
        name = f"demo-s{seed}"
        wall[name] = timed([".venv/bin/coevo-ray", "--seed", str(seed), "--output-dir", f"runs/{name}"],
                           logs / f"{name}.log")
        runs[name] = run_record(ROOT / "runs" / name, f".venv/bin/coevo-ray --seed {seed} --output-dir runs/{name}",
                                seed)
    result = {"command": COMMAND + ("; make demo beside a busy process" if args.busy else ""), "machine": machine(),
              "fresh_clone": True, "data": "coevo_ray/demo/support_requests.jsonl (240 texts, 10 intents)",
              "note": "demo-s0's wall_s includes `make install` on the fresh clone; stages_s is the fit's own",
              "wall_s": wall, "runs": runs}
    if args.busy:
        quiet = (ROOT / "runs/demo/assignments.jsonl").read_bytes()
        (ROOT / "runs/demo").rename(ROOT / "runs/demo-quiet")
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            wall["demo-s0-busy"] = timed(["make", "demo"], logs / "demo-s0-busy.log")
        finally:
            busy.kill()
        runs["demo-s0-busy"] = run_record(ROOT / "runs/demo", "make demo (beside: python3 -c 'while True: pass')", 0)
        result["quiet_vs_busy_assignments_identical"] = (ROOT / "runs/demo/assignments.jsonl").read_bytes() == quiet
    seeds = [runs[f"demo-s{s}"] for s in (0, 1, 2)]
    result["spread_over_seeds"] = {
        "baseline_acc": spread([r["baseline"]["acc"] for r in seeds]),
        **{f"iteration{t}_{m}": spread([r["iterations"][t][m] for r in seeds])
           for t in (0, 1) for m in ("acc", "nmi")},
        "chosen": {f"iteration{t}": [r["iterations"][t].get("representation") for r in seeds] for t in (0, 1)}}
    result["readme_quickstart"] = quickstart(logs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo-seeds.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["spread_over_seeds"], indent=1), json.dumps(result["readme_quickstart"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
