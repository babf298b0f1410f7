"""DEC regularisation (paper eq. 15; Xie et al., 2016), written by hand: no maintained library
ships it. Student-t soft assignments q of the interpretation embeddings to K trainable centroids,
a sharpened target p (treated as a constant, as in DEC), and KL(p‖q) averaged over the batch.

The target's cluster frequencies f_j = Σ_i q_ij run over all N texts in eq. 15. Over one 32-row
batch with K = 256 clusters they are mostly near zero and noisy, so ``cluster_frequency`` takes
them from the whole corpus (computed once from the initial embeddings and centroids, as DEC
refreshes its target every T steps); without it the batch's own sums are used."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def student_t_assignments(emb: torch.Tensor, centroids: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """q_ij ∝ (1 + ‖e_i − ν_j‖² / α)^(−(α+1)/2)."""
    sq = torch.cdist(emb, centroids).pow(2)
    kernel = (1.0 + sq / alpha).pow(-(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor, frequency: torch.Tensor | None = None) -> torch.Tensor:
    """p_ij = (q_ij² / f_j) / Σ_k (q_ik² / f_k), f_j = Σ_i q_ij (of these rows, or ``frequency``)."""
    f = q.sum(dim=0, keepdim=True) if frequency is None else frequency.reshape(1, -1)
    weight = q.pow(2) / f.clamp_min(1e-12)
    return weight / weight.sum(dim=1, keepdim=True)


def cluster_frequency(embeddings: np.ndarray, centroids: np.ndarray, alpha: float = 1.0,
                      chunk_rows: int = 65_536) -> np.ndarray:
    """f_j = Σ_i q_ij over every row of ``embeddings`` (chunked: N × K never held at once)."""
    c = torch.as_tensor(np.asarray(centroids), dtype=torch.float32)
    total = torch.zeros(c.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(embeddings), chunk_rows):
            e = torch.tensor(np.asarray(embeddings[start:start + chunk_rows]), dtype=torch.float32)
            total += student_t_assignments(e, c, alpha).sum(dim=0).double()
    return total.numpy()


class DECLoss(nn.Module):
    def __init__(self, centroids: np.ndarray | torch.Tensor, alpha: float = 1.0,
                 cluster_frequency: np.ndarray | None = None) -> None:
        super().__init__()
        # np.array copies: arrays from Ray's object store are read-only, which torch warns about.
        self.centroids = nn.Parameter(torch.from_numpy(np.array(centroids, dtype=np.float32)))
        self.alpha = alpha
        freq = None if cluster_frequency is None else torch.from_numpy(np.array(cluster_frequency, dtype=np.float32))
        self.register_buffer("frequency", freq)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        q = student_t_assignments(emb, self.centroids, self.alpha)
        p = target_distribution(q, self.frequency).detach()
        return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(dim=1).mean()
