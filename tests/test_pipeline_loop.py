"""The co-evolution loop with fake stages (``coevo_ray.testing``): which stage runs when, on what
inputs, and that finished stages are reused — in seconds, without Ray or a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from coevo_ray.config import CoEvolverConfig
from coevo_ray.data import load_corpus
from coevo_ray.pipeline import RunContext, run_coevolution
from coevo_ray.pipeline.embedding import TextsStage
from coevo_ray.pipeline.outputs import describe_clusters, write_outputs
from coevo_ray.tables import column_matrix, greedy_table, read_table
from coevo_ray.testing import DIM, FakeEmbed, FakeInterpret, FakeStage, fake_stages, topic_of

TOPICS = 4
TEXTS = [f"a request about topic{i % TOPICS} number {i}" for i in range(24)]
LABELS = [f"t{i % TOPICS}" for i in range(24)]


def _fit(tmp_path: Path, stages=None, **params):
    config = CoEvolverConfig(task="intent: user intent", output_dir=str(tmp_path / "run"),
                             **{"n_clusters": TOPICS, "iterations": 2, **params})
    FakeStage.calls.clear()
    ctx = RunContext.open(config, load_corpus(TEXTS, labels=LABELS), resume=True)
    stages = stages or fake_stages()
    result = run_coevolution(ctx, stages, tmp_path / "base-llm", tmp_path / "base-embedder")
    return ctx, stages, result


def test_stages_run_in_the_papers_order_on_each_others_outputs(tmp_path):
    ctx, _, result = _fit(tmp_path, representation="interpretation")  # the paper's final step
    order = list(ctx.timings)
    per_iteration = ["embed-interpretations", "train-embedder", "embed-candidates", "on-text"]
    assert order == ["iter0-interpret", *[f"iter0-{s}" for s in per_iteration],
                     "iter1-prefer", "iter1-dpo", "iter1-merged", "iter1-interpret",
                     *[f"iter1-{s}" for s in per_iteration],
                     "iter2-prefer", "iter2-dpo", "iter2-merged", "iter2-interpret", "iter2-embed-interpretations",
                     "iter2-train-embedder", "iter2-embed-interpretations-final", "iter2-on-text",
                     "cluster", "texts", "baseline-embed-texts"]
    calls = FakeStage.calls
    interprets = [inputs for name, inputs in calls if name == "interpret"]
    assert [len(i["temperatures"]) for i in interprets] == [4, 4, 1]  # the last LLM writes greedy answers only
    assert interprets[0]["llm"].adapter is None and interprets[0]["llm"].base == tmp_path / "base-llm"
    dpo = [inputs for name, inputs in calls if name == "dpo"]
    assert dpo[0]["llm"].adapter is None and dpo[1]["llm"].adapter.name.startswith("iter1-dpo-")
    assert interprets[2]["llm"].merged.name.startswith("iter2-merged-")  # served merged on CPU
    trains = [inputs for name, inputs in calls if name == "train-embedder"]
    assert trains[0]["emb_dir"] == tmp_path / "base-embedder"
    assert [t["emb_dir"].name.split("-")[0] for t in trains[1:]] == ["iter0", "iter1"]  # each continues the last
    prefers = [inputs for name, inputs in calls if name == "prefer"]
    assert prefers[1]["embedded"].name.startswith("iter1-embed-candidates-")
    assert prefers[1]["generated"].name.startswith("iter1-interpret-")

    assert [h["iteration"] for h in result.history] == [0, 1, 2]
    assert all(h["acc"] == 100.0 for h in result.history) and result.baseline["acc"] == 100.0
    assert result.history[1]["preferences"]["pairs"] == len(TEXTS) and result.history[1]["dpo"]["steps"] == 1
    assert result.llm.adapter.name.startswith("iter2-dpo-") and result.embedder_dir.name.startswith("iter2-train")
    assert result.interpretations[0].startswith("about topic0 (0, iter2-merged-")


def test_concat_clusters_each_iterations_interpretations_beside_its_texts(tmp_path):
    ctx, _, result = _fit(tmp_path, representation="concat")
    assert CoEvolverConfig(task="intent: user intent", n_clusters=TOPICS).representation == "auto"
    embeds = [(inputs["column"], inputs["emb_dir"].name) for name, inputs in FakeStage.calls if name == "embed"]
    text_embeds = [emb_dir.split("-")[0] for column, emb_dir in embeds if column == "text"]
    # Each iteration embeds the texts with the embedder it just trained; the baseline, untrained.
    assert text_embeds == ["iter0", "iter1", "iter2", "base"]
    assert [n for n in ctx.timings if n.endswith("-embed-texts")] == [f"iter{t}-embed-texts" for t in range(3)] + [
        "baseline-embed-texts"]
    dim = result.embeddings.shape[1] // 2
    interp = result.embeddings[:, :dim]
    text = result.embeddings[:, dim:]
    np.testing.assert_allclose(np.linalg.norm(interp, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)  # text_weight 1.0
    final = column_matrix(greedy_table(next((ctx.run.root / "stages").glob("iter2-embed-interpretations-final-*")),
                                       ["id", "embedding"]), "embedding")
    np.testing.assert_allclose(interp, final / np.linalg.norm(final, axis=1, keepdims=True), atol=1e-6)
    assert all(h["acc"] == 100.0 for h in result.history)


def test_a_rerun_reuses_every_stage_and_gives_the_same_labels(tmp_path):
    _, _, first = _fit(tmp_path)
    ctx, _, again = _fit(tmp_path)
    assert FakeStage.calls == [] and set(ctx.run.ran) == set()
    np.testing.assert_array_equal(again.labels, first.labels)


def test_a_changed_setting_reruns_only_what_depends_on_it(tmp_path):
    _fit(tmp_path)
    ctx, _, _ = _fit(tmp_path, train_embedder={"learning_rate": 1e-4})
    assert ctx.run.ran[0] == "iter0-train-embedder" and "iter0-interpret" in ctx.run.reused



def test_the_same_work_under_another_name_is_linked_not_redone(tmp_path):
    """With the embedder untrained, the baseline's embedding of the texts is iteration 0's."""
    ctx, _, result = _fit(tmp_path, iterations=0, train_embedder={"enabled": False}, representation="concat")
    assert [i["emb_dir"] for name, i in FakeStage.calls if name == "embed" and i["column"] == "text"] == [
        tmp_path / "base-embedder"]
    assert "baseline-embed-texts" in ctx.run.reused and "baseline-embed-texts" not in ctx.run.ran
    stages = ctx.run.root / "stages"
    first, linked = (next(stages.glob(f"{name}-*")) for name in ("iter0-embed-texts", "baseline-embed-texts"))
    assert [f.read_bytes() for f in sorted(first.iterdir())] == [f.read_bytes() for f in sorted(linked.iterdir())]
    assert json.loads((ctx.run.root / "manifest.json").read_text())["stages"][linked.name]["linked_from"] == first.name
    assert result.baseline["acc"] == 100.0


def test_the_texts_stage_is_redone_when_a_new_length_limit_cuts_a_text(tmp_path):
    _fit(tmp_path, iterations=0)
    ctx, _, _ = _fit(tmp_path, iterations=0, interpret={"max_text_chars": 2000})
    assert "texts" in ctx.run.reused  # no text is longer than either limit
    ctx, _, _ = _fit(tmp_path, iterations=0, interpret={"max_text_chars": 12})
    assert "texts" in ctx.run.ran
    cut = ctx.run.root / "stages" / f"texts-{TextsStage().key(ctx)}"
    assert {len(t) for t in read_table(cut).column("text").to_pylist()} == {12}

def test_without_pairs_the_llm_is_left_as_it_is(tmp_path):
    ctx, _, result = _fit(tmp_path, stages=fake_stages(pairs=False), iterations=1)
    assert not any(name.endswith("-dpo") for name in ctx.timings)
    assert result.llm.adapter is None and "dpo" not in result.history[1]


class OffTopicInterpret(FakeInterpret):
    """Answers in two groups that cut across the texts' four topics: four clusters of the
    interpretations split two groups where each seed likes, and the two halves of concat
    disagree; only the texts hold four clear groups."""

    def _write(self, ctx, out, llm, temperatures, step=""):
        rows = []
        for i, text in enumerate(ctx.model_texts()):
            topic = 10 + (i // 3) % 2
            for c, _ in enumerate(temperatures):
                answer = f"about topic{topic} ({c}, {Path(llm.engine_dirs[0]).name}), text {i}"
                rows.append({"id": i, "candidate": c, "text": text, "raw": answer, "interpretation": answer,
                             "keywords": [f"topic{topic}"], "fallback": "", "repaired": False, "finish_reason": "stop"})
        pq.write_table(pa.Table.from_pylist(rows), out / "part-0.parquet")


class NoTopicsEmbed(FakeEmbed):
    """Text vectors of noise (no topics) from the trained embedders (an iteration's stage
    directory) or, with ``blind_base``, from the embedder as loaded."""

    blind_base = False

    def _write(self, ctx, out, source, column, emb_dir, greedy_only=False):
        super()._write(ctx, out, source, column, emb_dir, greedy_only)
        if column == "text" and emb_dir.name.startswith("iter") != self.blind_base:
            table = pq.read_table(out / "part-0.parquet")
            noise = np.random.default_rng(len(table)).normal(0, 1, (len(table), DIM)).astype(np.float32)
            pq.write_table(table.set_column(table.column_names.index("embedding"), "embedding",
                                            pa.FixedSizeListArray.from_arrays(noise.reshape(-1), DIM)),
                           out / "part-0.parquet")


class DriftingEmbed(NoTopicsEmbed):
    """A trained embedder that lost the texts' topics."""


