"""Corpora read by Ray Data and clustered at scale: path, glob, directory and Dataset inputs give
the list input's labels; the KMeans sample is seeded by row id; bad rows are named by file and
line from inside Ray tasks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coevo_ray.errors import InputError
from coevo_ray.testing import read_jsonl

N_TEXTS, K = 240, 8


@pytest.fixture(scope="module")
def bank77():
    texts, labels = read_jsonl("bank77.jsonl")  # skips, like every data test, where the datasets are absent
    return texts[:N_TEXTS], labels[:N_TEXTS]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, bank77):
    """The texts as three JSONL shards (100 + 100 + 40 rows) plus a file a directory read skips."""
    root = tmp_path_factory.mktemp("shards")
    texts, labels = bank77
    for i, start in enumerate(range(0, N_TEXTS, 100)):
        with (root / f"part-{i}.jsonl").open("w") as fh:
            for t, y in zip(texts[start:start + 100], labels[start:start + 100]):
                fh.write(json.dumps({"text": t, "label": y}) + "\n\n")  # blank lines are skipped
    (root / "_SUCCESS").write_text("")
    return root


def test_path_and_dataset_inputs_give_the_list_labels(ray_session, bank77, shards, tmp_path, monkeypatch):
    """240 texts are embedded and their centres fitted in the driver (a small input on this
    one-node cluster), whatever the input kind; the Dataset input goes through the Ray Data actor
    pool and the Ray task instead, as a large input would: the same labels either way."""
    import io

    from coevo_ray import EmbeddingKMeans
    from coevo_ray.cli import parse_args, run
    from coevo_ray.config import EmbedConfig

    texts, labels = bank77
    model = EmbeddingKMeans(n_clusters=K, sample_size=N_TEXTS)
    listed = model.fit(texts, labels).labels_
    assert len(set(listed)) == K and model.n_fit_rows_ == N_TEXTS

    def assigned(source, run, **kw):
        m = EmbeddingKMeans(n_clusters=K, sample_size=N_TEXTS, output_dir=str(tmp_path / run)).fit(source, **kw)
        assert not hasattr(m, "labels_")  # only in-memory inputs get labels_ (a path can outgrow the driver)
        table = pq.read_table(m.assignments_dir_).sort_by("id")
        assert table.column("id").to_pylist() == list(range(N_TEXTS))
        assert table.column("text").to_pylist() == texts
        return m, table

    # The directory through the CLI's `--method kmeans`, then through the API in the same run
    # directory: the same files again, so the CLI's embeddings are reused.
    printed = io.StringIO()
    cli = ["--method", "kmeans", "--input", str(shards), "--label-field", "label", "--k", str(K),
           "--kmeans-sample", str(N_TEXTS), "--output-dir", str(tmp_path / "dir")]
    assert run(parse_args(cli), printed) == 0, printed.getvalue()
    assert f"{N_TEXTS} texts -> {K} clusters (centres fitted on {N_TEXTS} rows)" in printed.getvalue()
    from_dir, table = assigned(str(shards), "dir", label_field="label")
    assert from_dir.timings_["embed"] == 0.0
    assert table.column("cluster").to_pylist() == listed.tolist()
    assert table.column("label").to_pylist() == labels and "distance" in table.column_names
    dataset = ray_session.data.from_items([{"body": t} for t in texts])
    with monkeypatch.context() as patch:
        patch.setattr(EmbedConfig, "in_process_max_rows", 0)  # as if the input were large
        assert assigned(dataset, "ds", text_field="body")[1].column("cluster").to_pylist() == listed.tolist()
    assert (model.predict(texts) == listed).all()
    streamed = model.predict(str(shards)).take_all()  # a path predicts as a lazy Dataset
    assert sorted((r["id"], r["cluster"]) for r in streamed) == list(enumerate(listed.tolist()))


def test_embedding_kmeans_describes_its_clusters_and_saves(ray_session, bank77, tmp_path, smollm2_dir):
    """Names (here the LLM's), c-TF-IDF keywords, the tables, the report; save → load → predict
    gives the fitted labels; transform's argmin is predict."""
    from coevo_ray import EmbeddingKMeans
    from coevo_ray.errors import InputError as Refused

    texts, labels = bank77
    model = EmbeddingKMeans(n_clusters=K, sample_size=N_TEXTS, llm=str(smollm2_dir), task="intent: banking request",
                            output_dir=str(tmp_path / "run")).fit(texts, labels)
    info = model.get_cluster_info()
    assert sorted(info["cluster"]) == list(range(K)) and info["size"].sum() == N_TEXTS
    assert all(name.strip() for name in info["name"]) and all(info["keywords"]) and all(info["representative_texts"])
    assert info.set_index("cluster").sort_index()["size"].tolist() == np.bincount(model.labels_, minlength=K).tolist()
    docs = model.get_document_info()
    assert docs["text"].tolist() == texts and (docs["cluster"].to_numpy() == model.labels_).all()
    assert (model.run_dir_ / "report.html").is_file() and (model.run_dir_ / "summary.json").is_file()
    summary = json.loads((model.run_dir_ / "summary.json").read_text())
    assert [c["name"] for c in summary["clusters"]] == model.cluster_names_
    loaded = EmbeddingKMeans.load(model.save(tmp_path / "model"))
    assert loaded.cluster_names_ == model.cluster_names_ and loaded.get_cluster_info().equals(info)
    np.testing.assert_array_equal(loaded.predict(texts), model.labels_)
    np.testing.assert_array_equal(loaded.transform(texts[:40]).argmin(axis=1), model.labels_[:40])
    from coevo_ray import CoEvolver

    with pytest.raises(Refused, match="holds a saved EmbeddingKMeans"):
        CoEvolver.load(tmp_path / "model")


def test_globs_uris_and_dataset_ids_read_in_input_order(ray_session, bank77, shards):
    from coevo_ray.data.dataset import read_corpus_dataset

    texts, _ = bank77

    def rows(source):
        return [(r["id"], r["text"]) for r in sorted(read_corpus_dataset(source).dataset.take_all(),
                                                      key=lambda r: r["id"])]

    expected = list(enumerate(texts))
    assert rows(str(shards / "part-*.jsonl")) == expected and rows(f"file://{shards}") == expected
    shuffled = np.random.default_rng(0).permutation(N_TEXTS)  # a Dataset's own ids are kept
    assert rows(ray_session.data.from_items([{"id": int(i), "text": texts[i]} for i in shuffled])) == expected


def test_coevolver_takes_a_dataset_and_a_directory(ray_session, tmp_path):
    """The co-evolution loop gathers a Ray Data input in id order: the list input's labels."""
    from coevo_ray import CoEvolver
    from coevo_ray.testing import fake_stages

    texts = [f"request {i} about topic{(i * 5) % K}" for i in range(64)]
    labels = [f"t{(i * 5) % K}" for i in range(64)]
    (tmp_path / "in").mkdir()
    for part in (0, 1):
        rows = range(part * 40, min(64, part * 40 + 40))
        (tmp_path / "in" / f"{part}.jsonl").write_text("".join(
            json.dumps({"text": texts[i], "label": labels[i]}) + "\n" for i in rows))
    for name in ("llm", "embedder"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    params = dict(task="intent: user intent", n_clusters=K, iterations=0, llm=str(tmp_path / "llm"),
                  embedder=str(tmp_path / "embedder"), stages=fake_stages())
    from sklearn.metrics import adjusted_rand_score

    listed = CoEvolver(**params).fit(texts, labels).labels_  # fake vectors are salted per run: compare partitions
    from_dir = CoEvolver(**params).fit(str(tmp_path / "in"), "label")
    assert adjusted_rand_score(from_dir.labels_, listed) == 1.0 and from_dir.history_[-1]["acc"] == 100.0
    from_ds = CoEvolver(**params).fit(ray_session.data.from_items([{"text": t} for t in texts]))
    assert adjusted_rand_score(from_ds.labels_, listed) == 1.0 and "acc" not in from_ds.history_[-1]
    with pytest.raises(InputError, match="name the label column"):
        CoEvolver(**params).fit(str(tmp_path / "in"), labels)


def test_the_kmeans_sample_is_seeded_by_row_id_not_by_blocks(ray_session):
    from coevo_ray.clustering import fit_on_sample, in_sample

    ids = np.arange(20_000)
    picked = in_sample(ids, 0.25, seed=3)
    assert 0.23 < picked.mean() < 0.27 and (in_sample(ids[::-1], 0.25, 3) == picked[::-1]).all()
    assert (in_sample(ids, 0.25, 4) != picked).mean() > 0.2 and in_sample(ids, 1.0, 3).all()
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(4, 16))[rng.integers(0, 4, 2000)] + 0.1 * rng.normal(size=(2000, 16))).astype(np.float32)
    rows = [{"id": i, "embedding": v} for i, v in enumerate(vectors)]
    one = fit_on_sample(ray_session.data.from_items(rows, override_num_blocks=1), "embedding", 4, 2000, 500, seed=1)
    many = fit_on_sample(ray_session.data.from_items(rows[::-1], override_num_blocks=7), "embedding", 4, 2000, 500,
                         seed=1)
    assert one[1] == many[1] and 400 < one[1] < 600
    np.testing.assert_allclose(one[0], many[0], atol=1e-5)
    with pytest.raises(InputError, match="exceeds the .* rows of the KMeans sample"):
        fit_on_sample(ray_session.data.from_items(rows), "embedding", 50, 2000, 10, seed=1)


