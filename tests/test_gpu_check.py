"""benchmarks/gpu_check.py, the script a lent GPU machine runs, kept from rotting: the same code
on the CPU with tiny models, in a Python where ray, vllm and faiss cannot be imported (the GPU
machine has none of them)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WITHOUT = ("ray", "vllm", "faiss")


def test_gpu_check_runs_the_projects_training_code_without_ray_vllm_or_faiss(tmp_path):
    out = tmp_path / "gpu_check.json"
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in WITHOUT)  # `import m` raises ImportError
    code = (f"import runpy, sys; {blocked}; sys.argv = ['gpu_check.py', '--device', 'cpu', '--tiny', '--out', "
            f"{str(out)!r}]; runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    parts = {p["part"]: p for p in result["parts"]}
    assert set(parts) == {"dpo qwen-tiny", "embedder bert-tiny"}
    dpo = parts["dpo qwen-tiny"]
    assert dpo["shared_prompt"] and dpo["finite_loss"] and dpo["timed_steps"] == 2 and dpo["tokens_per_s"] > 0
    assert dpo["tflops"] >= 0 and 0 <= dpo["share_of_measured_peak"] < 1
    emb = parts["embedder bert-tiny"]
    assert emb["finite_loss"] and emb["tokens_per_s"] > 0 and any("pooler" in n for n in emb["frozen"])
    assert "gpu_check: ok" in proc.stdout
