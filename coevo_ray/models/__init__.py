"""Model references → local Hugging Face directories: a path, a hub id, or an offline alias."""

from coevo_ray.models.packs import MODEL_ALIASES, ModelPack, resolve_model
from coevo_ray.models.size import ModelSize, parameter_count

__all__ = ["MODEL_ALIASES", "ModelPack", "ModelSize", "parameter_count", "resolve_model"]
