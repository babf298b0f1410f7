"""Final step of the pipeline: KMeans over embeddings (FAISS; on a GPU in Ray tasks the hardware plan gives one)."""

from coevo_ray.clustering.auto_k import estimate_n_clusters
from coevo_ray.clustering.faiss_kmeans import FaissKMeans, l2_normalize
from coevo_ray.clustering.sampled import assign_dataset, fit_on_sample, in_sample
from coevo_ray.clustering.stability import choose_stable, kmeans_pairwise_stability

__all__ = ["FaissKMeans", "assign_dataset", "choose_stable", "estimate_n_clusters", "fit_on_sample", "in_sample",
           "kmeans_pairwise_stability", "l2_normalize"]
