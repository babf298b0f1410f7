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


LIBRARY_SCRIPT = """
import logging, sys
from coevo_ray.console import library_logging
if sys.argv[2] == "configured":
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="app %(message)s")
with library_logging(int(sys.argv[1])):
    logging.getLogger("coevo_ray.pipeline").info("iter0-interpret: done in 3 s")
    logging.getLogger("coevo_ray.pipeline").warning("a warning of ours")
logging.getLogger("coevo_ray.pipeline").info("after the fit")
"""


def test_python_api_shows_its_stage_lines_where_logging_is_not_configured():
    """A notebook or script: Python shows nothing below WARNING by default; an estimator's call
    shows the library's INFO lines at verbose=1, only warnings at 0, and leaves an application's
    own handlers alone."""
    def run(verbose, mode="bare"):
        done = subprocess.run([sys.executable, "-c", LIBRARY_SCRIPT, str(verbose), mode], capture_output=True,
                              text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0, done.stderr
        return done

    shown = run(1).stderr.splitlines()
    assert len(shown) == 2 and shown[0].endswith("iter0-interpret: done in 3 s") and "after the fit" not in shown[-1]
    assert run(0).stderr.splitlines()[-1].endswith("a warning of ours") and "done in" not in run(0).stderr
    configured = run(1, "configured")
    assert configured.stderr == "" and configured.stdout.splitlines()[0] == "app iter0-interpret: done in 3 s"
