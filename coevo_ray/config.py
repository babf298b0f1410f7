"""Configuration dataclasses, one per pipeline step, all here except the two trainers' (TRL style:
``train_llm/dpo_config.py``, ``train_embedder/embedder_config.py``). Defaults follow the paper
(appendix A.1) except where a comment says why they differ; each ``__post_init__`` checks its
fields once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from coevo_ray.choices import (
    AdapterServing, Admission, Backend, EngineDtype, KMeansInit, PreferenceRule, PromptStyle, Representation, check_choice,
)
from coevo_ray.data.corpus import DEFAULT_MAX_TEXT_CHARS
from coevo_ray.errors import InputError
from coevo_ray.hardware import VLLM_LORA_RANKS
from coevo_ray.interpret.prompts import TaskDescription
from coevo_ray.resources import StageResources
from coevo_ray.train_embedder.embedder_config import EmbedderTrainConfig
from coevo_ray.train_llm.dpo_config import LLMTrainConfig

@dataclass
class InterpretConfig:
    """Step 1: the LLM and how it writes interpretations."""

    llm: str = "smollm2-135m-instruct"  # paper: Qwen2.5-7B-Instruct (GPU); this runs on 2 CPU cores
    backend: Backend = "vllm"
    # "paper" is T_DESC verbatim. "guided" (text delimited, worked example) keeps 135M-0.5B
    # models on the text; "exemplars" adds corpus texts. Measured: README, "Measured defaults".
    prompt_style: PromptStyle = "guided"
    n_exemplars: int = 8  # corpus texts (seeded sample, no labels) the "exemplars" style shows
    # Force answers into "Reasoning: <one line>\nKeywords: <= 8 comma-separated>" with vLLM
    # structured output. None = on with vLLM (not in the paper): small LLMs keep the format and
    # write fewer tokens at no loss of ACC (README, "Measured defaults").
    structured_output: bool | None = None
    # Shrink the structured answer shape to fit max_tokens (prompts.interpretation_regex), so the
    # grammar ends answers before max_tokens cuts them: cut answers are never chosen nor trained
    # on. Off: fewer cut answers but a lower ACC (benchmarks/results/prompt_sized_64.md).
    sized_answers: bool = False
    stop: tuple[str, ...] = ()
    temperatures: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)  # paper A.1: M+1 = 4 candidates
    max_tokens: int = 96  # not given in the paper; the paper's example answer is ~80 tokens
    # "auto": the hardware plan's (bf16 on GPU actors, fp32 on CPUs: coevo_ray/hardware.py says
    # why); or "float32", "bfloat16" (several times faster on CPUs with AMX), "float16".
    dtype: str = "auto"
    max_model_len: int = 2048
    # None: eager on CPUs (torch.compile's warm-up costs minutes on 2 cores), CUDA graphs on GPUs.
    enforce_eager: bool | None = None
    # More vLLM ``LLM`` arguments, as ray.data.llm's ``engine_kwargs``: e.g. tensor_parallel_size
    # (the actor then asks for that many GPUs), gpu_memory_utilization, max_num_seqs. They override
    # the hardware plan's engine defaults.
    engine_kwargs: dict = field(default_factory=dict)
    kv_cache_gib: int = 2  # vLLM-CPU's KV cache (VLLM_CPU_KVCACHE_SPACE); GPUs size theirs themselves
    repetition_penalty: float = 1.0
    max_lora_rank: int = 64
    # How iterations >= 1 serve the DPO-trained LLM: "auto" = merged weights on CPU clusters
    # (vLLM-CPU's runtime LoRA is several times slower: benchmarks/adapter_serving.py), vLLM
    # LoRARequest on GPUs; or force one.
    adapter_serving: AdapterServing = "auto"
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    # "per-batch": each Ray Data batch runs through the engine alone, so an answer depends on its
    # batch and seed only, whatever the machine's load; "continuous": batches join the running
    # engine (faster by the figure in benchmarks/results/throughput.md, but which requests share
    # an engine step, and so the float rounding of greedy answers, depends on timing).
    admission: Admission = "per-batch"
    resources: StageResources = field(default_factory=lambda: StageResources(batch_size=64))

    def __post_init__(self) -> None:
        if isinstance(self.resources, dict):
            self.resources = StageResources(**self.resources)
        temps = tuple(float(t) for t in self.temperatures)
        if not temps:
            raise InputError("temperatures must not be empty: the first one (0.0) gives the interpretation")
        if any(t < 0 for t in temps):
            raise InputError(f"temperatures must be >= 0, got {list(temps)}")
        if temps[0] != 0.0:
            # Candidate 0 is the greedy interpretation everywhere (clustering, DEC, the on-text
            # guard, the density reference of eq. 8): a sampled one there is silently wrong.
            raise InputError(f"temperatures[0] must be 0.0 (the greedy interpretation), got {list(temps)}")
        self.temperatures = temps
        check_choice("prompt style", self.prompt_style, PromptStyle)
        check_choice("generation backend", self.backend, Backend)
        if self.prompt_style == "exemplars" and self.n_exemplars < 1:
            raise InputError(f"prompt style 'exemplars' needs n_exemplars >= 1, got {self.n_exemplars}")
        if self.structured_output is None:
            self.structured_output = self.backend == "vllm"
        if self.structured_output and self.backend != "vllm":
            raise InputError("structured_output needs backend='vllm'")
        if self.sized_answers and not self.structured_output:
            raise InputError("sized_answers shapes structured output: it needs structured_output=True")
        self.stop = tuple(self.stop)
        if self.max_tokens < 1:
            raise InputError(f"max_tokens must be >= 1, got {self.max_tokens}")
        check_choice("adapter serving", self.adapter_serving, AdapterServing)
        check_choice("engine dtype", self.dtype, EngineDtype)
        check_choice("admission", self.admission, Admission)
        if self.max_lora_rank not in VLLM_LORA_RANKS:
            raise InputError(f"max_lora_rank must be one of vLLM's {VLLM_LORA_RANKS}, got {self.max_lora_rank}")
        self.engine_kwargs = dict(self.engine_kwargs or {})
        reserved = sorted(set(self.engine_kwargs) & {"model", "dtype", "seed", "max_model_len", "enable_lora",
                                                     "max_lora_rank", "max_loras"})
        if reserved:
            raise InputError(f"engine_kwargs may not set {reserved}: they come from the interpret config and the "
                             "adapter being served")


@dataclass
class EmbedConfig:
    """Step 2: the embedding model."""

    embedder: str = "all-minilm-l6-v2"  # paper: e5-large (GPU)
    # The embedder's task prompt for clustering: "auto" = its "Clustering" prompt when it has one
    # (EmbeddingGemma), else none; None = none; or the name of one of its prompts. Used by every
    # embedding of texts and interpretations and prepended in embedder training alike.
    prompt_name: str | None = "auto"
    batch_size: int = 64
    resources: StageResources = field(default_factory=lambda: StageResources(batch_size=256))
    # A stage of at most this many rows, on a one-node cluster without GPUs, runs in the driver
    # rather than on fresh Ray workers (HardwarePlan.in_driver): the embeddings, the on-text
    # guard and the preferences' KMeans runs; 0 = always on Ray.
    in_process_max_rows: int = 5000

    def __post_init__(self) -> None:
        if isinstance(self.resources, dict):
            self.resources = StageResources(**self.resources)
        if self.in_process_max_rows < 0:
            raise InputError(f"in_process_max_rows must be >= 0, got {self.in_process_max_rows}")


@dataclass
class ClusterConfig:
    """Final step: KMeans on the representation."""

    normalize: bool = True
    niter: int = 25
    # KMeans seeds a clustering is scored over: ACC/NMI with labels (paper: the mean over 5 seeds),
    # and without labels the stability representation="auto" chooses by.
    eval_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # representation="concat": [E(interpretation), w·E(text)], both L2-normalised. 1.0 is the
    # Keyphrase baseline; w > 1 leans on the text when a small LLM drifts off it.
    text_weight: float = 1.0
    # n_clusters="auto": eigengap of a kNN graph, K in [auto_k_min, auto_k_max] (clustering/auto_k.py).
    auto_k_min: int = 2
    auto_k_max: int = 200
    # Describe the clusters: c-TF-IDF keywords always; an LLM-written name per cluster when set.
    name_clusters: bool = True
    keywords_per_cluster: int = 8
    # Report the plain baseline beside the result: the raw texts embedded by the untrained
    # embedder and clustered by the same KMeans (one extra embedding pass over the texts).
    baseline: bool = True

    def __post_init__(self) -> None:
        if self.text_weight < 0:
            raise InputError(f"text_weight must be >= 0, got {self.text_weight}")
        if not 2 <= self.auto_k_min <= self.auto_k_max:
            raise InputError(f"need 2 <= auto_k_min <= auto_k_max, got {self.auto_k_min}, {self.auto_k_max}")


@dataclass(frozen=True)
class PreferenceConfig:
    """Step 3: density-guided preferences (paper 3.2, eq. 7-9)."""

    n_runs: int = 100  # paper A.1: "we perform KMeans 100 times"
    max_pairs: int = 10_000  # paper A.1: 10,000 DPO samples
    rule: PreferenceRule = "density"  # "random" is the paper's ablation (table 2)
    normalize: bool = True
    chunk_rows: int = 65_536  # candidate rows searched at once: bounds memory at large N
    skip_identical: bool = True  # a pair whose chosen and rejected texts are equal teaches DPO nothing
    # Seeding of each of the R runs. FAISS's random seeding picks the same winners as k-means++
    # on bank77, faster (benchmarks/results/selection_speed.json). Averaging over R runs smooths
    # the bad seeds that make random seeding risky for a single KMeans.
    init: KMeansInit = "random"

    def __post_init__(self) -> None:
        check_choice("preference rule", self.rule, PreferenceRule)
        check_choice("KMeans seeding", self.init, KMeansInit)
        if self.n_runs < 1 or self.max_pairs < 1:
            raise InputError("n_runs and max_pairs must be >= 1")


SECTIONS = {"interpret": InterpretConfig, "embed": EmbedConfig, "cluster": ClusterConfig,
            "prefer": PreferenceConfig, "train_llm": LLMTrainConfig, "train_embedder": EmbedderTrainConfig}


@dataclass
class CoEvolverConfig:
    task: str
    n_clusters: int | str  # an integer >= 2, or "auto" (estimated after iteration 0's interpretations)
    iterations: int = 2  # paper A.1: "we generally perform 2 iterations"
    # "auto": per fit, the raw texts unless a co-evolved kind is measurably more stable across
    # KMeans seeds (pipeline/loop.py, CHOSEN_AMONG). With the LLMs a CPU runs, every fixed kind
    # ends below plain KMeans on some set, auto on none beyond the seed spread (docs/results.md,
    # cpu-large). "interpretation" is the paper's (the `paper` and `gpu` profiles).
    representation: Representation = "auto"
    seed: int = 0
    output_dir: str | None = None
    # Co-evolve on a seeded sample of about this many rows, then stream every other row through the
    # final LLM, embedder and centres (pipeline/stream.py); None: every row is in the loop.
    sample_size: int | None = None
    stream_unit_rows: int = 10_000  # ids per resumable unit of that pass (one actor-pool start each)
    interpret: InterpretConfig = field(default_factory=InterpretConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    prefer: PreferenceConfig = field(default_factory=PreferenceConfig)
    train_llm: LLMTrainConfig = field(default_factory=LLMTrainConfig)
    train_embedder: EmbedderTrainConfig = field(default_factory=EmbedderTrainConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**value))
        TaskDescription.parse(self.task)  # "<task>: <standard>", refused here rather than in an actor
        check_choice("representation", self.representation, Representation)
        k = self.n_clusters
        if k != "auto":
            if isinstance(k, bool) or not isinstance(k, int):
                raise InputError(f"n_clusters must be an integer or 'auto', got {k!r}")
            if k <= 1:
                raise InputError(f"n_clusters must be at least 2, got {k}")
        if not isinstance(self.iterations, int) or self.iterations < 0:
            raise InputError(f"iterations must be a non-negative integer, got {self.iterations!r}")
        if self.sample_size is not None and (isinstance(self.sample_size, bool) or not isinstance(self.sample_size, int)
                                             or self.sample_size < 2):
            raise InputError(f"sample_size must be None or an integer >= 2, got {self.sample_size!r}")
        if self.sample_size is not None and k != "auto" and self.sample_size < k:
            raise InputError(f"sample_size={self.sample_size} is below n_clusters={k}: the sample is what the "
                             "centres are fitted on")
        if isinstance(self.stream_unit_rows, bool) or not isinstance(self.stream_unit_rows, int) or self.stream_unit_rows < 1:
            raise InputError(f"stream_unit_rows must be a positive integer, got {self.stream_unit_rows!r}")
        if self.representation == "auto" and len(set(self.cluster.eval_seeds)) < 2:
            raise InputError("representation='auto' (the default) compares KMeans partitions across "
                             f"cluster.eval_seeds: give at least 2 distinct seeds (got {self.cluster.eval_seeds!r}) "
                             "or name a representation")
        if self.iterations > 0 and len(self.interpret.temperatures) < 2:
            raise InputError("iterations >= 1 need at least 2 temperatures (the greedy one and a sampled one) "
                             "to form preference pairs")

    @classmethod
    def from_params(cls, profile: str | None = None, llm: str | None = None, embedder: str | None = None,
                    **params: Any) -> "CoEvolverConfig":
        """The configuration of ``CoEvolver(**params)``: ``params`` on top of ``profile``
        (:func:`coevo_ray.profiles.with_profile`; None: the dataclasses' defaults); sections may be
        dicts or config objects; ``llm``/``embedder`` set the interpret/embed sections' models."""
        from coevo_ray.profiles import with_profile

        settings = with_profile(profile, {"llm": llm, "embedder": embedder, **params})
        llm, embedder = settings.pop("llm", None), settings.pop("embedder", None)
        config = cls(**settings)
        if llm is not None:
            config.interpret = replace(config.interpret, llm=llm)
        if embedder is not None:
            config.embed = replace(config.embed, embedder=embedder)
        return config

    def for_models(self) -> "CoEvolverConfig":
        """This configuration with what depends on the models' sizes filled in, as a fit starts
        (the embedder's weights are read for their size, not loaded): the embedder learning rate
        that ``train_embedder.learning_rate=None`` stands for."""
        if not self.train_embedder.enabled or self.train_embedder.learning_rate is not None:
            return self
        from coevo_ray.models import ModelSize, resolve_model

        size = ModelSize.of(resolve_model(self.embed.embedder))
        return replace(self, train_embedder=self.train_embedder.for_embedder(size.parameters))

    def estimator_params(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this configuration through ``CoEvolver``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CoEvolverConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