class BlindBaseEmbed(NoTopicsEmbed):
    """The embedder as loaded sees no topics in the texts; once trained it does."""

    blind_base = True


def test_auto_clusters_the_first_kind_as_stable_as_the_most_stable_and_says_why(tmp_path):
    """representation="auto": the KMeans partitions of each kind across the evaluation seeds; of
    the kinds whose partitions agree as much as the most stable kind's (within the noise), the
    first of raw-text, text, concat, interpretation is clustered, per iteration, and recorded."""
    off_topic = {**fake_stages(), "interpret": OffTopicInterpret("interpret", "interpret")}
    ctx, _, result = _fit(tmp_path, representation="auto", stages={**off_topic, "embed": BlindBaseEmbed("embed", "embed")})
    assert result.representation == "text" and result.embeddings.shape[1] == DIM  # the texts' vectors alone
    for h in result.history:
        choice = h["representation_choice"]
        stability = choice["stability_ari"]
        assert h["representation"] == "text" and set(stability) == {"concat", "text", "interpretation", "raw-text"}
        assert choice["most_stable"] == "text" and choice["as_stable"] == ["text"]
        assert stability["text"] > max(stability["concat"], stability["interpretation"], stability["raw-text"])
        assert h["acc"] == 100.0  # the texts' topics are the labels
    assert "iter2-choose-representation" in ctx.timings
    # Training changed nothing the seeds can tell: the texts tie the raw texts, which are kept.
    _, _, same = _fit(tmp_path / "same", representation="auto", stages=off_topic)
    assert same.representation == "raw-text" and same.history[-1]["representation_choice"]["as_stable"][:2] == [
        "raw-text", "text"]
    # An embedder whose training lost the topics: the raw texts, the baseline's clustering.
    _, _, fallen = _fit(tmp_path / "drift", representation="auto", stages={**off_topic, "embed": DriftingEmbed(
        "embed", "embed")})
    assert fallen.representation == "raw-text" and fallen.history[-1]["acc"] == 100.0
    assert fallen.baseline["agreement_ari"] == 100.0  # the same partition as the baseline's
    assert fallen.history[-1]["representation_choice"]["most_stable"] == "raw-text"
    # The configured kind is used as is, and recorded.
    _, _, fixed = _fit(tmp_path / "fixed", representation="interpretation")
    assert fixed.representation == "interpretation" and "representation_choice" not in fixed.history[-1]


