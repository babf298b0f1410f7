"""The CLI's console: the library's stage lines and the summary on the terminal, everything
written to the process's file descriptors by other libraries in run.log."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging, os, sys
from coevo_ray.console import console
with console(sys.argv[1], verbose=sys.argv[2] == "1") as out:
    os.write(1, b"engine noise on fd 1\\n")
    os.write(2, b"worker noise on fd 2\\n")
    print("print noise")
    logging.getLogger("vllm").warning("a vllm warning")
    logging.getLogger("coevo_ray.coevolver").info("iter0-interpret: done in 3 s")
    print("summary line", file=out)
print("after the console")
"""


def _run(tmp_path, verbose):
    log = tmp_path / ("verbose" if verbose else "quiet") / "run.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log), "1" if verbose else "0"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done, log.read_text()


def test_quiet_console_shows_stage_lines_and_logs_the_rest(tmp_path):
    done, log = _run(tmp_path, verbose=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and re.fullmatch(r"\d\d:\d\d:\d\d iter0-interpret: done in 3 s", lines[0]), lines
    assert lines[1:] == ["summary line", "after the console"] and done.stderr == ""
    assert "\x1b" not in done.stdout  # no escape codes when the output is not a terminal
    for noise in ("engine noise on fd 1", "worker noise on fd 2", "print noise", "a vllm warning",
                  "coevo_ray.coevolver: iter0-interpret: done in 3 s"):
        assert noise in log


def test_verbose_console_shows_everything_and_still_logs(tmp_path):
    done, log = _run(tmp_path, verbose=True)
    shown = done.stdout + done.stderr
    for line in ("engine noise on fd 1", "worker noise on fd 2", "a vllm warning", "iter0-interpret: done in 3 s",
                 "summary line"):
        assert line in shown
    assert "a vllm warning" in log and "iter0-interpret: done in 3 s" in log
