import numpy as np
import pytest

from coevo_ray.errors import InputError
from coevo_ray.metrics import cluster_accuracy, evaluate, evaluate_kmeans_protocol


def test_accuracy_is_invariant_to_label_permutation():
    y = [0, 0, 1, 1, 2, 2]
    pred = [2, 2, 0, 0, 1, 1]  # same partition, other names
    assert cluster_accuracy(y, pred) == 1.0
    s = evaluate(y, pred)
    assert s.acc == 100.0 and s.nmi == pytest.approx(100.0) and s.ari == pytest.approx(100.0)


def test_accuracy_by_hand_with_one_error():
    # classes a,a,a,b,b,b; clusters 1,1,0,0,0,0 → best map 1→a (2 right), 0→b (3 right): 5/6.
    assert cluster_accuracy(list("aaabbb"), [1, 1, 0, 0, 0, 0]) == pytest.approx(5 / 6)


def test_accuracy_when_more_clusters_than_classes():
    # 3 clusters on 2 classes: cluster 2 cannot be matched, its 2 points count as errors.
    y = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 2, 1, 1, 2]
    assert cluster_accuracy(y, pred) == pytest.approx(4 / 6)


def test_accuracy_when_fewer_clusters_than_classes():
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 0, 0, 0, 1, 1]
    assert cluster_accuracy(y, pred) == pytest.approx(4 / 6)


def test_nmi_and_ari_by_hand():
    # Independent partitions: NMI 0; ARI of this 2x2 design is -0.5 by the Hubert-Arabie formula.
    y = [0, 0, 1, 1]
    pred = [0, 1, 0, 1]
    s = evaluate(y, pred)
    assert s.nmi == pytest.approx(0.0, abs=1e-9)
    assert s.ari == pytest.approx(-50.0)


def test_wrong_length_labels():
    with pytest.raises(InputError, match="different lengths"):
        evaluate([0, 1, 2], [0, 1])


def test_kmeans_protocol_on_separable_blobs():
    rng = np.random.default_rng(0)
    centers = np.eye(4, 16) * 30
    x = np.vstack([c + 0.5 * rng.normal(size=(25, 16)) for c in centers])
    y = np.repeat(np.arange(4), 25)
    out = evaluate_kmeans_protocol(x, y, 4)
    assert out["n_seeds"] == 5
    assert out["acc"] > 95 and out["nmi"] > 90


def test_on_text_guard_separates_related_from_unrelated_pairs():
    from coevo_ray.metrics import on_text_similarity

    rng = np.random.default_rng(0)
    texts = rng.normal(size=(50, 16))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    close = texts + 0.1 * rng.normal(size=texts.shape)
    close /= np.linalg.norm(close, axis=1, keepdims=True)
    same = np.tile(texts[:1], (50, 1))  # "I'm ready to assist" for every text
    on = on_text_similarity(texts, close)
    off = on_text_similarity(texts, same)
    assert on["matched"] > 0.9 and on["gap"] > 0.8
    assert abs(off["gap"]) < 0.05 and off["n"] == 50
