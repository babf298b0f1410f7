"""A fit on a sample, then the streaming pass over the whole corpus (``CoEvolver(sample_size=...)``):
every row assigned once, the sample's rows as the list fit assigns them, a driver killed during
the pass resumed to the same shards, and ``predict`` on a path as a lazy Dataset."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from coevo_ray.testing import read_jsonl

REPO = Path(__file__).resolve().parents[1]
TASK = "utterance scenario: life scenario"
N, SAMPLE, UNIT = 36, 20, 18  # two units: the kill test stops the driver in the second
COLUMNS = ["id", "text", "cluster", "cluster_name", "distance", "interpretation"]


def _settings(sample_size: int | None = SAMPLE) -> dict:
    """The quick profile with one greedy generation and no embedder training: the pass, not the loop, is tested."""
    from coevo_ray.profiles import profile_settings

    settings = profile_settings("quick")
    settings["interpret"] = {**settings["interpret"], "max_tokens": 24}
    # concat, named: with the embedder untrained "auto" would choose the raw texts, and the pass
    # would not run the LLM.
    settings.update(iterations=0, train_embedder={"enabled": False}, cluster={"baseline": False, "name_clusters": False},
                    representation="concat")
    if sample_size is not None:
        settings.update(sample_size=sample_size, stream_unit_rows=UNIT)
    return settings


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """36 labelled texts in two JSON Lines files of a directory (a scale input: never gathered)."""
    texts, labels = read_jsonl("clinc_domain.jsonl", n=N, seed=5)
    folder = tmp_path_factory.mktemp("corpus")
    for part, rows in enumerate((range(0, 18), range(18, N))):
        (folder / f"part-{part}.jsonl").write_text("".join(json.dumps({"text": texts[i], "label": labels[i]}) + "\n"
                                                           for i in rows))
    return texts, labels, folder


@pytest.fixture(scope="module")
def streamed(ray_session, data, tmp_path_factory):
    from coevo_ray import CoEvolver

    _, labels, folder = data
    out = tmp_path_factory.mktemp("stream") / "run"
    return CoEvolver(task=TASK, n_clusters=len(set(labels)), output_dir=str(out), **_settings()).fit(
        str(folder), label_field="label")


def _table(model):
    import pyarrow as pa
    import ray

    return pa.concat_tables(ray.get(model.assignments().to_arrow_refs())).sort_by("id")


def test_every_row_is_assigned_once_and_the_sample_as_the_list_fit_assigns_it(streamed, data, tmp_path):
    from coevo_ray import CoEvolver

    texts, labels, _ = data
    table = _table(streamed)
    assert table.column_names == COLUMNS
    assert table.column("id").to_pylist() == list(range(N))  # rows in = rows out, each id once
    assert not hasattr(streamed, "labels_")  # a path input: the driver never gathers its rows
    ids = streamed.sample_ids_
    assert streamed.n_texts_ == N and streamed.n_fit_rows_ == len(ids) and 2 <= len(ids) < N
    assert int(np.sum(streamed.cluster_sizes_)) == N
    assert table.column("text").to_pylist() == texts
    clusters = table.column("cluster").to_numpy()
    names = table.column("cluster_name").to_pylist()
    assert all(names[i] == streamed.cluster_names_[c] for i, c in enumerate(clusters))
    assert all(t.strip() for t in table.column("interpretation").to_pylist())
    summary = json.loads((streamed.run_dir_ / "summary.json").read_text())
    assert summary["n_texts"] == N and summary["n_fit_rows"] == len(ids)
    assert sum(c["size"] for c in summary["clusters"]) == N
    assert [s for s in summary["reused_stages"] if s.startswith("stream-")] == []
    assert len(list((streamed.run_dir_ / "stages").glob("stream-0*"))) == -(-N // UNIT)  # one stage per unit
    # The list path on the sample's texts (the stages reused from a copy of the run): the same labels.
    run = tmp_path / "run"
    shutil.copytree(streamed.run_dir_, run)
    listed = CoEvolver(task=TASK, n_clusters=len(set(labels)), output_dir=str(run), **_settings(None)).fit(
        [texts[i] for i in ids], [labels[i] for i in ids], resume=True)
    assert listed.labels_.tolist() == clusters[ids].tolist()
    assert listed.interpretations_ == [table.column("interpretation")[int(i)].as_py() for i in ids]


def test_a_driver_killed_during_the_stream_resumes_to_the_same_shards(streamed, data, tmp_path):
    """A copy of the run that kept its first committed unit only; a driver (another process,
    joined to this cluster) killed while it builds the second; the rerun with resume ends with the
    uninterrupted run's assignments, each id once, and did not redo the committed unit."""
    import ray

    from coevo_ray import CoEvolver

    _, labels, folder = data
    run = tmp_path / "run"
    shutil.copytree(streamed.run_dir_, run)
    for path in (run / "stages").glob("stream-0*"):
        if not path.name.startswith("stream-00001-"):
            shutil.rmtree(path)
    shutil.rmtree(run / "assignments.parquet")
    (run / "summary.json").unlink()
    script = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'tests')!r})\n"
              "from test_stream import TASK, _settings\nfrom coevo_ray import CoEvolver\n"
              f"CoEvolver(task=TASK, n_clusters={len(set(labels))}, output_dir={str(run)!r}, **_settings())"
              f".fit({str(folder)!r}, label_field='label', resume=True)\n")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        if any((run / "stages").glob(".stream-00002-*")):  # unit 2 is being built (renamed into place when complete)
            break
        time.sleep(0.5)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (run / "summary.json").exists()  # killed before the end ...
    assert not any((run / "stages").glob("stream-00002-*"))  # ... and before unit 2 was committed

    resumed = CoEvolver(task=TASK, n_clusters=len(set(labels)), output_dir=str(run), **_settings()).fit(
        str(folder), label_field="label", resume=True)
    summary = json.loads((run / "summary.json").read_text())
    reused = [s for s in summary["reused_stages"] if s.startswith("stream-0")]  # the numbered units
    assert reused == ["stream-00001"], (summary["reused_stages"], summary["timings_s"])
    assert _table(resumed).equals(_table(streamed))


def test_predict_on_a_path_streams_a_lazy_dataset(streamed, data, tmp_path):
    texts, _, _ = data
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:5]))
    assigned = streamed.predict(str(folder))
    rows = sorted(assigned.take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(5)) and set(rows[0]) == set(COLUMNS)
    assert all(0 <= r["cluster"] < streamed.n_clusters_ for r in rows)


def test_sample_size_is_checked_before_anything_runs():
    from coevo_ray import CoEvolver
    from coevo_ray.errors import InputError

    with pytest.raises(InputError, match="sample_size=3 is below n_clusters=5"):
        CoEvolver(task=TASK, n_clusters=5, sample_size=3).fit(["a b", "c d"])
    with pytest.raises(InputError, match="stream_unit_rows must be a positive integer"):
        CoEvolver(task=TASK, n_clusters=2, sample_size=10, stream_unit_rows=0).fit(["a b", "c d"])
