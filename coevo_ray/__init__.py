"""coevo_ray: Ray-native text clustering where a small LLM and an embedding model train each other."""

__version__ = "0.1.0"

from coevo_ray.coevolver import CoEvolver
from coevo_ray.config import ClusterConfig, CoEvolverConfig, EmbedConfig, InterpretConfig, PreferenceConfig
from coevo_ray.data import Corpus, load_corpus, load_demo
from coevo_ray.embedding_kmeans import EmbeddingKMeans
from coevo_ray.errors import CoEvoError, InputError, ModelNotFoundError, NotFittedError, RunDirectoryError, TrainingError
from coevo_ray.profiles import DEFAULT_PROFILE, PROFILES
from coevo_ray.resources import StageResources
from coevo_ray.train_embedder.embedder_config import EmbedderTrainConfig
from coevo_ray.train_llm.dpo_config import LLMTrainConfig

__all__ = ["CoEvolver", "EmbeddingKMeans", "CoEvolverConfig", "InterpretConfig", "EmbedConfig", "ClusterConfig",
           "PreferenceConfig", "LLMTrainConfig", "EmbedderTrainConfig", "StageResources", "Corpus", "load_corpus", "load_demo",
           "PROFILES", "DEFAULT_PROFILE", "CoEvoError", "InputError", "ModelNotFoundError", "NotFittedError",
           "RunDirectoryError", "TrainingError", "__version__"]
