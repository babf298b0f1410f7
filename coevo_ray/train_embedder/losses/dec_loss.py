"""DEC regularisation (paper eq. 15; Xie et al., 2016), written by hand: no maintained library
ships it. Student-t soft assignments q of the interpretation embeddings to K trainable centroids,
a sharpened target p (treated as a constant, as in DEC), and KL(p‖q) averaged over the batch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def student_t_assignments(emb: torch.Tensor, centroids: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """q_ij ∝ (1 + ‖e_i − ν_j‖² / α)^(−(α+1)/2)."""
    sq = torch.cdist(emb, centroids).pow(2)
    kernel = (1.0 + sq / alpha).pow(-(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """p_ij = (q_ij² / f_j) / Σ_k (q_ik² / f_k), f_j = Σ_i q_ij."""
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)


class DECLoss(nn.Module):
    def __init__(self, centroids: np.ndarray | torch.Tensor, alpha: float = 1.0) -> None:
        super().__init__()
        self.centroids = nn.Parameter(torch.as_tensor(np.asarray(centroids), dtype=torch.float32).clone())
        self.alpha = alpha

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        q = student_t_assignments(emb, self.centroids, self.alpha)
        p = target_distribution(q).detach()
        return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(dim=1).mean()
