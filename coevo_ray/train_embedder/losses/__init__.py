"""The embedder's training objective, one loss per module (paper section 3.3)."""

from coevo_ray.train_embedder.losses.coevo_embedder_loss import CoEvoEmbedderLoss
from coevo_ray.train_embedder.losses.dec_loss import DECLoss, student_t_assignments, target_distribution
from coevo_ray.train_embedder.losses.dropout_augmentation_loss import DropoutAugmentationLoss
from coevo_ray.train_embedder.losses.text_interpretation_loss import TextInterpretationLoss

__all__ = ["CoEvoEmbedderLoss", "DECLoss", "DropoutAugmentationLoss", "TextInterpretationLoss",
           "student_t_assignments", "target_distribution"]
