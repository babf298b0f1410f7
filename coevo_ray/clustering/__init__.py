"""Final step of the pipeline: KMeans over embeddings (FAISS; a GPU index when FAISS sees GPUs)."""

from coevo_ray.clustering.auto_k import estimate_n_clusters
from coevo_ray.clustering.faiss_kmeans import FaissKMeans, faiss_gpu_count, l2_normalize

__all__ = ["FaissKMeans", "estimate_n_clusters", "faiss_gpu_count", "l2_normalize"]
