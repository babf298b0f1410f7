import numpy as np
import pytest

from coevo_ray.clustering import FaissKMeans
from coevo_ray.errors import InputError


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(300, 32)).astype(np.float32)


def test_same_seed_gives_identical_labels():
    x = _blobs()
    a = FaissKMeans(8, seed=3).fit(x)
    b = FaissKMeans(8, seed=3).fit(x)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_different_seeds_usually_differ():
    x = _blobs()
    labels = {tuple(FaissKMeans(8, seed=s).fit(x).labels_) for s in range(4)}
    assert len(labels) > 1


def test_predict_matches_fit_labels_and_assigns_new_points():
    x = _blobs()
    km = FaissKMeans(5, seed=0).fit(x)
    np.testing.assert_array_equal(km.predict(x), km.labels_)
    new = km.predict(_blobs(1)[:10])
    assert new.shape == (10,) and new.min() >= 0 and new.max() < 5


def test_uses_every_point_by_default():
    # 300 points, K=2: FAISS's default cap (256 per centroid) would not subsample here, but
    # K=1000-point runs would; check our cap keeps all points (no "sampling" warning path).
    km = FaissKMeans(2, seed=0)
    km.fit(_blobs())
    assert km.labels_.shape == (300,)


@pytest.mark.parametrize("k", [1, 0, -3])
def test_k_too_small(k):
    with pytest.raises(InputError, match="at least 2"):
        FaissKMeans(k)


def test_k_not_integer():
    with pytest.raises(InputError, match="integer"):
        FaissKMeans(2.5)


def test_k_larger_than_n():
    with pytest.raises(InputError, match="exceeds the number of points"):
        FaissKMeans(50).fit(_blobs()[:10])


def test_nan_and_zero_embeddings_refused():
    x = _blobs()
    x[3, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        FaissKMeans(4).fit(x)
    with pytest.raises(InputError, match="all zero"):
        FaissKMeans(4).fit(np.zeros((20, 8), np.float32))


def test_a_kind_as_stable_as_the_most_stable_within_the_noise_is_preferred():
    """choose_stable compares kinds pair by pair: a lead inside 2 standard errors of the paired
    differences is no lead, and the preference order decides; a lead beyond it is kept."""
    from coevo_ray.clustering import choose_stable

    order = ("raw-text", "text", "interpretation")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, 10)
    wobble = np.array([0.06, -0.04, 0.05, -0.03, 0.04, -0.02, 0.03, 0.0, 0.02, -0.05])  # mean 0.006
    noisy_lead = {"raw-text": base, "text": base + wobble, "interpretation": base - 0.2}
    chosen, why = choose_stable(noisy_lead, order)
    assert why["most_stable"] == "text" and chosen == "raw-text" and why["as_stable"] == ["raw-text", "text"]
    gap = why["gap_to_most_stable"]["raw-text"]
    assert 0 < gap["gap"] <= 2 * gap["se"]
    clear_lead = {**noisy_lead, "text": base + 0.1 + rng.normal(0, 0.01, 10)}
    assert choose_stable(clear_lead, order)[0] == "text"
    # One seed pair gives no spread: only an equal ARI ties.
    assert choose_stable({"raw-text": np.array([0.5]), "text": np.array([0.5])}, order)[0] == "raw-text"
    assert choose_stable({"raw-text": np.array([0.5]), "text": np.array([0.51])}, order)[0] == "text"
    with pytest.raises(ValueError, match="no preference given for \\['concat'\\]"):
        choose_stable({"concat": base}, order)