def test_auto_needs_two_kmeans_seeds():
    import pytest

    from coevo_ray.errors import InputError

    with pytest.raises(InputError, match="representation='auto' \\(the default\\) compares KMeans partitions"):
        CoEvolverConfig(task="intent: user intent", n_clusters=TOPICS, cluster={"eval_seeds": (0,)})
    CoEvolverConfig(task="intent: user intent", n_clusters=TOPICS, representation="text", cluster={"eval_seeds": (0,)})


def test_auto_k_is_fixed_on_iteration_0s_interpretations(tmp_path):
    ctx, _, result = _fit(tmp_path, n_clusters="auto", iterations=0, cluster={"auto_k_max": 8})
    assert result.n_clusters == TOPICS and result.history[0]["auto_k"]["k"] == TOPICS
    assert "iter0-auto-k" in ctx.timings


def test_descriptions_and_outputs(tmp_path):
    ctx, stages, result = _fit(tmp_path, iterations=0)
    description = describe_clusters(ctx, stages, result)
    assert sorted(description.names) == [f"Cluster of topic{t}" for t in range(TOPICS)]
    write_outputs(ctx, result, description)
    rows = [json.loads(line) for line in (ctx.run.root / "assignments.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    assert all(r["cluster_name"] == f"Cluster of topic{i % TOPICS}" for i, r in enumerate(rows))


def test_the_estimator_takes_plug_in_stages(ray_session, tmp_path):
    """``CoEvolver(stages=...)`` runs the same loop; local model directories stand for the models."""
    from coevo_ray import CoEvolver

    for name in ("llm", "embedder"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    model = CoEvolver(task="intent: user intent", n_clusters=TOPICS, iterations=1, llm=str(tmp_path / "llm"),
                      embedder=str(tmp_path / "embedder"), output_dir=str(tmp_path / "run"), representation="concat",
                      stages=fake_stages())
    labels = model.fit(TEXTS, LABELS).labels_
    assert model.history_[-1]["acc"] == 100.0 and len(set(labels)) == TOPICS
    assert (model.run_dir_ / "summary.json").exists() and model.cluster_names_[labels[0]] == "Cluster of topic0"
    assert model.representation_ == "concat"
    # representation="auto": what the fit chose is what predict assigns in, and what save/load keep.
    auto = CoEvolver(task="intent: user intent", n_clusters=TOPICS, iterations=1, llm=str(tmp_path / "llm"),
                     embedder=str(tmp_path / "embedder"), output_dir=str(tmp_path / "auto"), representation="auto",
                     stages={**fake_stages(), "interpret": OffTopicInterpret("interpret", "interpret"),
                             "embed": BlindBaseEmbed("embed", "embed")}).fit(TEXTS, LABELS)
    assert auto.representation_ == "text" and auto.config.representation == "auto"
    assert json.loads((auto.run_dir_ / "summary.json").read_text())["representation"] == "text"
    assert auto.predict(TEXTS).tolist() == auto.labels_.tolist()  # in another kind's space it would not run
    assert CoEvolver.load(auto.save(tmp_path / "saved")).representation_ == "text"
