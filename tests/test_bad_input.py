"""Bad settings and run directories are refused by ``fit`` with a message that names the problem,
before any model is loaded or any stage runs (``__init__`` only stores parameters, as in
scikit-learn)."""

from __future__ import annotations

import logging
import os

import pytest

from coevo_ray import CoEvolver
from coevo_ray.errors import InputError, RunDirectoryError

TASK = "intent: user intent"
TEXTS = ["a b", "c d", "e f"]  # settings are checked before the texts are looked at


@pytest.mark.parametrize("temps, message", [((), "temperatures must not be empty"),
                                            ((0.0, -0.5), r"temperatures must be >= 0"),
                                            ((0.5, 0.0), r"temperatures\[0\] must be 0.0")])
def test_temperatures(temps, message):
    with pytest.raises(InputError, match=message):
        CoEvolver(task=TASK, n_clusters=3, interpret={"temperatures": temps}).fit(TEXTS)


def test_one_temperature_cannot_make_pairs():
    with pytest.raises(InputError, match="at least 2 temperatures"):
        CoEvolver(task=TASK, n_clusters=3, iterations=1, interpret={"temperatures": (0.0,)}).fit(TEXTS)


@pytest.mark.parametrize("k, message", [(1, "at least 2"), (0, "at least 2"), (2.5, "integer or 'auto'"),
                                        ("many", "integer or 'auto'"), (True, "integer or 'auto'")])
def test_n_clusters(k, message):
    with pytest.raises(InputError, match=message):
        CoEvolver(task=TASK, n_clusters=k).fit(TEXTS)


def test_more_clusters_than_texts_is_refused_before_any_stage(tmp_path):
    with pytest.raises(InputError, match=r"n_clusters=5 exceeds the number of texts \(3\)"):
        CoEvolver(task=TASK, n_clusters=5, output_dir=str(tmp_path / "run")).fit(["a b", "c d", "e f"])
    assert not (tmp_path / "run").exists()


def test_unwritable_output_directory(tmp_path):
    if os.geteuid() == 0:  # root writes into read-only directories; sysfs refuses even root
        target = "/sys/coevo-run"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "run")
    with pytest.raises(RunDirectoryError, match="not writable"):
        CoEvolver(task=TASK, n_clusters=2, output_dir=target).fit(["a b", "c d", "e f"])


def test_output_directory_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(RunDirectoryError, match="not writable"):
        CoEvolver(task=TASK, n_clusters=2, output_dir=str(target)).fit(["a b", "c d", "e f"])


def test_task_prompt_and_backend_settings():
    with pytest.raises(InputError, match="<task>: <standard>"):
        CoEvolver(task="no colon here", n_clusters=2).fit(TEXTS)
    with pytest.raises(InputError, match="unknown prompt style"):
        CoEvolver(task=TASK, n_clusters=2, interpret={"prompt_style": "fancy"}).fit(TEXTS)
    with pytest.raises(InputError, match="n_exemplars >= 1"):
        CoEvolver(task=TASK, n_clusters=2, interpret={"prompt_style": "exemplars", "n_exemplars": 0}).fit(TEXTS)
    with pytest.raises(InputError, match="structured_output needs backend='vllm'"):
        CoEvolver(task=TASK, n_clusters=2, interpret={"structured_output": True, "backend": "transformers"}).fit(TEXTS)
    with pytest.raises(InputError, match="unknown representation"):
        CoEvolver(task=TASK, n_clusters=2, representation="both").fit(TEXTS)


def test_unreadable_manifest_is_reported(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="manifest.json is unreadable"):
        CoEvolver(task=TASK, n_clusters=2, output_dir=str(run)).fit(["a b", "c d", "e f"])


def test_load_refuses_a_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(InputError, match="not a saved coevo_ray model"):
        CoEvolver.load(tmp_path)


@pytest.mark.parametrize("name", ["../../escape", "/etc/passwd", "a/../../b", "..", "iter0-interpret/../../x"])
def test_stage_names_cannot_escape_the_run_directory(tmp_path, name):
    from coevo_ray.rundir import RunDir

    run = RunDir(tmp_path / "run")
    path = run.stage_path(name, "abc123")
    assert path.resolve().is_relative_to((tmp_path / "run" / "stages").resolve())
    assert path.parent == (tmp_path / "run" / "stages").resolve()


