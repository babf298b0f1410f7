"""Progress of a Ray Data stage that writes Parquet into a directory, read from the files it has
written so far: a watcher thread in the driver logs rows done, the share and an ETA at each
quarter — plain log lines that read the same in a terminal, a CI log and ``ray job logs`` — and,
where a terminal or a notebook is attached, also draws a tqdm bar."""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
def parquet_progress(directory: Path, total: int, label: str, poll_s: float = 5.0) -> Iterator[None]:
    """Log ``label: n/total rows (p%), ETA`` each time another quarter of ``total`` is written;
    update a progress bar every ``poll_s`` where :func:`interactive`."""
    stop = threading.Event()
    start = time.monotonic()
    bar = None
    if interactive() and logger.isEnabledFor(logging.INFO):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=label, unit="rows", leave=False)

    def watch() -> None:
        quarter = 0
        while not stop.wait(poll_s):
            done = rows_written(directory)
            if bar is not None:
                bar.update(done - bar.n)
            reached = min(3, 4 * done // max(total, 1))
            if reached > quarter:
                quarter = reached
                elapsed = time.monotonic() - start
                eta = elapsed * (total - done) / done if done else float("nan")
                logger.info("%s: %d/%d rows (%d%%), about %.0f s left", label, done, total, 100 * done // total, eta)

    thread = threading.Thread(target=watch, name=f"progress-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if bar is not None:
            bar.close()
