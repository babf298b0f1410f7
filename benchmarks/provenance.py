#!/usr/bin/env python
"""The provenance table of benchmarks/README.md, made from the result files themselves: each
result → the command that wrote it → the machine (CPU, instruction set, fp32 / bf16 GEMM speed
where the run measured it) → the commit of the code that measured it (recorded by the script
since ``_common.machine()`` carries it; for older files, the commit that added the file).

    python benchmarks/provenance.py          # rewrite the table between the markers
    python benchmarks/provenance.py --check  # exit 1 if the table is out of date (the suite runs this)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START, END = "<!-- provenance:start -->", "<!-- provenance:end -->"


def _find(data, key):
    """The first value of ``key`` anywhere in a JSON document."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        values = data.values()
    elif isinstance(data, list):
        values = data
    else:
        return None
    for value in values:
        found = _find(value, key)
        if found is not None:
            return found
    return None


def _added_in(path: Path) -> str:
    out = subprocess.run(["git", "log", "--diff-filter=A", "--format=%h", "--", str(path)], cwd=HERE,
                         capture_output=True, text=True).stdout.split()
    return out[-1] if out else "not committed"


def _isa(machine: dict) -> str:
    isa = set(machine.get("isa") or [])
    if not isa:
        return "not recorded"
    if "amx_bf16" in isa:
        return "AVX-512 + AMX"
    if "avx512_bf16" in isa:
        return "AVX-512 + BF16"
    return "AVX-512" if "avx512f" in isa else "AVX2"


def rows() -> list[str]:
    lines = ["| result | command | machine | GEMM GFLOP/s (fp32 / bf16) | commit |", "|---|---|---|---|---|"]
    for path in sorted((HERE / "results").glob("*.json")):
        data = json.loads(path.read_text())
        machine = data.get("machine") if isinstance(data, dict) else None
        machine = machine if isinstance(machine, dict) else {}
        command = (data.get("command") if isinstance(data, dict) else None) or _find(data, "command")
        if command is None and isinstance(_find(data, "commands"), list):
            command = "; ".join(_find(data, "commands"))
        gemm = _find(data, "gemm") or {}
        while isinstance(gemm, dict) and "gemm" in gemm:  # a throughput run: section → unit → dtypes
            gemm = gemm["gemm"]
        fp32 = (gemm.get("float32") or {}).get("gflops") if isinstance(gemm, dict) else None
        fp32 = fp32 or _find(data, "gemm_fp32_gflops")
        bf16 = (gemm.get("bfloat16") or {}).get("gflops") if isinstance(gemm, dict) else None
        speed = " / ".join(str(v) for v in (fp32, bf16) if v) or "—"
        cpu = f"{machine.get('cpu', 'CPU not recorded')}, {_isa(machine)}" if machine else "not recorded"
        commit = machine.get("commit") or _added_in(path)
        lines.append(f"| `{path.stem}` | {f'`{command}`' if command else 'not recorded in the file'} | {cpu} | "
                     f"{speed} | {commit} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n" + "\n".join(rows()) + f"\n{END}{tail}"
    if args.check:
        if new != text:
            print("benchmarks/README.md's provenance table is out of date: run python benchmarks/provenance.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