def test_an_unnamed_run_directory_goes_with_its_owner(tmp_path):
    """fit() without output_dir must not leave its stages (the merged LLM among them) in the temp
    folder once the model is gone; a directory the caller named stays."""
    import gc

    from coevo_ray.rundir import RunDir

    temporary, named = RunDir(None), RunDir(tmp_path / "kept")
    roots = (temporary.root, named.root)
    (temporary.root / "stages").mkdir()
    assert roots[0].exists()
    del temporary, named
    gc.collect()
    assert not roots[0].exists() and roots[1].exists()


def test_saved_model_paths_cannot_point_outside(tmp_path):
    """The manifest only says whether an adapter/embedder exists; their paths are fixed names."""
    import json

    import numpy as np

    from coevo_ray.model_io import FORMAT_VERSION, load_model_files

    model = tmp_path / "model"
    model.mkdir()
    np.save(model / "centroids.npy", np.zeros((2, 3), np.float32))
    np.save(model / "labels.npy", np.zeros(4, np.int64))
    (model / "coevo_model.json").write_text(json.dumps(
        {"format_version": FORMAT_VERSION, "llm_adapter": "../../etc", "embedder": "/root"}))
    _, _, _, adapter, embedder = load_model_files(model)
    assert adapter == model.resolve() / "llm_adapter" and embedder == model.resolve() / "embedder"


