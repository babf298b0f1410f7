"""Clustering metrics as the paper reports them: ACC (Hungarian matching), NMI, ARI, in percent."""

from coevo_ray.metrics.scores import (
    ClusteringScores,
    cluster_accuracy,
    evaluate,
    evaluate_kmeans_protocol,
)

__all__ = ["ClusteringScores", "cluster_accuracy", "evaluate", "evaluate_kmeans_protocol"]
