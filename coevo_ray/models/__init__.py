"""Model references → local Hugging Face directories: a path, a hub id, or an offline alias."""

from coevo_ray.models.packs import MODEL_ALIASES, ModelPack, resolve_model

__all__ = ["MODEL_ALIASES", "ModelPack", "resolve_model"]
