"""coevo_ray: Ray-native text clustering where a small LLM and an embedding model train each other."""

__version__ = "0.1.0"

from coevo_ray.coevolver import CoEvolver
from coevo_ray.config import ClusterConfig, CoEvolverConfig, EmbedConfig, InterpretConfig
from coevo_ray.data import Corpus, load_corpus
from coevo_ray.embedding_kmeans import EmbeddingKMeans
from coevo_ray.resources import StageResources

__all__ = ["CoEvolver", "CoEvolverConfig", "InterpretConfig", "EmbedConfig", "ClusterConfig",
           "Corpus", "EmbeddingKMeans", "load_corpus", "StageResources", "__version__"]
