"""Embedder training with L_E on 2 Ray Train CPU workers (DDP over gloo)."""

import json
from dataclasses import replace

import numpy as np

from coevo_ray.clustering import FaissKMeans
from coevo_ray.embed import encode, load_encoder
from coevo_ray.train_embedder import EmbedderTrainConfig, train_embedder
from coevo_ray.testing import checkpoint_dirs, kill_a_train_worker_after_checkpoints, read_jsonl


def test_embedder_trains_on_two_workers(ray_session, minilm_dir, tmp_path, no_leftovers):
    import ray

    texts, labels = read_jsonl("bank77.jsonl", n=48, seed=3)
    interps = [f"Reasoning: the customer writes about {y.replace('_', ' ')}.\nKeywords: {y}" for y in labels]
    base = load_encoder(str(minilm_dir), device="cpu")
    base_emb = encode(base, interps)
    centroids = FaissKMeans(4, seed=0).fit(base_emb).cluster_centers_
    ds = ray.data.from_items([{"id": i, "text": t, "interpretation": p} for i, (t, p) in enumerate(zip(texts, interps))])
    cfg = EmbedderTrainConfig(learning_rate=1e-4, batch_size=8, max_steps=3, num_workers=2)
    out, metrics = train_embedder(minilm_dir, ds, tmp_path / "embedder", cfg, centroids=centroids,
                                  storage_path=str(tmp_path / "ray"))
    print("\nembedder metrics:", json.dumps(metrics, indent=1))
    digests = metrics["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], "DDP ranks ended with different embedders"
    assert digests[0] != metrics["initial_digest"], "training did not change the embedder"
    assert metrics["steps"] == 3 and metrics["world_size"] == 2
    assert not checkpoint_dirs(tmp_path / "ray")  # exported, so removed from Ray Train's storage
    assert any("pooler" in name for name in metrics["frozen"])
    for key in ("mean_loss", "mean_loss_cl", "mean_loss_cl_dropout", "mean_loss_dec"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0
    # The saved directory is a sentence-transformers model the embedding actors can load.
    trained = encode(load_encoder(str(out), device="cpu"), interps)
    assert trained.shape == base_emb.shape
    assert not np.allclose(trained, base_emb, atol=1e-4)
    # The same rows in another order (as a Parquet stage read back gives them), and with gradient
    # checkpointing (activations recomputed, dropout masks replayed): the same embedder, bit for bit.
    shuffled = ray.data.from_items([{"id": i, "text": texts[i], "interpretation": interps[i]}
                                    for i in reversed(range(len(texts)))], override_num_blocks=3)
    _, again = train_embedder(minilm_dir, shuffled, tmp_path / "embedder-again",
                              replace(cfg, gradient_checkpointing=True), centroids=centroids,
                              storage_path=str(tmp_path / "ray"))
    assert again["rank_digests"] == digests


def test_killed_train_worker_resumes_from_its_checkpoint(ray_session, minilm_dir, tmp_path, no_leftovers):
    """SIGKILL a Ray Train worker after a periodic checkpoint: Ray Train restarts the group
    (FailureConfig), the loop resumes from the checkpoint (not from step 0) and finishes. (Not
    compared bit for bit with an uninterrupted run: two clean CPU runs already differ in the last
    bits — mean loss 0.099972 vs 0.099958 — from threaded float reductions.)"""
    import ray

    texts, labels = read_jsonl("bank77.jsonl", n=96, seed=9)
    ds = ray.data.from_items([{"id": i, "text": t, "interpretation": f"Keywords: {y}"}
                              for i, (t, y) in enumerate(zip(texts, labels))])
    cfg = EmbedderTrainConfig(learning_rate=1e-4, batch_size=4, epochs=2, num_workers=2, checkpoint_every=4,
                              dec_weight=0.0)  # 2 epochs x 12 steps
    storage = tmp_path / "ray"
    killer, killed = kill_a_train_worker_after_checkpoints(storage)
    _, metrics = train_embedder(minilm_dir, ds, tmp_path / "killed", cfg, storage_path=str(storage))
    killer.join(timeout=5)
    assert "pid" in killed, "no Ray Train worker was killed"
    assert {"train_state.json", "train_state.safetensors"} <= killed["files"]
    assert metrics["steps"] == 24 and metrics["resumed_from_step"] >= 4, metrics
    digests = metrics["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] != metrics["initial_digest"]
    assert np.isfinite(metrics["mean_loss"]) and metrics["mean_loss"] > 0
