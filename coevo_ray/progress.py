"""Progress of long stages, watched from the driver: a Ray Data stage that writes Parquet into a
directory (read from the files written so far) and a Ray Train fit (its rank 0 posts each step to
a small actor). A watcher thread logs what is done, the share and an ETA at each quarter — plain
log lines that read the same in a terminal, a CI log and ``ray job logs`` (worker logs do not
reach the driver) — and, where a terminal or a notebook is attached, also draws a tqdm bar."""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)


def rows_written(directory: Path) -> int:
    """Rows in the finished Parquet files under ``directory`` (files still being written are skipped)."""
    import pyarrow.parquet as pq

    total = 0
    for path in Path(directory).glob("*.parquet"):
        try:
            total += pq.read_metadata(path).num_rows
        except (OSError, ValueError):  # not finished yet: no footer
            continue
    return total


def interactive() -> bool:
    """A person watching: stderr is a terminal, or the code runs in a Jupyter kernel. (The CLI
    points stderr at run.log, so its runs draw no bar.)"""
    try:
        return sys.stderr.isatty() or "ipykernel" in sys.modules
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


@contextmanager
def _watched(read: Callable[[], tuple[int, int]], label: str, unit: str, poll_s: float) -> Iterator[None]:
    """Poll ``read() -> (done, total)`` every ``poll_s``; log ``label: done/total unit (p%), ETA``
    each time another quarter is reached, and keep a bar where :func:`interactive`. A total of 0
    is not known yet."""
    stop = threading.Event()
    start = time.monotonic()
    bar = None
    if interactive() and logger.isEnabledFor(logging.INFO):
        from tqdm.auto import tqdm

        bar = tqdm(desc=label, unit=unit, leave=False)

    def watch() -> None:
        quarter = 0
        while not stop.wait(poll_s):
            try:
                done, total = read()
            except Exception:  # noqa: BLE001 - a poll that fails (an actor still starting) is skipped
                continue
            if not total:
                continue
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)
            reached = min(3, 4 * done // total)
            if reached > quarter:
                quarter = reached
                elapsed = time.monotonic() - start
                eta = elapsed * (total - done) / done if done else float("nan")
                logger.info("%s: %d/%d %s (%d%%), about %.0f s left", label, done, total, unit, 100 * done // total, eta)

    thread = threading.Thread(target=watch, name=f"progress-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if bar is not None:
            bar.close()


@contextmanager
def parquet_progress(directory: Path, total: int, label: str, poll_s: float = 5.0) -> Iterator[None]:
    """Progress of a stage writing ``total`` rows as Parquet files into ``directory``."""
    with _watched(lambda: (rows_written(directory), total), label, "rows", poll_s):
        yield


@contextmanager
def train_progress(label: str, poll_s: float = 5.0) -> Iterator[Any]:
    """Progress of a Ray Train fit: yields a handle for the workers' ``train_loop_config``, to
    which rank 0 posts its steps with :func:`report_step`. A Ray actor rather than a file in the
    run's storage: the storage may be remote, and an actor reaches the driver from any node; it
    asks for no CPU, so it starts while the workers hold every core."""
    import ray

    board = ray.remote(num_cpus=0)(_StepBoard).remote()
    try:
        with _watched(lambda: ray.get(board.get.remote(), timeout=poll_s), label, "steps", poll_s):
            yield board
    finally:
        try:
            ray.kill(board)
        except Exception:  # noqa: BLE001 - Ray already gone (the fit's own error is the one to see)
            pass


class _StepBoard:
    """The last step rank 0 posted, and the step count."""

    def __init__(self) -> None:
        self.step, self.total = 0, 0

    def post(self, step: int, total: int) -> None:
        self.step, self.total = step, total

    def get(self) -> tuple[int, int]:
        return self.step, self.total


def report_step(board: Any, step: int, total: int) -> None:
    """Post a step to :func:`train_progress`'s handle from a worker (nothing when it is None);
    never waits and never raises: training goes on without its progress line."""
    if board is None:
        return
    try:
        board.post.remote(int(step), int(total))
    except Exception:  # noqa: BLE001
        pass
