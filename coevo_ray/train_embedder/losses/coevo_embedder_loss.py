"""L_E = L_CL + λ·L_DEC (paper eqs. 14 and 16) over a sentence-transformers model.

The module owns the encoder and the DEC centroids, so one DDP wrapper covers every trainable
parameter, and it returns plain tensors (sentence-transformers 6 returns a ``BatchEncoding``,
in which DDP cannot find the tensors it has to watch).

DEC sees L2-normalised embeddings: its centroids are fitted on the embed stage's vectors, which
are normalised whether or not the model ends in a ``Normalize`` module.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from coevo_ray.train_embedder.losses.dec_loss import DECLoss
from coevo_ray.train_embedder.losses.dropout_augmentation_loss import DropoutAugmentationLoss
from coevo_ray.train_embedder.losses.text_interpretation_loss import TextInterpretationLoss


class CoEvoEmbedderLoss(nn.Module):
    def __init__(self, model: nn.Module, centroids: np.ndarray | None, tau: float = 0.1,
                 dec_weight: float = 1.0, negatives: str = "texts", dropout_pair: bool = True,
                 alpha: float = 1.0, cluster_frequency: np.ndarray | None = None) -> None:
        super().__init__()
        self.model = model
        self.text_loss = TextInterpretationLoss(tau, negatives)
        self.dropout_loss = DropoutAugmentationLoss(tau) if dropout_pair else None
        self.dec = (DECLoss(centroids, alpha, cluster_frequency) if (centroids is not None and dec_weight > 0)
                    else None)
        self.dec_weight = dec_weight

    def embed(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model(dict(features))["sentence_embedding"]

    def forward(self, text_features: Mapping[str, torch.Tensor], interp_features: Mapping[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_E, ℓ_CL, ℓ_CL†, L_DEC); the model must be in train mode for dropout to differ."""
        e = self.embed(text_features)
        e_plus = self.embed(interp_features)
        cl = self.text_loss(e, e_plus)
        zero = e.new_zeros(())
        if self.dropout_loss is not None:
            cl_dagger = self.dropout_loss(e_plus, self.embed(interp_features))
            total = (cl + cl_dagger) / 2  # eq. 14: 1/(2N) Σ (ℓ + ℓ†)
        else:
            cl_dagger, total = zero, cl
        dec = self.dec(nn.functional.normalize(e_plus, dim=-1)) if self.dec is not None else zero
        return total + self.dec_weight * dec, cl, cl_dagger, dec
