"""The whole loop, end to end, on a small real sample and one co-evolution iteration: vLLM actors,
density-guided preferences, DPO on Ray Train, merged weights served to the next generation,
embedder training, KMeans, the baseline. Iteration t >= 2 adds no new kind of stage: that it
trains on from iteration t-1's adapter is checked in test_train_llm.py (the ZeRO-2 test starts
from a saved adapter), and that its engine serves iteration t's merge in test_pipeline_loop.py."""

import json

import numpy as np
import pytest

from coevo_ray import CoEvolver
from coevo_ray.testing import read_jsonl

TASK = "intent: user intent"
QUICK = dict(
    iterations=1,
    # Answers sized to 32 tokens: with the full shape nearly every answer is cut, and cut answers
    # never form preference pairs.
    interpret={"temperatures": (0.0, 1.0), "max_tokens": 32, "sized_answers": True},
    prefer={"n_runs": 5, "max_pairs": 24},
    # lr above the paper's 1e-5 so that 3 steps visibly move the LLM's greedy outputs.
    train_llm={"max_steps": 3, "per_device_batch_size": 2, "learning_rate": 1e-3, "max_length": 384},
    train_embedder={"max_steps": 2, "batch_size": 8, "learning_rate": 1e-5},  # 40 texts, 2 workers: 2 steps
    cluster={"name_clusters": False},  # naming is covered in test_product.py
    # Named, not "auto": predict must go through the DPO-trained LLM whatever auto would choose.
    representation="concat",
)
# concat embeds the texts with each iteration's embedder.
STAGES = ["baseline-embed-texts", "iter0-embed-candidates", "iter0-embed-interpretations", "iter0-embed-texts",
          "iter0-interpret", "iter0-on-text", "iter0-train-embedder", "iter1-dpo", "iter1-embed-interpretations",
          "iter1-embed-interpretations-final", "iter1-embed-texts", "iter1-interpret", "iter1-merged", "iter1-on-text",
          "iter1-prefer", "iter1-train-embedder", "texts"]


@pytest.fixture(scope="module")
def fitted(ray_session, tmp_path_factory):
    texts, labels = read_jsonl("bank77.jsonl", n=40, seed=2)
    out = tmp_path_factory.mktemp("loop")
    model = CoEvolver(task=TASK, n_clusters=len(set(labels)), output_dir=str(out), **QUICK).fit(texts, labels)
    return model, texts, labels, out


def test_every_stage_ran_and_history_has_every_iteration(fitted):
    model, texts, _, out = fitted
    print("\nhistory:", json.dumps(model.history_, indent=1))
    assert sorted(p.name.rsplit("-", 1)[0] for p in (out / "stages").iterdir()) == STAGES
    assert [h["iteration"] for h in model.history_] == [0, 1]
    for h in model.history_:
        assert {"acc", "nmi", "ari", "parse_fallbacks", "embedder", "timings_s", "on_text"} <= set(h)
        assert h["embedder"]["steps"] == 2 and np.isfinite(h["embedder"]["mean_loss"])
    it1 = model.history_[1]
    assert it1["preferences"]["pairs"] > 0 and it1["dpo"]["steps"] == 3
    assert {"rewards/margins", "rewards/accuracies", "loss"} <= set(it1["dpo"])
    assert {"prefer", "dpo", "merged", "interpret", "train-embedder"} <= set(it1["timings_s"])
    assert len(model.labels_) == len(texts) and model.embeddings_.shape[0] == len(texts)
    assert (model.adapter_dir_ / "adapter_model.safetensors").exists()
    assert (model.embedder_dir_ / "config_sentence_transformers.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [h["iteration"] for h in summary["history"]] == [0, 1]
    assert summary["baseline"]["acc"] > 0 and "agreement_ari" in summary["baseline"]


def test_each_iteration_generates_with_its_trained_llm(fitted):
    model, _, _, out = fitted
    import pyarrow.parquet as pq

    def greedy(stage):
        [path] = (out / "stages").glob(f"{stage}-*")
        table = pq.read_table(path).to_pandas()
        return table[table.candidate == 0].sort_values("id").raw.tolist()

    before, after = greedy("iter0-interpret"), greedy("iter1-interpret")
    changed = sum(a != b for a, b in zip(before, after))
    print(f"\niteration 1: {changed}/{len(after)} greedy interpretations changed after DPO")
    assert changed > 0
    [merged] = (out / "stages").glob("iter1-merged-*")
    assert model.llm_.merged.resolve() == merged.resolve() and model.adapter_dir_.name.startswith("iter1-dpo")
    assert model.interpretations_ == [r for r in pq.read_table(
        next((out / "stages").glob("iter1-interpret-*"))).to_pandas().query("candidate == 0").sort_values("id").interpretation]


def test_rerun_reuses_every_stage_and_gives_identical_labels(fitted):
    model, texts, labels, out = fitted
    again = CoEvolver(task=TASK, n_clusters=model.config.n_clusters, output_dir=str(out), **QUICK).fit(texts, labels)
    reran = {k: v for k, v in again.timings_.items() if k != "cluster" and v > 0}
    assert reran == {}, f"stages recomputed on rerun: {reran}"
    np.testing.assert_array_equal(again.labels_, model.labels_)


def test_saved_model_with_dpo_adapter_predicts_the_fitted_labels(fitted, tmp_path):
    """save → load → predict with an LLM that DPO changed: the adapter travels as safetensors, is
    merged again on load for CPU serving, and the greedy interpretations of the training texts
    land in the clusters ``fit`` gave them. All of them: predict then sends the engine and the
    embedder the batches of fit's last iteration; a subset would batch them otherwise, and
    batched float rounding may change an answer (docs/faq.md)."""
    model, texts, _, _ = fitted
    saved = model.save(tmp_path / "model")
    adapter_files = {p.name for p in (saved / "llm_adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter_files
    loaded = CoEvolver.load(saved)
    assert loaded.adapter_dir_ is not None
    pred = loaded.predict(texts, output_dir=str(tmp_path / "predict"))
    np.testing.assert_array_equal(pred, model.labels_)
