"""Shared fixtures: one Ray session, real models from the offline packs, real benchmark data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SLOW = os.environ.get("COEVO_SLOW") == "1"


#: Tests slower than this many seconds are named with their time as they end.
SHOW_SLOWER_THAN_S = 30.0


_CONFIG = []


def pytest_configure(config):
    _CONFIG.append(config)


def pytest_runtest_logreport(report):
    """Say at once what failed and what took long: a CI run stopped at its time limit never
    reaches pytest's end-of-run summary, and the failures and durations are what it needs."""
    terminal = _CONFIG[0].pluginmanager.get_plugin("terminalreporter") if _CONFIG else None
    if terminal is None:
        return
    if report.failed:
        terminal.write_line(f"\n--- {report.when} of {report.nodeid} FAILED after {report.duration:.0f} s:")
        terminal.write_line(report.longreprtext[-6000:])
    elif report.duration > SHOW_SLOWER_THAN_S:
        terminal.write(f" [{report.nodeid.rsplit('::', 1)[-1][:48]}: {report.when} {report.duration:.0f} s] ")


def pytest_collection_modifyitems(config, items):
    if SLOW:
        return
    skip = pytest.mark.skip(reason="slow: set COEVO_SLOW=1 (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray


@pytest.fixture(scope="session")
def smollm2_dir():
    from coevo_ray.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def minilm_dir():
    from coevo_ray.models import resolve_model

    return resolve_model("all-minilm-l6-v2")


@pytest.fixture
def no_leftovers():
    """Training leaves no scratch or staging directory in the temp folder (a CI machine once ran
    out of disk on them); a worker killed mid-run included."""
    import tempfile

    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("coevo-*"))
    yield
    left = sorted(str(p) for p in set(tmp.glob("coevo-*")) - before)
    assert not left, f"left behind in {tmp}: {left}"
