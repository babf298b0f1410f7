"""ℓ_CL† (paper eq. 13): an interpretation against a second, differently-dropped-out forward pass
of itself (SimCSE's "virtual augmentation"), the other rows' second passes as negatives.

Written by hand so it takes the two passes as tensors: the combined loss runs the encoder and
reuses e_i⁺ for eq. 12 and DEC.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coevo_ray.train_embedder.losses._similarity import cosine_logits


class DropoutAugmentationLoss(nn.Module):
    def __init__(self, tau: float = 0.1) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, interp_emb: torch.Tensor, augmented_emb: torch.Tensor) -> torch.Tensor:
        target = torch.arange(interp_emb.shape[0], device=interp_emb.device)
        return F.cross_entropy(cosine_logits(interp_emb, augmented_emb, self.tau), target)
