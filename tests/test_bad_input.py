"""Bad settings and run directories are refused with a message that names the problem, before
any model is loaded or any stage runs."""

from __future__ import annotations

import os

import pytest

from coevo_ray import CoEvolver
from coevo_ray.errors import InputError, RunDirectoryError

TASK = "intent: user intent"


@pytest.mark.parametrize("temps, message", [((), "temperatures must not be empty"),
                                            ((0.0, -0.5), r"temperatures must be >= 0")])
def test_temperatures(temps, message):
    with pytest.raises(InputError, match=message):
        CoEvolver(task=TASK, n_clusters=3, interpret={"temperatures": temps})


def test_one_temperature_cannot_make_pairs():
    with pytest.raises(InputError, match="at least 2 temperatures"):
        CoEvolver(task=TASK, n_clusters=3, iterations=1, interpret={"temperatures": (0.0,)})


@pytest.mark.parametrize("k, message", [(1, "at least 2"), (0, "at least 2"), (2.5, "integer or 'auto'"),
                                        ("many", "integer or 'auto'"), (True, "integer or 'auto'")])
def test_n_clusters(k, message):
    with pytest.raises(InputError, match=message):
        CoEvolver(task=TASK, n_clusters=k)


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
        CoEvolver(task="no colon here", n_clusters=2)
    with pytest.raises(InputError, match="unknown prompt style"):
        CoEvolver(task=TASK, n_clusters=2, interpret={"prompt_style": "fancy"})
    with pytest.raises(InputError, match="n_exemplars >= 1"):
        CoEvolver(task=TASK, n_clusters=2, interpret={"prompt_style": "exemplars", "n_exemplars": 0})
    with pytest.raises(InputError, match="structured_output needs backend='vllm'"):
        CoEvolver(task=TASK, n_clusters=2, interpret={"structured_output": True, "backend": "transformers"})
    with pytest.raises(InputError, match="unknown representation"):
        CoEvolver(task=TASK, n_clusters=2, representation="both")


def test_unreadable_manifest_is_reported(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="manifest.json is unreadable"):
        CoEvolver(task=TASK, n_clusters=2, output_dir=str(run)).fit(["a b", "c d", "e f"])


def test_load_refuses_a_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(InputError, match="not a saved coevo_ray model"):
        CoEvolver.load(tmp_path)
