"""The paper's similarity Δ(a, b) = exp(cos(a, b)/τ), kept in log space as logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_logits(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """``log Δ(a_i, b_j)`` for every pair: an (len(a), len(b)) matrix."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
