"""The hardware plan: declared topologies (CPU only, 1 × 8 GPUs, 4 × 8 GPUs, mixed), and a real
Ray cluster started with declared GPUs that checks what each actor and task was given."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coevo_ray.config import CoEvolverConfig, InterpretConfig
from coevo_ray.errors import InputError
from coevo_ray.hardware import VLLM_LORA_RANKS, Node, Topology, make_plan, vllm_lora_rank
from coevo_ray.models import ModelSize
from coevo_ray.train_llm import LLMTrainConfig

TASK = "intent: user intent"


def config(**kw):
    return CoEvolverConfig(task=TASK, n_clusters=10, **kw)


def test_a_cpu_machine_gets_the_cpu_layout():
    plan = make_plan(Topology.of((2, 0)), config())
    assert (plan.generation.actors, plan.generation.gpus_per_actor) == (1, 0.0)
    assert (plan.embedding.actors, plan.embedding.gpus_per_actor) == (1, 0.0)
    assert plan.engine_dtype == "float32" and plan.engine_device == "cpu" and plan.serve_adapter_merged
    assert plan.engine_kwargs == {"enforce_eager": True, "enable_chunked_prefill": False}
    dpo = plan.train_llm
    assert (dpo.num_workers, dpo.use_gpu, dpo.backend, dpo.deepspeed, dpo.bf16) == (2, False, "gloo", False, False)
    assert plan.task_gpus == 0 and plan.in_driver(100, 5000) and not plan.in_driver(6000, 5000)
    # The summary holds the plan as plain JSON.
    assert json.loads(json.dumps(plan.to_dict()))["topology"] == {"nodes": 1, "cpus": 2.0, "gpus": 0, "cpu_amx": False,
                                                                 "per_node": [[2.0, 0.0]], "memory_gib": [0.0]}


def test_one_node_with_eight_gpus_puts_every_stage_on_them():
    plan = make_plan(Topology.of((96, 8)), config())
    assert (plan.generation.actors, plan.generation.gpus_per_actor) == (8, 1.0)
    assert (plan.embedding.actors, plan.embedding.gpus_per_actor) == (8, 1.0)
    # bf16 engines: vLLM's CUDA LoRA kernels take fp16/bf16 only, so the adapter is served as LoRA.
    assert plan.engine_dtype == "bfloat16" and plan.engine_device == "cuda" and not plan.serve_adapter_merged
    assert plan.engine_kwargs == {"enforce_eager": False, "gpu_memory_utilization": 0.85}
    dpo, emb = plan.train_llm, plan.train_embedder
    assert (dpo.num_workers, dpo.use_gpu, dpo.backend, dpo.deepspeed, dpo.bf16) == (8, True, "nccl", True, True)
    assert (emb.num_workers, emb.use_gpu, emb.deepspeed) == (8, True, False)
    assert plan.task_gpus == 1 and not plan.in_driver(10, 5000)


def test_four_nodes_of_eight_gpus_and_tensor_parallel_engines():
    plan = make_plan(Topology.of(*[(96, 8)] * 4), config(interpret={"engine_kwargs": {"tensor_parallel_size": 2,
                                                                                     "max_num_seqs": 64}}))
    # One actor per GPU pair; the user's engine arguments go through, after the plan's defaults.
    assert (plan.generation.actors, plan.generation.gpus_per_actor) == (16, 2.0)
    assert plan.engine_kwargs["tensor_parallel_size"] == 2 and plan.engine_kwargs["max_num_seqs"] == 64
    assert (plan.embedding.actors, plan.embedding.gpus_per_actor) == (32, 1.0)
    assert plan.train_llm.num_workers == 32 and plan.train_llm.backend == "nccl"


def test_a_mixed_cluster_runs_its_gpu_stages_on_the_gpu_nodes():
    plan = make_plan(Topology.of((16, 0), (16, 0), (32, 4)), config())
    assert (plan.generation.actors, plan.generation.gpus_per_actor) == (4, 1.0)
    assert plan.train_llm.num_workers == 4 and plan.train_llm.use_gpu
    assert not plan.in_driver(10, 5000)  # three nodes: nothing runs in the driver
    cpu_only = make_plan(Topology.of((16, 0), (16, 0)), config())
    assert cpu_only.generation.gpus_per_actor == 0 and not cpu_only.in_driver(10, 5000)


def test_what_a_gpu_cluster_cannot_run_is_refused_by_name():
    gpus = Topology.of((96, 8))
    # fp32 engines: merged weights by default, LoRA refused (vLLM's CUDA LoRA kernels assert fp16/bf16).
    assert make_plan(gpus, config(interpret={"dtype": "float32"})).serve_adapter_merged
    with pytest.raises(InputError, match="fp16/bf16"):
        make_plan(gpus, config(interpret={"dtype": "float32", "adapter_serving": "lora"}))
    with pytest.raises(InputError, match="reports no GPU"):
        make_plan(Topology.of((2, 0)), config(interpret={"resources": {"gpus_per_actor": 1}}))
    with pytest.raises(InputError, match="more than the 8 GPU"):
        make_plan(gpus, config(interpret={"engine_kwargs": {"tensor_parallel_size": 16}}))
    with pytest.raises(InputError, match="num_workers=9"):
        make_plan(gpus, config(train_llm={"num_workers": 9}))
    with pytest.raises(InputError, match="engine_kwargs may not set"):
        InterpretConfig(engine_kwargs={"dtype": "float16"})
    # Explicit settings win over the plan's on either kind of cluster.
    cpu_bf16 = make_plan(Topology.of((2, 0)), config(interpret={"dtype": "bfloat16"}, train_llm={"bf16": True}))
    assert cpu_bf16.engine_dtype == "bfloat16" and cpu_bf16.train_llm.bf16 and cpu_bf16.serve_adapter_merged


def test_lora_ranks_are_the_ones_vllm_accepts():
    from typing import get_args

    from vllm.config.lora import LoRAConfig, MaxLoRARanks

    assert VLLM_LORA_RANKS == get_args(MaxLoRARanks)
    assert [vllm_lora_rank(r) for r in (1, 2, 8, 24, 64, 300, 512)] == [1, 8, 8, 32, 64, 320, 512]
    LoRAConfig(max_lora_rank=vllm_lora_rank(24))  # what the engine now asks for an r=24 adapter
    with pytest.raises(Exception):
        LoRAConfig(max_lora_rank=24)  # what it asked before: the engine failed to build
    with pytest.raises(InputError, match="max_lora_rank must be one of"):
        InterpretConfig(max_lora_rank=24)
    with pytest.raises(InputError, match="lora_r must be between 1 and 512"):
        LLMTrainConfig(lora_r=1024)


PLACEMENT = textwrap.dedent('''
    import json, os, sys
    import ray
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.hardware import plan_for, remote_task

    ray.init(num_cpus=6, num_gpus=2, include_dashboard=False, log_to_driver=False)
    plan = plan_for(CoEvolverConfig(task="intent: user intent", n_clusters=3,
                                    embed={"resources": {"batch_size": 1}}))

    def seen(_=None):
        return {"gpu_ids": [str(g) for g in ray.get_runtime_context().get_accelerator_ids()["GPU"]],
                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}

    class Probe:
        def __call__(self, batch):
            import time
            time.sleep(0.5)  # keeps one actor busy, so the pool's second actor takes batches too
            s = seen()
            return {"id": batch["id"], "gpu_ids": [",".join(s["gpu_ids"])] * len(batch["id"]),
                    "cuda_visible": [s["cuda_visible"]] * len(batch["id"])}

    def pool(resources):
        rows = ray.data.range(12).map_batches(Probe, **resources.map_batches_kwargs()).take_all()
        return sorted({(r["gpu_ids"], r["cuda_visible"]) for r in rows})

    from dataclasses import replace
    out = {"plan": plan.to_dict(),
           "gpu_pool": pool(plan.embedding),
           "cpu_pool": pool(replace(plan.embedding, gpus_per_actor=0.0, actors=1)),
           "gpu_task": ray.get(remote_task(seen, plan.task_gpus).remote()),
           "cpu_task": ray.get(remote_task(seen, 0.0).remote())}
    print("RESULT " + json.dumps(out))
''')


def test_a_ray_cluster_with_declared_gpus_gives_each_actor_and_task_what_the_plan_says(tmp_path):
    """A Ray cluster of its own (declared num_gpus=2, no real GPU): the plan puts one GPU on each
    embedding actor and on the Ray tasks; Ray gives each its own device; an actor or task given
    no GPU sees none (CUDA_VISIBLE_DEVICES="" — Ray alone would leave every GPU visible)."""
    script = tmp_path / "placement.py"
    script.write_text(PLACEMENT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[0][len("RESULT "):])
    emb = out["plan"]["embedding"]
    assert (emb["actors"], emb["gpus_per_actor"]) == (2, 1.0) and out["plan"]["task_gpus"] == 1.0
    assert out["plan"]["train_llm"]["use_gpu"] and out["plan"]["train_llm"]["num_workers"] == 2
    # Two actors, one GPU each, each seeing only its own.
    assert sorted(out["gpu_pool"]) == [["0", "0"], ["1", "1"]], out["gpu_pool"]
    assert out["cpu_pool"] == [["", ""]]
    assert len(out["gpu_task"]["gpu_ids"]) == 1 and out["gpu_task"]["cuda_visible"] == out["gpu_task"]["gpu_ids"][0]
    assert out["cpu_task"] == {"gpu_ids": [], "cuda_visible": ""}


def test_faiss_runs_on_a_gpu_only_where_ray_gave_one():
    """The driver's KMeans (final clustering, DEC centroids, the evaluation protocol) never takes
    a GPU: faiss.Kmeans(gpu=True) would take every GPU of the node outside Ray's accounting."""
    import numpy as np

    from coevo_ray.clustering import FaissKMeans
    from coevo_ray.hardware import faiss_use_gpu

    assert FaissKMeans(2).use_gpu is False
    assert faiss_use_gpu(0.0) is False
    assert faiss_use_gpu(1.0) is False  # faiss-cpu here: a task given a GPU still runs FAISS on the CPU
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    assert FaissKMeans(2, use_gpu=faiss_use_gpu(1.0)).fit(x).labels_.shape == (40,)


