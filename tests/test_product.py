"""The product surface on a real fit: predict, save/load, cluster descriptions, auto K,
resume after the driver is killed, and the HTML report rendered by headless Chromium."""

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
UNSEEN = ["set an alarm for six tomorrow morning", "what's the exchange rate for euros to yen"]


def _settings() -> dict:
    """The CLI's ``--profile quick --iterations 0 --max-tokens 24`` as API arguments."""
    from coevo_ray.profiles import profile_settings

    settings = profile_settings("quick")
    settings["interpret"] = {**settings["interpret"], "max_tokens": 24}
    settings["iterations"] = 0
    return settings


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    texts, labels = read_jsonl("clinc_domain.jsonl", n=30, seed=11)
    path = tmp_path_factory.mktemp("data") / "small.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)))
    return texts, labels, path


@pytest.fixture(scope="module")
def fitted(ray_session, data, tmp_path_factory):
    from coevo_ray import CoEvolver

    texts, labels, _ = data
    out = tmp_path_factory.mktemp("fit") / "run"
    model = CoEvolver(task=TASK, n_clusters=len(set(labels)), output_dir=str(out), **_settings())
    return model.fit(texts, labels)


def test_fit_describes_its_clusters(fitted, data):
    k = fitted.n_clusters_
    assert len(fitted.cluster_names_) == k and all(n.strip() for n in fitted.cluster_names_)
    assert len(fitted.cluster_keywords_) == k
    _assert_names_are_their_own(fitted, data[0])
    used = set(fitted.labels_.tolist())
    assert all(fitted.cluster_keywords_[c] for c in used)  # every non-empty cluster has keywords
    assert len(fitted.interpretations_) == len(data[0])
    assert all(i.startswith("Reasoning:") and "\nKeywords: " in i for i in fitted.interpretations_)
    rows = [json.loads(line) for line in (fitted.run_dir_ / "assignments.jsonl").open()]
    assert [r["id"] for r in rows] == list(range(len(data[0])))
    assert [r["cluster"] for r in rows] == fitted.labels_.tolist()
    summary = json.loads((fitted.run_dir_ / "summary.json").read_text())
    assert summary["history"][0]["acc"] == fitted.history_[0]["acc"] and len(summary["clusters"]) == k
    base = summary["baseline"]
    assert base == fitted.baseline_ and 0 < base["acc"] <= 100 and -1 <= base["silhouette"] <= 1
    assert 0 < base["agreement_nmi"] <= 100  # the two clusterings of the same texts share structure
    manifest = json.loads((fitted.run_dir_ / "manifest.json").read_text())
    assert any(v["stage"] == "iter0-interpret" for v in manifest["stages"].values())
    info = fitted.get_cluster_info()  # BERTopic's get_topic_info: one row per cluster
    assert sorted(info["cluster"]) == list(range(k)) and info["size"].sum() == len(data[0])
    assert list(info["size"]) == sorted(info["size"], reverse=True)
    assert list(info.columns) == ["cluster", "size", "name", "keywords", "representative_texts"]
    assert info.set_index("cluster").loc[int(fitted.labels_[0]), "name"] == fitted.cluster_names_[fitted.labels_[0]]
    docs = fitted.get_document_info()
    assert list(docs.columns) == ["id", "text", "cluster", "name", "interpretation", "distance"]
    assert docs["text"].tolist() == data[0] and (docs["cluster"].to_numpy() == fitted.labels_).all()
    assert docs["interpretation"].tolist() == fitted.interpretations_ and (docs["distance"] >= 0).all()