def test_bad_rows_are_named_by_file_and_line_from_inside_ray(ray_session, tmp_path):
    from coevo_ray.data.dataset import read_corpus_dataset

    (tmp_path / "a.jsonl").write_text('{"text": "fine one"}\n{"text": "fine two"}\n')
    (tmp_path / "b.jsonl").write_text('{"text": "fine three"}\n\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"^malformed JSON on line 3 of .*b\.jsonl"):
        read_corpus_dataset(str(tmp_path))
    (tmp_path / "b.jsonl").write_text('{"text": "fine three"}\n{"text": 7}\n{"text": "  "}\n')
    with pytest.raises(InputError, match=r"^1 texts are not strings: line 2 of b\.jsonl: int 7"):
        read_corpus_dataset(str(tmp_path / "*.jsonl"))
    (tmp_path / "b.jsonl").write_text('{"text": "fine three"}\n{"text": "fine one"}\n')
    (tmp_path / "c.csv").write_text("text\nx\n")
    with pytest.raises(InputError, match="mixes input formats"):
        read_corpus_dataset(str(tmp_path))
    (tmp_path / "c.csv").unlink()
    stats = read_corpus_dataset(str(tmp_path)).stats
    assert stats == {"n_texts": 4, "truncated": 0, "duplicates": 1, "distinct": 3}
    with pytest.raises(InputError, match="no label field 'label'"):
        read_corpus_dataset(str(tmp_path), label_field="label")
    with pytest.raises(InputError, match="no input files in pattern"):
        read_corpus_dataset(str(tmp_path / "*.parquet"))
    with pytest.raises(InputError, match="input not found"):
        read_corpus_dataset(str(tmp_path / "missing"))
    data = ray_session.data
    with pytest.raises(InputError, match=r"^1 texts are empty or whitespace only: row id 1 of the Dataset"):
        read_corpus_dataset(data.from_items([{"text": "a"}, {"text": " "}, {"text": "b"}]))
    with pytest.raises(InputError, match="duplicate values"):
        read_corpus_dataset(data.from_items([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}]))
    with pytest.raises(InputError, match="identical"):
        read_corpus_dataset(data.from_items([{"text": "same"}] * 3))
    with pytest.raises(InputError, match="no text column 'body'"):
        read_corpus_dataset(data.from_items([{"text": "a"}]), text_field="body")
    pq.write_table(pa.table({"text": ["p", "q" * 30]}), tmp_path / "only.parquet")
    long = read_corpus_dataset(str(tmp_path / "only.parquet"), max_chars=10)
    assert long.stats["truncated"] == 1 and [r["text"] for r in long.dataset.take_all()] == ["p", "q" * 10]


def test_the_cli_kmeans_method_needs_a_number_of_clusters(tmp_path):
    import io

    from coevo_ray.cli import parse_args, run

    out = io.StringIO()
    args = parse_args(["--method", "kmeans", "--input", str(tmp_path), "--k", "auto", "--output-dir", str(tmp_path)])
    assert run(args, out) == 2 and out.getvalue() == "error: --method kmeans needs --k (a number of clusters)\n"


def test_embedding_kmeans_checks_its_parameters_before_any_work():
    from coevo_ray import EmbeddingKMeans
    from coevo_ray.errors import NotFittedError

    with pytest.raises(InputError, match="n_clusters must be an integer >= 2"):
        EmbeddingKMeans(n_clusters=1).fit(["a", "b"])
    with pytest.raises(InputError, match=r"sample_size must be an integer >= n_clusters \(8\)"):
        EmbeddingKMeans(n_clusters=8, sample_size=4).fit(["a", "b"])
    with pytest.raises(NotFittedError):
        EmbeddingKMeans(n_clusters=8).predict(["a"])
    assert EmbeddingKMeans(n_clusters=np.int64(8)).get_params()["n_clusters"] == 8
