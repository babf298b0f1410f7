"""The embedder's losses (paper eqs. 12–16) against values worked out by hand on tiny tensors."""

import math

import numpy as np
import pytest
import torch

from coevo_ray.train_embedder.losses import (
    CoEvoEmbedderLoss,
    DECLoss,
    DropoutAugmentationLoss,
    TextInterpretationLoss,
    target_distribution,
)

TAU = 0.1
R = 1 / math.sqrt(2)
TEXT = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # e_1, e_2 (norms differ: cosine must ignore them)
INTERP = torch.tensor([[3.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # e_1⁺ (cos 1 with e_1), e_2⁺ (cos 1/√2 with e_2)


def nll(pos, others):
    """-log(exp(pos/τ) / (exp(pos/τ) + Σ exp(other/τ)))."""
    return -math.log(math.exp(pos / TAU) / (math.exp(pos / TAU) + sum(math.exp(o / TAU) for o in others)))


def test_eq12_negatives_are_the_other_texts():
    # cos(e_1, e_2) = 0 is the only negative of each row.
    expected = (nll(1.0, [0.0]) + nll(R, [0.0])) / 2
    got = TextInterpretationLoss(TAU)(TEXT, INTERP)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_in_batch_interpretation_negatives_variant():
    # Row 1's negative is e_2⁺ (cos(e_1, e_2⁺) = 1/√2); row 2's is e_1⁺ (cos(e_2, e_1⁺) = 0).
    expected = (nll(1.0, [R]) + nll(R, [0.0])) / 2
    got = TextInterpretationLoss(TAU, negatives="interpretations")(TEXT, INTERP)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        TextInterpretationLoss(TAU, negatives="labels")


def test_eq13_dropout_pair():
    aug = torch.tensor([[1.0, 1.0], [0.0, 5.0]], dtype=torch.float64)  # e_1†, e_2†
    # Row 1: positive cos(e_1⁺, e_1†) = 1/√2, negative cos(e_1⁺, e_2†) = 0.
    # Row 2: positive cos(e_2⁺, e_2†) = 1/√2, negative cos(e_2⁺, e_1†) = 1.
    expected = (nll(R, [0.0]) + nll(R, [1.0])) / 2
    assert DropoutAugmentationLoss(TAU)(INTERP, aug).item() == pytest.approx(expected, rel=1e-5)


def test_eq15_dec_by_hand():
    emb = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    centroids = np.array([[0.0, 0.0], [2.0, 0.0]])
    kernel = np.array([[1 / (1 + np.sum((e - c) ** 2)) for c in centroids] for e in emb])  # α = 1
    q = kernel / kernel.sum(1, keepdims=True)
    f = q.sum(0)
    w = q**2 / f
    p = w / w.sum(1, keepdims=True)
    kl = np.mean([np.sum(p[i] * np.log(p[i] / q[i])) for i in range(len(emb))])
    dec = DECLoss(centroids)
    got = dec(torch.tensor(emb, dtype=torch.float32))
    assert got.item() == pytest.approx(kl, rel=1e-5)
    np.testing.assert_allclose(target_distribution(torch.tensor(q)).numpy(), p, rtol=1e-6)
    # p sharpens q: a point's largest assignment grows.
    assert (p.max(1) >= q.max(1) - 1e-12).all()
    got.backward()
    assert dec.centroids.grad is not None and dec.centroids.grad.abs().sum() > 0


def test_dec_target_uses_corpus_wide_cluster_frequencies():
    """Eq. 15's f_j sums over all N texts: given the corpus-wide f, a batch's target is the one
    computed from the whole corpus, not from the batch's own (noisy) column sums."""
    from coevo_ray.train_embedder.losses.dec_loss import cluster_frequency, student_t_assignments

    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(200, 4)).astype(np.float32)
    centroids = rng.normal(size=(8, 4)).astype(np.float32)
    f = cluster_frequency(corpus, centroids, chunk_rows=64)
    q_all = student_t_assignments(torch.tensor(corpus), torch.tensor(centroids))
    np.testing.assert_allclose(f, q_all.sum(0).numpy(), rtol=1e-5)
    batch = torch.tensor(corpus[:16])
    p_corpus = target_distribution(q_all)[:16]
    q = student_t_assignments(batch, torch.tensor(centroids))
    np.testing.assert_allclose(target_distribution(q, torch.tensor(f)).numpy(), p_corpus.numpy(), rtol=1e-5)
    assert not np.allclose(target_distribution(q).numpy(), p_corpus.numpy(), rtol=1e-3)
    kl = (p_corpus * (p_corpus.log() - q.log())).sum(1).mean()
    assert DECLoss(centroids, cluster_frequency=f)(batch).item() == pytest.approx(kl.item(), rel=1e-5)


class _ScaledEncoder(torch.nn.Module):
    """A model without a Normalize module: its embeddings have norm ``scale``."""

    def __init__(self, scale):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4, bias=False)
        self.scale = scale

    def forward(self, features):
        return {"sentence_embedding": self.scale * torch.nn.functional.normalize(self.proj(features["x"]), dim=-1)}


def test_dec_sees_normalised_embeddings_whatever_the_model_outputs():
    """The DEC centroids are fitted on the embed stage's unit vectors; an embedder that does not
    normalise must be compared with them in the same space."""
    torch.manual_seed(0)
    centroids = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1).numpy()
    texts, interps = {"x": torch.randn(5, 4)}, {"x": torch.randn(5, 4)}
    decs = []
    for scale in (1.0, 10.0):
        model = _ScaledEncoder(scale)
        model.proj.weight.data = torch.eye(4)
        loss = CoEvoEmbedderLoss(model, centroids, tau=TAU, dec_weight=1.0, dropout_pair=False)
        decs.append(loss(texts, interps)[3].item())
    assert decs[0] == pytest.approx(decs[1], rel=1e-5)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    return SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)


def test_combined_loss_reaches_the_model_and_the_centroids(minilm):
    texts = ["I lost my card", "how do I top up", "my transfer failed"]
    interps = ["Reasoning: lost card. Keywords: card, lost", "Reasoning: top up. Keywords: top-up",
               "Reasoning: failed transfer. Keywords: transfer, failed"]
    centroids = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32) * 0.05
    loss = CoEvoEmbedderLoss(minilm, centroids, tau=TAU, dec_weight=1.0)
    loss.train()
    total, cl, cl_dagger, dec = loss(minilm.preprocess(texts), minilm.preprocess(interps))
    assert total.item() == pytest.approx(((cl + cl_dagger) / 2 + dec).item(), rel=1e-6)
    assert cl_dagger.item() > 0  # two dropout passes differ, so the positive is not trivially 1
    total.backward()
    grads = {n: p.grad for n, p in loss.named_parameters()}
    assert grads["dec.centroids"].abs().sum() > 0
    layer = [g for n, g in grads.items() if "encoder.layer.0.attention" in n]
    assert layer and all(g is not None and g.abs().sum() > 0 for g in layer)
    # The trap DDP trips over: BERT's pooler is never used under mean pooling.
    assert all(g is None for n, g in grads.items() if "pooler" in n)
    minilm.zero_grad(set_to_none=True)