def test_cpus_run_fp32_unless_bf16_is_asked_for():
    """fp32 on every CPU by default, AMX included (same seed, same answers); bf16 when asked."""
    for amx in (True, False):
        plan = make_plan(Topology.of((2, 0), cpu_amx=amx), config())
        assert plan.engine_dtype == "float32" and not plan.train_llm.bf16 and not plan.train_embedder.bf16
        assert ("AMX: bf16 opt-in" in plan.describe()) == amx
    asked = make_plan(Topology.of((2, 0), cpu_amx=True), config(interpret={"dtype": "bfloat16"},
                                                                 train_llm={"bf16": True}))
    assert asked.engine_dtype == "bfloat16" and asked.train_llm.bf16 and asked.serve_adapter_merged


GIB = 2**30
# ModelSize.of embeddinggemma-300m and all-minilm-l6-v2
GEMMA, MINILM = ModelSize(307_581_696, 24, 768), ModelSize(22_713_728, 6, 384)


def test_embedder_workers_are_sized_to_the_nodes_memory():
    node = Node(2, 0, 16.3 * GIB)  # what Ray offers tasks on a 24 GiB machine
    small = make_plan(Topology((node,)), config(), MINILM).train_embedder
    assert (small.num_workers, small.cpus_per_worker, small.gradient_checkpointing) == (2, 1.0, False)
    # A 300M embedder: checkpointing, and one worker with both CPUs (two would not fit beside each other).
    big = make_plan(Topology((node,)), config(), GEMMA)
    assert (big.train_embedder.num_workers, big.train_embedder.cpus_per_worker) == (1, 2.0)
    assert big.train_embedder.gradient_checkpointing and big.train_llm.num_workers == 2
    assert "embedder 1 worker(s) x 2 CPU, gradient checkpointing" in big.describe()
    # Two such nodes hold the two workers; GPUs and unknown memory are not sized.
    assert make_plan(Topology((node, node)), config(), GEMMA).train_embedder.num_workers == 2
    assert make_plan(Topology.of((2, 0)), config(), GEMMA).train_embedder.num_workers == 2
    gpu = make_plan(Topology((Node(16, 1, 16.3 * GIB),)), config(), GEMMA).train_embedder
    assert gpu.use_gpu and not gpu.gradient_checkpointing
    # The user's own choices win where they fit.
    off = make_plan(Topology((Node(2, 0, 80 * GIB),)), config(train_embedder={"gradient_checkpointing": False}), GEMMA)
    assert not off.train_embedder.gradient_checkpointing and off.train_embedder.num_workers == 2


def test_an_embedder_that_fits_no_worker_is_refused_before_the_fit_starts():
    with pytest.raises(InputError, match=r"about \d+\.\d GiB per CPU worker.*largest: 4\.0 GiB"):
        make_plan(Topology((Node(2, 0, 4 * GIB),)), config(), GEMMA)
    with pytest.raises(InputError, match="holds 1 such worker.*num_workers=2"):
        make_plan(Topology((Node(2, 0, 16.3 * GIB),)), config(train_embedder={"num_workers": 2}), GEMMA)
    # Nothing to size when the embedder is not trained.
    assert make_plan(Topology((Node(2, 0, 1 * GIB),)), config(train_embedder={"enabled": False}), GEMMA)
