"""Every string switch of the package as a ``Literal`` type, and the one check that refuses a
value outside it. Configs check their fields here once, in ``__post_init__``; the code that
reads a checked config trusts it."""

from __future__ import annotations

from typing import Any, Literal, get_args

from coevo_ray.errors import InputError

# "raw-text": the texts by the embedder as loaded (the baseline's clustering); "auto": the most
# stable of the others across KMeans seeds, chosen per fit (pipeline/loop.py).
Representation = Literal["interpretation", "text", "concat", "raw-text", "auto"]
PromptStyle = Literal["paper", "agnostic", "guided", "exemplars", "concise"]
Backend = Literal["vllm", "transformers"]
AdapterServing = Literal["auto", "merged", "lora"]  # how a DPO-trained LLM is served
# How a generation actor's engine takes Ray Data batches (interpret/engine_loop.py): one at a time
# (answers independent of arrival timing) or all joining the running engine (faster, timing-dependent).
Admission = Literal["per-batch", "continuous"]
EngineDtype = Literal["auto", "float32", "bfloat16", "float16"]  # "auto": the hardware plan's
PreferenceRule = Literal["density", "random"]  # "random": the paper's ablation (table 2)
KMeansInit = Literal["k-means++", "random"]
NegativeSource = Literal["texts", "interpretations"]  # where eq. 12's in-batch negatives come from


def options(choice: Any) -> tuple[str, ...]:
    return get_args(choice)


def check_choice(what: str, value: Any, choice: Any) -> None:
    if value not in get_args(choice):
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(get_args(choice))}")
