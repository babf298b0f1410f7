"""Score only the completion tokens in TRL's fused LM head, on every device.

TRL (1.16) computes DPO log-probabilities with a fused, chunked LM head
(``trl.trainer.utils.add_fused_lm_head``). On Triton devices it projects only the positions whose
label is not -100 (the completion tokens); everywhere else it projects every position, prompt
included, so that a compiler that specialises on shapes (Neuron) sees one shape per batch. On a
CPU in eager mode nothing is compiled, and scoring the prompt is pure waste: our prompts are several
times longer than the answers, so most of the vocabulary projection (forward and backward) is spent
on positions whose scores are thrown away (figures: README, "Training"). The compact path TRL uses
on GPUs gives the same log-probabilities (its result is scattered back into the full-length
tensor), so we select it on CPUs too.

Written by hand because TRL exposes no setting for it: the choice is the module-level
``_use_triton`` name that ``add_fused_lm_head``'s forward looks up when it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


@contextmanager
def completion_tokens_only() -> Iterator[bool]:
    """Within the block, TRL's fused LM head projects only completion positions on CPUs as well.
    Yields whether the compact path is in effect (False on a TRL without the hook: slower, same loss)."""
    import torch
    import trl.trainer.utils as trl_utils

    choose = getattr(trl_utils, "_use_triton", None)
    if choose is None:
        logger.warning("TRL has no trl.trainer.utils._use_triton: DPO scores prompt tokens too (slower, same loss)")
        yield False
        return

    def compact_on_cpu(device: torch.device) -> bool:
        return device.type == "cpu" or choose(device)

    trl_utils._use_triton = compact_on_cpu
    try:
        yield True
    finally:
        trl_utils._use_triton = choose
