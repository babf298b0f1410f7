import json
import logging
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coevo_ray.data import load_corpus
from coevo_ray.errors import InputError


def test_jsonl_with_labels(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "hello there", "label": "x"}\n\n{"text": "bye now", "label": "y"}\n')
    c = load_corpus(f, label_field="label")
    assert c.texts == ["hello there", "bye now"] and c.labels == ["x", "y"] and c.ids == [0, 1]


def test_csv_parquet_txt_and_sequence(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"a, with comma",p\nsecond,q\n')
    assert load_corpus(tmp_path / "a.csv", label_field="label").texts == ["a, with comma", "second"]
    pq.write_table(pa.table({"body": ["one", "two"], "y": ["a", "b"]}), tmp_path / "a.parquet")
    c = load_corpus(tmp_path / "a.parquet", text_field="body", label_field="y")
    assert c.texts == ["one", "two"] and c.labels == ["a", "b"]
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    assert load_corpus(tmp_path / "a.txt").texts == ["first line", "second line"]
    assert load_corpus(["p", "q"], labels=[1, 2]).labels == ["1", "2"]


def test_ray_dataset_has_stable_ids(ray_session):
    c = load_corpus(["b", "a", "c"])
    rows = sorted(c.to_ray_dataset().take_all(), key=lambda r: r["id"])
    assert [(r["id"], r["text"]) for r in rows] == [(0, "b"), (1, "a"), (2, "c")]


def test_empty_corpus():
    with pytest.raises(InputError, match="empty corpus"):
        load_corpus([])


def test_one_text():
    with pytest.raises(InputError, match="at least 2"):
        load_corpus(["only one"])


@pytest.mark.parametrize("bad,shown", [(None, "None"), (3, "int"), (b"bytes", "bytes"), (math.nan, "NaN"), (2.5, "float")])
def test_non_string_text(bad, shown):
    with pytest.raises(InputError, match=rf"not strings: row 1: {shown}"):
        load_corpus(["fine", bad, "also fine"])


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_empty_and_whitespace_texts(blank):
    with pytest.raises(InputError, match="empty or whitespace only: row 2"):
        load_corpus(["a", "b", blank])


def test_long_text_is_kept_and_truncated_for_models(caplog):
    big = "word " * 200_000  # 1 MB
    with caplog.at_level(logging.WARNING):
        c = load_corpus(["short", big])
    assert "truncated" in caplog.text and c.stats["truncated"] == 1
    assert len(c.texts[1]) == len(big) and len(c.model_texts()[1]) == 2000


def test_duplicates_are_kept_and_counted(caplog):
    with caplog.at_level(logging.WARNING):
        c = load_corpus(["a", "a", "b"])
    assert len(c) == 3 and c.stats["duplicates"] == 1 and "duplicate" in caplog.text


def test_all_identical():
    with pytest.raises(InputError, match="identical"):
        load_corpus(["same"] * 5)


def test_labels_wrong_length():
    with pytest.raises(InputError, match="wrong length: 1 labels for 2 texts"):
        load_corpus(["a", "b"], labels=["x"])


def test_non_utf8_file(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not UTF-8: undecodable byte on line 2"):
        load_corpus(f)


def test_malformed_jsonl_line_number(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    with pytest.raises(InputError, match="malformed JSON on line 3"):
        load_corpus(f)


def test_missing_text_field(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"body": "b"}) + "\n")
    with pytest.raises(InputError, match="line 2 .* no text field 'text'"):
        load_corpus(f)
    with pytest.raises(InputError, match="no column 'text'"):
        (tmp_path / "b.csv").write_text("body\nx\n")
        load_corpus(tmp_path / "b.csv")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_corpus(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="directory"):
        load_corpus(tmp_path)
    f = tmp_path / "x.xlsx"
    f.write_text("x")
    with pytest.raises(InputError, match="unsupported input format"):
        load_corpus(f)
    p = tmp_path / "broken.parquet"
    p.write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read Parquet"):
        load_corpus(p)


def test_corpus_sample_is_seeded_and_keeps_labels_aligned():
    corpus = load_corpus([f"text {i}" for i in range(50)], labels=[f"l{i}" for i in range(50)])
    a, b = corpus.sample(10, seed=1), corpus.sample(10, seed=1)
    assert a.texts == b.texts and len(a) == 10 and a.texts != corpus.sample(10, seed=2).texts
    assert all(t.split()[1] == y[1:] for t, y in zip(a.texts, a.labels))
    assert corpus.sample(500) is corpus
    with pytest.raises(InputError, match="sample size"):
        corpus.sample(0)


def test_paper_presets_apply_the_topic_sets_dec_weight():
    """Appendix A.1: λ = 10 on ArxivS2S, Reddit and StackEx, 1 elsewhere; merged into a profile."""
    from coevo_ray import CoEvolver
    from coevo_ray.data import paper_preset
    from coevo_ray.errors import InputError
    from coevo_ray.profiles import profile_settings

    quick = profile_settings("quick")
    for name, weight in (("reddit", 10.0), ("arxiv_s2s", 10.0), ("stackexchange", 10.0), ("bank77", 1.0)):
        model = CoEvolver(n_clusters=5, **paper_preset(name, quick))
        assert model.config.train_embedder.dec_weight == weight
        assert model.config.train_embedder.learning_rate == quick["train_embedder"]["learning_rate"]
    assert paper_preset("reddit")["task"] == "topic: post topic"
    assert "dec_weight" not in quick["train_embedder"]  # the profile itself is not changed
    with pytest.raises(InputError, match="not one of the paper's datasets"):
        paper_preset("my_corpus")


def test_the_quick_profile_picks_the_embedder_rate_by_the_embedders_size(minilm_dir):
    """``learning_rate=None`` (the quick profile's) becomes the rate for the embedder's size when a
    fit starts, read from its weights' headers; an explicit rate and the paper's stay as given."""
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.profiles import LARGE_EMBEDDER_LR, LARGE_EMBEDDER_PARAMS, SMALL_EMBEDDER_LR
    from coevo_ray.train_embedder import EmbedderTrainConfig

    def config(**params):
        return CoEvolverConfig.from_params(task="intent: request", n_clusters=5, embedder=str(minilm_dir), **params)

    quick = config(profile="quick")
    assert quick.train_embedder.learning_rate is None
    assert quick.for_models().train_embedder.learning_rate == SMALL_EMBEDDER_LR  # MiniLM: 22.7M parameters
    assert config(profile="quick", train_embedder={"learning_rate": 3e-6}).for_models().train_embedder.learning_rate == 3e-6
    assert config(profile="paper").for_models().train_embedder.learning_rate == 3e-7
    assert config(profile="quick", train_embedder={"enabled": False}).for_models().train_embedder.learning_rate is None
    large = EmbedderTrainConfig(learning_rate=None).for_embedder(LARGE_EMBEDDER_PARAMS)
    assert large.learning_rate == LARGE_EMBEDDER_LR < SMALL_EMBEDDER_LR
    assert EmbedderTrainConfig(learning_rate=None).for_embedder(0).learning_rate == SMALL_EMBEDDER_LR  # not known


def _slow_on_even_blocks(batch):
    import time

    if int(batch["id"][0]) % 20 == 0:  # every other block of 10 rows finishes late
        time.sleep(0.3)
    return batch


def test_in_input_order_keeps_block_order_whatever_finishes_first(ray_session):
    """Blocks whose tasks finish late come back in their input place (what numbers a Dataset's
    rows and fixes which rows share a generation or embedding batch), and the context of the
    dataset it came from is left as it was."""
    from coevo_ray.runtime import in_input_order

    source = ray_session.data.from_items([{"id": i} for i in range(200)], override_num_blocks=20)
    slow = source.map_batches(_slow_on_even_blocks, batch_size=None)
    ordered = [r["id"] for r in in_input_order(slow).iter_rows()]
    assert ordered == list(range(200))
    assert not source.context.execution_options.preserve_order
