"""What every stage of one run shares: the configuration, the run directory, the corpus and the
seeds. Frozen, so a stage cannot change what the next one sees; only ``timings`` collects."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coevo_ray.config import CoEvolverConfig
from coevo_ray.data import Corpus
from coevo_ray.interpret.prompts import exemplar_texts
from coevo_ray.rundir import RunDir, fingerprint

if TYPE_CHECKING:
    from coevo_ray.hardware import HardwarePlan
    from coevo_ray.pipeline.stage import Stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMWeights:
    """The generating LLM: the base weights, the DPO adapter, and what the engines load."""

    base: Path
    adapter: Path | None = None
    merged: Path | None = None  # set when the adapter is served as merged weights

    @property
    def engine_dirs(self) -> tuple[str, str | None]:
        if self.merged is not None:
            return str(self.merged), None
        return str(self.base), (str(self.adapter) if self.adapter else None)


@dataclass(frozen=True)
class RunContext:
    config: CoEvolverConfig
    run: RunDir
    corpus: Corpus
    exemplars: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, config: CoEvolverConfig, corpus: Corpus, resume: bool = False) -> "RunContext":
        """A fit's context: the run directory is claimed for ``config`` (refused when another
        configuration wrote it, unless ``resume``) and the prompt's exemplars are drawn."""
        run = RunDir(config.output_dir)
        interpret = config.interpret
        exemplars = (exemplar_texts(corpus.model_texts(interpret.max_text_chars), interpret.n_exemplars, config.seed)
                     if interpret.prompt_style == "exemplars" else ())
        ctx = cls(config, run, corpus, exemplars)
        run.open_run({**{k: v for k, v in config.to_dict().items() if k != "output_dir"},
                      "corpus": ctx.corpus_key}, resume)
        return ctx

    @cached_property  # asked once per run: the layout stays the same for the whole fit
    def plan(self) -> "HardwarePlan":
        """The hardware plan of this fit (:mod:`coevo_ray.hardware`), for the connected Ray cluster."""
        from coevo_ray.hardware import plan_for
        from coevo_ray.models import ModelSize, resolve_model

        size = ModelSize.of(resolve_model(self.config.embed.embedder)) if self.config.train_embedder.enabled else None
        return plan_for(self.config, size if size is not None and size.parameters else None)

    @cached_property  # hashing every text once per run, not once per stage key
    def corpus_key(self) -> str:
        return fingerprint("corpus", self.corpus.texts)

    def model_texts(self) -> list[str]:
        return self.corpus.model_texts(self.config.interpret.max_text_chars)

    def seed(self, iteration: int = 0) -> int:
        """The one rule for seeds: the run's seed, offset by the iteration for what is redrawn
        each iteration (preference sampling, DPO and embedder shuffles)."""
        return self.config.seed + iteration

    def run_stage(self, stage: "Stage", step: str | None = None, label: str | None = None, /, **inputs: Any) -> Path:
        """The stage's directory for these inputs: reused when finished, else built atomically.
        Its name is ``<step>-<stage name>-<label>``; its key comes from the stage's config and
        its inputs (input artifacts are directories named by their own keys)."""
        name = "-".join(part for part in (step, stage.name, label) if part)
        start = time.perf_counter()
        path, reused = self.run.run_stage(name, stage.key(self, **inputs),
                                          lambda tmp: stage.build(self, tmp, **inputs))
        self.timings[name] = 0.0 if reused else round(time.perf_counter() - start, 2)
        logger.info("%s: %s", name, "reused from the run directory" if reused else f"done in {self.timings[name]:.0f} s")
        return path
