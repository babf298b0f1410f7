"""What the command line shows: the library's own stage lines and the summary on the terminal,
everything else in ``run.log`` in the run directory.

Ray forwards every worker's output to the driver (vLLM engine logs, Ray Train workers, TRL and
DeepSpeed prints, Ray Data progress bars), and libraries write to the process's file descriptors
directly, so Python's ``logging`` alone cannot quiet them. While the console is quiet, file
descriptors 1 and 2 point at ``run.log``; the lines meant for the user go to a duplicate of the
original stdout. Written by hand: no library does this descriptor plumbing for a CLI.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

#: Loggers whose INFO lines are the user's progress; anything at ERROR or above is shown too.
CONSOLE_LOGGERS = ("coevo_ray",)
DETAIL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.split(".")[0] in CONSOLE_LOGGERS
        return (ours and record.levelno >= logging.INFO) or record.levelno >= logging.ERROR


@contextmanager
def console(run_log: str | Path, verbose: bool = False) -> Iterator[TextIO]:
    """Yield the stream for user-facing lines. Quiet (the default): fds 1 and 2 go to ``run_log``
    (appended), the library's INFO lines and every error reach the terminal as one short line
    each. ``verbose``: everything stays on the terminal and is also logged to ``run_log``."""
    run_log = Path(run_log)
    run_log.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    log_file = open(run_log, "a", buffering=1, encoding="utf-8")
    handlers: list[logging.Handler] = []
    if verbose:
        for stream in (log_file, sys.stderr):
            handler = logging.StreamHandler(stream)
            handler.setFormatter(logging.Formatter(DETAIL_FORMAT))
            handlers.append(handler)
        for h in handlers:
            root.addHandler(h)
        try:
            yield sys.stdout
        finally:
            for h in handlers:
                root.removeHandler(h)
            log_file.close()
        return

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    detail = logging.StreamHandler(log_file)
    detail.setFormatter(logging.Formatter(DETAIL_FORMAT))
    shown = logging.StreamHandler(terminal)
    shown.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    shown.addFilter(_ConsoleFilter())
    handlers = [detail, shown]
    for h in handlers:
        root.addHandler(h)
    try:
        yield terminal
    finally:
        for h in handlers:
            root.removeHandler(h)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        terminal.close()
        log_file.close()


def _logging_configured(logger: logging.Logger) -> bool:
    """Whether records of ``logger`` already reach a handler someone set up (ours, the CLI's, the
    application's or a notebook's ``logging.basicConfig``)."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


@contextmanager
def library_logging(verbose: int = 1) -> Iterator[None]:
    """The library's own lines for an estimator call from Python (a script, a notebook): at
    ``verbose`` ≥ 1 the ``coevo_ray`` INFO lines (stages, progress, scores) are shown on stderr
    when logging is not configured — Python's default shows nothing below WARNING; at 0 only
    warnings. A configured application's handlers are left as they are."""
    lib = logging.getLogger(CONSOLE_LOGGERS[0])
    saved_level = lib.level
    lib.setLevel(logging.INFO if verbose >= 1 else logging.WARNING)
    handler = None
    if not _logging_configured(lib):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        lib.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            lib.removeHandler(handler)
        lib.setLevel(saved_level)
