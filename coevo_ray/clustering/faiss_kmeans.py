"""Seeded FAISS KMeans with assignment of new vectors.

FAISS subsamples to 256 points per centroid by default; the paper clusters every point, so we
train on all of them unless ``max_points_per_centroid`` is set.
"""

from __future__ import annotations

import logging

import numpy as np

from coevo_ray.choices import KMeansInit, check_choice
from coevo_ray.errors import InputError, NotFittedError

logger = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def check_embeddings(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty 2-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise InputError(f"{what} contain NaN or infinite values in {bad} rows")
    zero = int((np.abs(x).sum(axis=1) == 0).sum())
    if zero == x.shape[0]:
        raise InputError(f"{what} are all zero vectors: the embedding model produced nothing usable")
    return x


class FaissKMeans:
    """KMeans via ``faiss.Kmeans``; identical labels for the same seed and input."""

    def __init__(
        self,
        n_clusters: int,
        seed: int = 0,
        niter: int = 25,
        nredo: int = 1,
        normalize: bool = True,
        max_points_per_centroid: int | None = None,
        use_gpu: bool = False,
        init: str = "k-means++",
    ) -> None:
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
            raise InputError(f"n_clusters must be an integer, got {n_clusters!r}")
        if n_clusters < 2:
            raise InputError(f"n_clusters must be at least 2, got {n_clusters}")
        self.n_clusters = int(n_clusters)
        self.seed = int(seed)
        self.niter = niter
        self.nredo = nredo
        self.normalize = normalize
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu
        check_choice("KMeans seeding", init, KMeansInit)  # a public estimator, built directly too
        self.init = init
        self.cluster_centers_: np.ndarray | None = None
        self.labels_: np.ndarray | None = None
        self.distances_: np.ndarray | None = None

    @classmethod
    def from_centers(cls, centers: np.ndarray, normalize: bool = True) -> "FaissKMeans":
        """An assigner for saved centres: ``predict`` gives what ``fit``'s ``labels_`` gave."""
        centers = np.ascontiguousarray(centers, dtype=np.float32)
        km = cls(max(2, centers.shape[0]), normalize=normalize)
        km.cluster_centers_ = centers
        return km

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = check_embeddings(x)
        return l2_normalize(x) if self.normalize else x

    def fit(self, x: np.ndarray) -> "FaissKMeans":
        import faiss

        x = self._prepare(x)
        n, d = x.shape
        if self.n_clusters > n:
            raise InputError(f"n_clusters={self.n_clusters} exceeds the number of points ({n})")
        km = faiss.Kmeans(
            d,
            self.n_clusters,
            niter=self.niter,
            nredo=self.nredo,
            seed=self.seed,
            verbose=False,
            # Only where the hardware plan gave this process a GPU (hardware.faiss_use_gpu):
            # faiss.Kmeans(gpu=True) takes every GPU of the node, outside Ray's accounting.
            gpu=bool(self.use_gpu),
            spherical=False,
            # Use every point unless told otherwise (FAISS's default caps at 256 per centroid).
            max_points_per_centroid=self.max_points_per_centroid or max(n // self.n_clusters + 1, 256),
            min_points_per_centroid=1,
        )
        init_centroids = None
        if self.init == "k-means++":
            # FAISS seeds with random points, which often puts two centroids in one dense region
            # and never recovers (3 of 5 seeds on four well-separated blobs); scikit-learn's
            # k-means++ seeding fixes that at O(n·k·d) cost.
            from sklearn.cluster import kmeans_plusplus

            init_centroids, _ = kmeans_plusplus(x, self.n_clusters, random_state=self.seed)
            init_centroids = np.ascontiguousarray(init_centroids, dtype=np.float32)
        km.train(x, init_centroids=init_centroids)
        self.cluster_centers_ = np.asarray(km.centroids, dtype=np.float32).copy()
        self.labels_, self.distances_ = self._search(x)
        return self

    def _search(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        index = faiss.IndexFlatL2(self.cluster_centers_.shape[1])
        index.add(self.cluster_centers_)
        sq_dist, idx = index.search(x, 1)
        return idx[:, 0].astype(np.int64), np.sqrt(np.maximum(sq_dist[:, 0], 0.0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Assign new vectors to the fitted centroids."""
        return self.assign(x)[0]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Euclidean distances (N × K) of vectors to every centroid, after the same normalisation
        as ``fit`` (scikit-learn's ``KMeans.transform``)."""
        if self.cluster_centers_ is None:
            raise NotFittedError("FaissKMeans.transform called before fit")
        x = self._prepare(x)
        sq = (x * x).sum(1)[:, None] - 2 * x @ self.cluster_centers_.T + (self.cluster_centers_ ** 2).sum(1)[None, :]
        return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each vector's nearest centroid and its distance to it."""
        if self.cluster_centers_ is None:
            raise NotFittedError("FaissKMeans.assign called before fit")
        return self._search(self._prepare(x))