def test_pickled_arrays_are_refused(tmp_path):
    import json

    import numpy as np

    from coevo_ray.model_io import FORMAT_VERSION, load_model_files

    model = tmp_path / "model"
    model.mkdir()
    np.save(model / "centroids.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(model / "labels.npy", np.zeros(4, np.int64))
    (model / "coevo_model.json").write_text(json.dumps({"format_version": FORMAT_VERSION}))
    with pytest.raises(InputError, match="cannot read centroids"):
        load_model_files(model)


def test_sized_answers_need_structured_output():
    with pytest.raises(InputError, match="sized_answers .* needs structured_output=True"):
        CoEvolver(task=TASK, n_clusters=3, interpret={"sized_answers": True, "structured_output": False}).fit(TEXTS)


def test_parameters_are_stored_and_checked_by_fit():
    from coevo_ray.errors import NotFittedError

    model = CoEvolver(task=TASK, n_clusters=1, interpret={"max_tokens": 8})
    assert model.get_params()["n_clusters"] == 1 and model.get_params()["interpret"] == {"max_tokens": 8}
    assert not hasattr(model, "labels_")
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict(["hello"])
    with pytest.raises(InputError, match="at least 2"):
        model.fit(TEXTS)
    assert model.set_params(n_clusters=2).config.n_clusters == 2
    with pytest.raises(InputError, match=r"unknown parameters \['clusters'\]"):
        model.set_params(clusters=3)
    clone = CoEvolver(**model.get_params())
    assert clone.config == model.config


def test_stages_must_keep_the_stage_contract():
    with pytest.raises(InputError, match="unknown stage 'tokenize'"):
        CoEvolver(task=TASK, n_clusters=2, stages={"tokenize": object()}).fit(TEXTS)
    with pytest.raises(InputError, match=r"stage 'embed' must have a name and key\(ctx"):
        CoEvolver(task=TASK, n_clusters=2, stages={"embed": lambda batch: batch}).fit(TEXTS)


def test_profiles_are_the_same_in_python_and_on_the_command_line():
    """One default for both; explicit parameters win key by key over the profile's section."""
    from coevo_ray import DEFAULT_PROFILE, PROFILES
    from coevo_ray.cli import parse_args

    assert parse_args([]).profile == DEFAULT_PROFILE == CoEvolver(task=TASK, n_clusters=2).profile
    for name in PROFILES:
        assert parse_args(["--profile", name]).profile == name
    quick = CoEvolver(task=TASK, n_clusters=2).config
    assert quick.iterations == 1 and quick.interpret.temperatures == (0.0, 1.0) and quick.interpret.max_tokens == 48
    mixed = CoEvolver(task=TASK, n_clusters=2, interpret={"max_tokens": 30}, iterations=0).config
    assert mixed.interpret.max_tokens == 30 and mixed.interpret.temperatures == (0.0, 1.0) and mixed.iterations == 0
    paper = CoEvolver(task=TASK, n_clusters=2, profile="paper").config
    assert paper.iterations == 2 and len(paper.interpret.temperatures) == 4 and paper.representation == "interpretation"
    assert CoEvolver(task=TASK, n_clusters=2, profile=None).config.representation == "auto"
    with pytest.raises(InputError, match="unknown profile 'fast'"):
        CoEvolver(task=TASK, n_clusters=2, profile="fast").fit(TEXTS)


def test_the_cli_names_its_run_directory_after_the_input():
    from coevo_ray.cli import default_output_dir

    assert default_output_dir(None, "coevolve") == "runs/demo"
    assert default_output_dir("../data/bank77.jsonl", "coevolve") == "runs/bank77"
    assert default_output_dir("corpus/*.jsonl", "coevolve") == "runs/corpus"
    assert default_output_dir("s3://bucket/corpus/", "kmeans") == "runs/corpus-kmeans"


def test_the_cost_estimate_counts_the_fits_work(smollm2_dir, minilm_dir):
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.cost import estimate

    quick = CoEvolverConfig.from_params(profile="quick", task=TASK, n_clusters=10)
    cost = estimate(quick, 240, 60.0, smollm2_dir, minilm_dir, gflops=100.0)
    assert cost.answers == 240 * 2 + 240 and cost.pairs == 96  # two candidates, then greedy; max_pairs
    longer = estimate(CoEvolverConfig.from_params(profile="paper", task=TASK, n_clusters=10), 240, 60.0, smollm2_dir,
                      minilm_dir, gflops=100.0)
    assert longer.generation_s > cost.generation_s and longer.dpo_s > cost.dpo_s
    assert longer.embedder_s > cost.embedder_s  # two iterations, four candidates to embed
    assert estimate(quick, 240, 60.0, smollm2_dir, minilm_dir, gflops=200.0).generation_s == pytest.approx(
        cost.generation_s / 2)
    assert "cost estimate: 720 LLM answers" in cost.describe() and "streaming" not in cost.describe()
    # The embedder's share grows with its size: the LLM's weights as the embedder cost more than MiniLM's.
    assert estimate(quick, 240, 60.0, smollm2_dir, smollm2_dir, gflops=100.0).embedder_s > 3 * cost.embedder_s
    untrained = CoEvolverConfig.from_params(profile="quick", task=TASK, n_clusters=10,
                                            train_embedder={"enabled": False})
    assert estimate(untrained, 240, 60.0, smollm2_dir, minilm_dir, gflops=100.0).embedder_s < cost.embedder_s
    # A fit on a sample also prices the pass over the rows outside it: about linear in them.
    sampled = estimate(quick, 240, 60.0, smollm2_dir, minilm_dir, gflops=100.0, streamed=20_000)
    bigger = estimate(quick, 240, 60.0, smollm2_dir, minilm_dir, gflops=100.0, streamed=40_000)
    assert sampled.answers == cost.answers and sampled.total_s == pytest.approx(cost.total_s + sampled.stream_s)
    assert 1.8 * sampled.stream_s < bigger.stream_s < 2.2 * sampled.stream_s
    assert "the streaming pass over 20,000 more rows" in sampled.describe()


def test_the_logged_estimate_says_when_the_llm_runs_bf16_on_a_cpu(smollm2_dir, minilm_dir, caplog):
    from coevo_ray.config import CoEvolverConfig
    from coevo_ray.cost import log_estimate
    from coevo_ray.hardware import Topology, make_plan

    lines = {}
    for dtype in ("float32", "bfloat16"):
        config = CoEvolverConfig.from_params(profile="quick", task=TASK, n_clusters=10, interpret={"dtype": dtype})
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="coevo_ray.cost"):
            assert log_estimate(config, ["a short text"] * 40, make_plan(Topology.of((2, 0)), config), smollm2_dir,
                                minilm_dir) is not None
        [lines[dtype]] = [r.getMessage() for r in caplog.records]
    assert "runs bf16" not in lines["float32"] and "at fp32 speed: this fit's LLM runs bf16" in lines["bfloat16"]
