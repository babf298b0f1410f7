"""Shared fixtures: one Ray session, real models from the offline packs, real benchmark data."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if not DATASETS.exists():  # CI clones next to shared/; a checkout elsewhere can point at it
    DATASETS = Path(os.environ.get("COEVO_DATASETS", "../shared/datasets")).resolve()

SLOW = os.environ.get("COEVO_SLOW") == "1"


def pytest_collection_modifyitems(config, items):
    if SLOW:
        return
    skip = pytest.mark.skip(reason="slow: set COEVO_SLOW=1 (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def read_jsonl(name: str, n: int | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path}")
    rows = [json.loads(line) for line in path.open()]
    if n is not None:
        random.Random(seed).shuffle(rows)
        rows = rows[:n]
    return [r["text"] for r in rows], [r["label"] for r in rows]


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


def checkpoint_dirs(storage: Path) -> list[Path]:
    """Ray Train's checkpoint directories under a storage path (not its checkpoint_manager_snapshot.json)."""
    return [p for p in storage.rglob("checkpoint_*") if p.is_dir()]


def kill_a_train_worker_after_checkpoints(storage: Path, n_checkpoints: int = 2, timeout_s: float = 600):
    """Start a thread that SIGKILLs one Ray Train worker once ``storage`` holds ``n_checkpoints``
    checkpoint directories (two: the first one is registered by then — a directory appears while
    its upload is still in flight). Returns (thread, record): ``record["pid"]`` is the killed
    process, ``record["files"]`` the file names the checkpoints held then (they are deleted from
    the storage once the fit is exported)."""
    import signal
    import threading
    import time

    import psutil

    record: dict = {}

    def run() -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            checkpoints = checkpoint_dirs(storage)
            if len(checkpoints) >= n_checkpoints:
                workers = [p for p in psutil.process_iter(["cmdline"])
                           if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
                if workers:
                    record["files"] = {f.name for c in checkpoints for f in c.rglob("*") if f.is_file()}
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    record["pid"] = workers[-1].pid
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, record


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
