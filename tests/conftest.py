"""Shared fixtures: one Ray session, real models from the offline packs, real benchmark data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SLOW = os.environ.get("COEVO_SLOW") == "1"


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
