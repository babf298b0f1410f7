"""ℓ_CL (paper eq. 12): the interpretation x_i⁺ is the positive of its text x_i.

Written by hand: sentence-transformers' MultipleNegativesRankingLoss draws its negatives from
the *positives* of the other rows; eq. 12 draws them from the other *texts* (Δ(e_i, e_k), k ≠ i).
Both are offered; the paper's form is the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coevo_ray.choices import NegativeSource, check_choice
from coevo_ray.train_embedder.losses._similarity import cosine_logits


class TextInterpretationLoss(nn.Module):
    def __init__(self, tau: float = 0.1, negatives: str = "texts") -> None:
        super().__init__()
        # A public loss module, built directly as well as from a checked config (sentence-transformers style).
        check_choice("negatives source", negatives, NegativeSource)
        self.tau = tau
        self.negatives = negatives

    def forward(self, text_emb: torch.Tensor, interp_emb: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ℓ_i^CL; row i of both inputs belongs to text i."""
        target = torch.arange(text_emb.shape[0], device=text_emb.device)
        if self.negatives == "interpretations":
            return F.cross_entropy(cosine_logits(text_emb, interp_emb, self.tau), target)
        # Row i: Δ(e_i, e_k) for k ≠ i, with the diagonal replaced by the positive Δ(e_i, e_i⁺).
        logits = cosine_logits(text_emb, text_emb, self.tau)
        positive = (F.normalize(text_emb, dim=-1) * F.normalize(interp_emb, dim=-1)).sum(-1) / self.tau
        eye = torch.eye(len(target), dtype=torch.bool, device=text_emb.device)
        logits = torch.where(eye, positive[:, None].expand_as(logits), logits)
        return F.cross_entropy(logits, target)
