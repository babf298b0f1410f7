"""Generation engines behind one small interface: vLLM (default) and transformers (fallback).

Both take fully rendered prompts with one temperature and one seed per request, so the caller
decides the fan-out (text × temperature) and a rerun with the same seed reproduces every sample.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, Sequence

from coevo_ray.errors import InputError
from coevo_ray.hardware import engine_settings, vllm_lora_rank

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class EngineSpec:
    """Everything an actor needs to build an engine; plain data so Ray can ship it."""

    model_dir: str
    backend: str = "vllm"  # "vllm" or "transformers"
    # The hardware plan decides dtype, device and engine_kwargs for a fit (coevo_ray.hardware);
    # these defaults are its CPU choices: fp32 (without AMX vLLM-CPU's bf16 is slower), eager
    # mode (torch.compile's warm-up costs minutes per engine start on 2 cores), no chunked prefill.
    dtype: str = "float32"
    max_model_len: int = 2048
    adapter_dir: str | None = None
    max_lora_rank: int = 64
    kv_cache_gib: int = 2
    device: str = "cpu"  # the transformers engine's device ("cuda" in an actor given a GPU)
    engine_kwargs: dict = field(default_factory=lambda: engine_settings(False, "float32", None, None)[1])
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    # vLLM structured output (xgrammar; runs on CPU too): answers forced into this regex.
    structured_regex: str | None = None
    seed: int = 0


class Completion(NamedTuple):
    """One generated answer and why it ended: ``"stop"`` (end of sequence, a stop string, or the
    end of the structured-output grammar) or ``"length"`` (cut by ``max_tokens``)."""

    text: str
    finish_reason: str

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def adapter_rank(adapter_dir: str | os.PathLike) -> int:
    cfg_path = Path(adapter_dir) / "adapter_config.json"
    try:
        return int(json.loads(cfg_path.read_text())["r"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{adapter_dir} is not a PEFT LoRA adapter directory ({exc})") from None


class GenerationEngine(Protocol):
    tokenizer: object

    def generate(
        self, prompts: Sequence[str], temperatures: Sequence[float], seeds: Sequence[int], max_tokens: int
    ) -> list[Completion]: ...


class VLLMEngine:
    """One ``vllm.LLM`` per process, reused across batches (engine start is the slow part)."""

    def __init__(self, spec: EngineSpec) -> None:
        from vllm import LLM

        kwargs = dict(model=spec.model_dir, dtype=spec.dtype, seed=spec.seed, max_model_len=spec.max_model_len,
                      trust_remote_code=False)
        self.lora_request = None
        if spec.adapter_dir is not None:
            rank = adapter_rank(spec.adapter_dir)
            if rank > spec.max_lora_rank:
                raise InputError(
                    f"LoRA rank {rank} of {spec.adapter_dir} is above the engine limit "
                    f"max_lora_rank={spec.max_lora_rank}; raise max_lora_rank"
                )
            # LoRA only when an adapter is served: enable_lora alone costs throughput on CPU.
            kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(rank), max_loras=1)
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("coevo", 1, str(spec.adapter_dir))
        kwargs.update(spec.engine_kwargs)
        self.spec = spec
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def sampling_params(self, temperatures, seeds, max_tokens) -> list:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        shape = self.spec.structured_regex
        return [
            SamplingParams(
                temperature=float(t),
                seed=None if t == 0 else int(s),
                max_tokens=max_tokens,
                repetition_penalty=self.spec.repetition_penalty,
                stop=list(self.spec.stop) or None,
                structured_outputs=StructuredOutputsParams(regex=shape) if shape else None,
                output_kind=RequestOutputKind.FINAL_ONLY,
            )
            for t, s in zip(temperatures, seeds)
        ]

    def generate(self, prompts, temperatures, seeds, max_tokens):
        params = self.sampling_params(temperatures, seeds, max_tokens)
        outputs = self.llm.generate(list(prompts), params, lora_request=self.lora_request, use_tqdm=False)
        return [_completion(o) for o in outputs]

    # Continuous batching across calls (EngineLoop): requests join the running engine between steps.
    def add_requests(self, request_ids: Sequence[str], prompts, temperatures, seeds, max_tokens) -> None:
        engine = self.llm.llm_engine
        for rid, prompt, params in zip(request_ids, prompts, self.sampling_params(temperatures, seeds, max_tokens)):
            engine.add_request(rid, prompt, params, lora_request=self.lora_request)

    def abort_requests(self, request_ids: Sequence[str]) -> None:
        self.llm.llm_engine.abort_request(list(request_ids), internal=True)

    def has_unfinished_requests(self) -> bool:
        return self.llm.llm_engine.has_unfinished_requests()

    def step(self) -> list[tuple[str, Completion]]:
        """One engine step; (request id, completion) of each request that finished in it."""
        return [(o.request_id, _completion(o)) for o in self.llm.llm_engine.step() if o.finished]


def _completion(output) -> Completion:
    first = output.outputs[0]
    return Completion(first.text, "length" if first.finish_reason == "length" else "stop")


class TransformersEngine:
    """Batched ``generate`` with left padding; a PEFT adapter when given.

    Sampled requests are grouped by temperature and seeded per group (transformers has no
    per-request seed), so reruns reproduce them for the same batching.
    """

    def __init__(self, spec: EngineSpec, batch_size: int = 32) -> None:
        import torch

        if spec.structured_regex:
            raise InputError("structured_output needs the vllm backend; the transformers engine has no grammar support")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            spec.dtype, "auto"
        )
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(spec.model_dir, dtype=dtype, trust_remote_code=False)
        if spec.adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, spec.adapter_dir)
        self.model = model.to(spec.device).eval()
        self.spec = spec
        self.batch_size = batch_size

    def generate(self, prompts, temperatures, seeds, max_tokens):
        import torch

        out: list[Completion] = [Completion("", "stop")] * len(prompts)
        groups: dict[float, list[int]] = {}
        for i, t in enumerate(temperatures):
            groups.setdefault(float(t), []).append(i)
        for temp, idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                enc = self.tokenizer(
                    [prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.spec.device)
                kwargs = dict(max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                              repetition_penalty=self.spec.repetition_penalty)
                if temp == 0:
                    kwargs.update(do_sample=False)
                else:
                    torch.manual_seed(int(seeds[chunk[0]]))
                    kwargs.update(do_sample=True, temperature=temp, top_k=0, top_p=1.0)
                if self.spec.stop:
                    kwargs.update(stop_strings=list(self.spec.stop), tokenizer=self.tokenizer)
                with torch.inference_mode():
                    gen = self.model.generate(**enc, **kwargs)
                new = gen[:, enc["input_ids"].shape[1] :]
                ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
                for i, row in zip(chunk, new):
                    # A row that used every new token without an end-of-sequence token was cut.
                    cut = len(row) == max_tokens and int(row[-1]) not in ends
                    out[i] = Completion(self.tokenizer.decode(row, skip_special_tokens=True), "length" if cut else "stop")
        return out


def build_engine(spec: EngineSpec) -> GenerationEngine:
    if spec.backend == "vllm":
        return VLLMEngine(spec)
    if spec.backend == "transformers":
        return TransformersEngine(spec)
    raise InputError(f"unknown generation backend {spec.backend!r}: use 'vllm' or 'transformers'")