def test_save_load_predict_reproduces_labels(fitted, data, tmp_path):
    from coevo_ray import CoEvolver

    texts, _, _ = data
    saved = fitted.save(tmp_path / "model")
    files = {p.name for p in saved.rglob("*") if p.is_file()}
    assert {"coevo_model.json", "centroids.npy", "labels.npy"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pickle"))]  # no pickle
    loaded = CoEvolver.load(saved)
    assert loaded.cluster_names_ == fitted.cluster_names_
    # The training texts, all of them: the engine and the embedder then get fit's batches (a
    # subset, or new texts beside them, would batch them otherwise: docs/faq.md).
    np.testing.assert_array_equal(loaded.predict(texts, output_dir=str(tmp_path / "predict")), fitted.labels_)
    pred = loaded.predict(UNSEEN, output_dir=str(tmp_path / "unseen"))
    assert pred.shape == (len(UNSEEN),) and all(0 <= p < fitted.n_clusters_ for p in pred)
    # transform: distances to every centre (the same stages, reused from predict's directory).
    distances = loaded.transform(UNSEEN, output_dir=str(tmp_path / "unseen"))
    assert distances.shape == (len(UNSEEN), fitted.n_clusters_)
    np.testing.assert_array_equal(distances.argmin(axis=1), pred)
    assert loaded.get_cluster_info()["name"].tolist() == fitted.get_cluster_info()["name"].tolist()


def test_predict_before_fit_is_refused():
    from coevo_ray import CoEvolver

    from coevo_ray.errors import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        CoEvolver(task=TASK, n_clusters=3).predict(["hello"])


def test_changed_config_in_same_run_dir_is_refused(fitted, data):
    from coevo_ray import CoEvolver
    from coevo_ray.errors import RunDirectoryError

    texts, labels, _ = data
    other = {**_settings(), "seed": 5}
    with pytest.raises(RunDirectoryError, match=r"different configuration \(changed: seed\).*resume"):
        CoEvolver(task=TASK, n_clusters=len(set(labels)), output_dir=str(fitted.run_dir_), **other).fit(texts, labels)


def _cli(data_path: Path, out: Path, *extra: str) -> list[str]:
    """The installed ``coevo-ray`` command (``examples/cluster.py`` runs in the Ray job test)."""
    return [str(Path(sys.executable).parent / "coevo-ray"), "--input", str(data_path), "--label-field",
            "label", "--task", TASK, "--max-tokens", "24", "--iterations", "0", "--output-dir", str(out), *extra]


def test_the_installed_command_and_the_example_script_share_one_parser():
    commands = [[str(Path(sys.executable).parent / "coevo-ray")], [sys.executable, str(REPO / "examples" / "cluster.py")]]
    helps = [subprocess.run([*c, "--help"], capture_output=True, text=True, timeout=120) for c in commands]
    assert [h.returncode for h in helps] == [0, 0], [h.stderr[-2000:] for h in helps]
    assert "usage: coevo-ray" in helps[0].stdout and "--resume" in helps[0].stdout
    assert helps[0].stdout == helps[1].stdout


def test_resume_after_driver_killed(ray_session, fitted, data, tmp_path):
    """SIGKILL the CLI driver once generation finished; --resume must not regenerate and must
    end with the labels of the uninterrupted fit (the module fixture, same settings)."""
    import ray

    _, _, data_path = data
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    address = ray.get_runtime_context().gcs_address
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(_cli(data_path, out, "--ray-address", address), env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    manifest = out / "manifest.json"
    while time.time() < deadline and first.poll() is None:
        if manifest.exists() and any(v["stage"] == "iter0-interpret"
                                     for v in json.loads(manifest.read_text())["stages"].values()):
            break
        time.sleep(0.5)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "summary.json").exists()  # killed before the end

    second = subprocess.run(_cli(data_path, out, "--ray-address", address, "--resume"), env=env,
                            capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    # The console (not a terminal here) stays short; Ray's and vLLM's lines are in run.log.
    shown = (second.stdout + second.stderr).splitlines()
    assert len(shown) <= 60 and "\x1b" not in second.stdout + second.stderr, "\n".join(shown)
    assert any("ACC" in line for line in shown) and any("baseline" in line for line in shown)
    # The kind representation="auto" (the default) chose, named; the figures it chose by, recorded.
    assert any(f"(co-evolved, {fitted.representation_})" in line for line in shown), "\n".join(shown)
    assert len((out / "run.log").read_text().splitlines()) > len(shown)
    summary = json.loads((out / "summary.json").read_text())
    assert "iter0-interpret" in summary["reused_stages"] and "iter0-interpret" not in summary["ran_stages"]
    assert summary["ran_stages"], summary["reused_stages"]  # killed mid-fit: the rest ran on resume
    last = summary["history"][-1]
    assert last["representation"] == fitted.representation_ and last["representation_choice"]["as_stable"]
    labels = [json.loads(line)["cluster"] for line in (out / "assignments.jsonl").open()]
    assert labels == fitted.labels_.tolist()


def test_estimate_k_on_real_embeddings(minilm_dir):
    from coevo_ray.clustering import estimate_n_clusters
    from coevo_ray.embed import encode, load_encoder

    texts, labels = read_jsonl("clinc_domain.jsonl", n=150, seed=4)
    x = encode(load_encoder(str(minilm_dir), device="cpu"), texts)
    k, scores = estimate_n_clusters(x, 2, 40, seed=0)
    assert 2 <= k <= 40 and k in scores and scores[k] == max(scores.values())


def test_estimate_k_finds_separated_blobs():
    from coevo_ray.clustering import estimate_n_clusters

    rng = np.random.default_rng(0)
    centers = np.eye(16)[:6] * 5
    x = np.vstack([c + 0.3 * rng.standard_normal((40, 16)) for c in centers])
    assert estimate_n_clusters(x, 2, 30, seed=0)[0] == 6


def _assert_names_are_their_own(fitted, texts):
    """No name repeats a word or uses words of a prompt's worked example that its texts lack."""
    import re

    from coevo_ray.describe.keywords import word_stem
    from coevo_ray.interpret.parsing import STOPWORDS, copied_words
    from coevo_ray.interpret.prompts import NAMING_EXAMPLE, worked_example

    def stems(s):  # content words: "and" may recur
        return [word_stem(w) for w in re.findall(r"[A-Za-z0-9]+", s) if len(w) > 2 and w.lower() not in STOPWORDS]

    for c, name in enumerate(fitted.cluster_names_):
        shown = " ".join(t for t, label in zip(texts, fitted.labels_) if label == c)
        shown += " " + " ".join(fitted.cluster_keywords_[c])
        assert len(stems(name)) == len(set(stems(name))), name
        assert not copied_words(name, worked_example("guided"), shown), name
        assert not set(stems(name)) & (set(stems(" ".join(NAMING_EXAMPLE))) - set(stems(shown))), name


def test_cluster_names_fall_back_to_a_keyword_phrase():
    """The demo's bad names (issue 20): a cut, repeated list; the naming example's answer copied;
    a keyword fallback of one word's forms. Each becomes the top two distinct keywords."""
    from coevo_ray.describe import clean_name, name_problem

    refund = ["refund", "refundable", "refunds", "return", "damaged"]
    assert clean_name("Refurbished, broken, damaged, broken, broken, cr", ["repair", "laptop"],
                      truncated=True) == "Repair and laptop"
    assert name_problem("Refurbished, broken, damaged, broken, broken", "") == "a list, not a phrase"
    assert name_problem("Broken and broken items", "") == "a repeated word"
    assert name_problem("Cards and transfers and top ups", "cards, transfers, top ups") is None
    assert clean_name("Refunds and returns", refund) == "Refund and return"
    assert clean_name("Money back for orders", ["balance", "top up"], "Keywords: balance\nTexts:\n- top up failed") \
        == "Balance and top up"
    assert clean_name("Name: Password reset email never arrived", ["password"]) == "Password reset email never arrived"
    assert clean_name("", []) == "(unnamed)"


def test_cluster_keywords_prefer_distinctive_words():
    from coevo_ray.describe import cluster_keywords

    kws = [["card", "lost", "card"], ["card", "stolen"], ["card", "refund"], ["refund", "money back"]]
    top = cluster_keywords(kws, [0, 0, 1, 1], n_clusters=3, top=2)
    assert top[0][0] in ("lost", "stolen") and top[1][0] == "refund" and top[2] == []
    # Forms of one word are one keyword.
    forms = cluster_keywords([["refund", "refunds"], ["refundable", "credit card"], ["card", "refund"]], [0, 0, 0], 1)
    assert forms == [["refund", "card", "credit card"]]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is required for the report test: apt-get install chromium (make install does)")


def test_report_renders_in_headless_chromium(fitted, tmp_path):
    from PIL import Image

    report = fitted.report_path_
    assert report is not None and report.exists()
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600", "--virtual-time-budget=5000"]
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n_images = 3  # sizes, map, metrics (the fit has labels)
    assert f'data-images-loaded="{n_images}/{n_images}"' in dom.stdout
    assert f'data-cluster-rows="{fitted.n_clusters_}"' in dom.stdout
    # The plain baseline beside the iterations, with its own scores (issue 20).
    assert "baseline: raw texts" in dom.stdout and f"{fitted.baseline_['acc']:.2f}" in dom.stdout
    words = [w for name in fitted.cluster_names_ for w in name.split() if w.isalnum()]
    assert words and words[0] in dom.stdout  # the cluster table was rendered
    shot = tmp_path / "report.png"
    subprocess.run(base + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 500 and pixels.std() > 10  # text, tables and plots, not a blank page
