"""Clustering metrics as the paper reports them: ACC (Hungarian matching), NMI, ARI, in percent."""

from coevo_ray.metrics.scores import (
    ClusteringScores,
    cluster_accuracy,
    compare_clusterings,
    evaluate,
    evaluate_kmeans_protocol,
)
from coevo_ray.metrics.on_text import ON_TEXT_MIN_GAP, on_text_similarity, sample_on_text_similarity

__all__ = ["ClusteringScores", "cluster_accuracy", "compare_clusterings", "evaluate", "evaluate_kmeans_protocol", "ON_TEXT_MIN_GAP",
           "on_text_similarity", "sample_on_text_similarity"]
