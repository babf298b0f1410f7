"""Every fenced code block of README.md and docs/*.md, run so that none can drift from the code.

- ``python``: run. A page's Python blocks run in order in one namespace (a page reads like a
  notebook: later blocks use what earlier ones defined), in a fresh working directory, on the
  offline models, with ``load_demo`` cut to the demo's first ``DEMO_ROWS`` rows: the test checks
  that the code runs as written, and a fit's cost grows with its rows (the README's printed
  figures come from ``make demo`` on the whole demo: benchmarks/README.md). All pages run in one
  interpreter, one after another, each in its own namespace and directory: Python's and Ray's
  start-up is paid once rather than per page, and a failing page still lets the next ones run.
- ``bash``: run with ``bash -e -o pipefail``, from that same directory, with ``.venv/bin`` first on
  the PATH; such blocks must be quick.
- ``shell``: commands for another setting — a fresh machine's ``make`` targets (the suite itself
  runs inside ``make test``), a GPU machine, a multi-node cluster, hours-long runs. They are not
  run; they are checked: bash syntax, ``make`` targets exist (``make -n``), every ``coevo-ray`` /
  ``examples/cluster.py`` command line parses with the CLI's own parser, every repository script
  named exists.
- ``text``: printed output or file layouts, not code.

Any other language fails the test, so a new block is always classified.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([A-Za-z]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
KINDS = ("python", "bash", "shell", "text")
DEMO_ROWS = 40
#: Run before a page's blocks: ``load_demo`` keeps the labels of every row it returns.
DEMO_PRELUDE = f"""import coevo_ray
_whole_demo = coevo_ray.load_demo
coevo_ray.load_demo = lambda: tuple(column[:{DEMO_ROWS}] for column in _whole_demo())
"""


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, code, line) of every fenced block of ``page``."""
    source = page.read_text()
    return [(m.group(1), m.group(2), source[: m.start()].count("\n") + 1) for m in FENCE.finditer(source)]


def _env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO), "COEVO_DATASETS": str(REPO.parent / "shared" / "datasets")}


def test_every_block_has_a_known_kind_and_every_page_is_short_enough():
    for page in PAGES:
        for lang, _, line in blocks(page):
            assert lang in KINDS, f"{page.name}:{line}: code block of unknown kind {lang!r}; use one of {KINDS}"
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
    expected = {"installation", "quickstart", "guide", "models", "results", "performance", "design", "architecture",
                "faq", "gpu"}
    assert expected <= {p.stem for p in PAGES}


PYTHON_PAGES = [p for p in PAGES if any(lang == "python" for lang, _, _ in blocks(p))]
#: Runs the pages listed in the JSON file it is given (``[{"name", "dir", "blocks": [[line,
#: code], ...]}]``): each page's blocks in a fresh ``__main__``-named namespace, in the page's
#: directory, with markers the tests read; a page that raises prints its traceback, and the next
#: page runs. Guarded by ``__main__``: engines that spawn processes re-import the main module.
PAGE_RUNNER = DEMO_PRELUDE + """
import gc, json, os, sys, traceback

if __name__ == "__main__":
    for page in json.loads(open(sys.argv[1]).read()):
        name = page["name"]
        os.chdir(page["dir"])
        namespace = {"__name__": "__main__"}
        print(f"<<page {name} start>>", flush=True)
        try:
            for line, code in page["blocks"]:
                exec(compile(code, f"{name}:{line}", "exec"), namespace)
                print(f"<<block {name}:{line} done>>", flush=True)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            print(f"<<page {name} failed>>", flush=True)
        else:
            print(f"<<page {name} done>>", flush=True)
        namespace.clear()
        gc.collect()
"""


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory) -> str:
    """The output of every Python page, run in one interpreter (stdout and stderr together)."""
    root = tmp_path_factory.mktemp("pages")
    pages = []
    for page in PYTHON_PAGES:
        workdir = root / page.stem
        workdir.mkdir()
        pages.append({"name": page.name, "dir": str(workdir),
                      "blocks": [[line, code] for lang, code, line in blocks(page) if lang == "python"]})
    (root / "pages.json").write_text(json.dumps(pages))
    (root / "run_pages.py").write_text(PAGE_RUNNER)
    done = subprocess.run([sys.executable, str(root / "run_pages.py"), str(root / "pages.json")], cwd=root,
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=2400)
    return done.stdout + f"\n<<runner exit {done.returncode}>>\n"


@pytest.mark.timeout(2700)  # the first page's test waits for every page's run (the fixture)
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
def test_python_blocks_run(page, page_runs):
    start = page_runs.find(f"<<page {page.name} start>>")
    assert start >= 0, f"{page.name} never ran; the runner's output ends:\n{page_runs[-5000:]}"
    following = re.compile(r"<<page \S+ start>>").search(page_runs, start + 1)
    output = page_runs[start:following.start() if following else None]
    ran = re.findall(r"<<block (\S+) done>>", output)
    assert f"<<page {page.name} done>>" in output, (f"{page.name}: blocks done {ran}; the next one failed:\n"
                                                    f"{output[-6000:]}")


def test_bash_blocks_run(tmp_path):
    for page in PAGES:
        for lang, code, line in blocks(page):
            if lang != "bash":
                continue
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=tmp_path, env=_env(),
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{page.name}:{line}:\n{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _commands(code: str) -> list[list[str]]:
    """The block's command lines (continuations joined, comments dropped), as argument lists."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for raw in joined.splitlines():
        words = shlex.split(raw, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
            words = words[1:]
        if words:
            out.append(words)
    return out


def test_shell_blocks_are_valid_commands():
    from coevo_ray.cli import parse_args

    checked = 0
    for page in PAGES:
        for lang, code, line in blocks(page):
            if lang != "shell":
                continue
            where = f"{page.name}:{line}"
            syntax = subprocess.run(["bash", "-n", "-c", code], capture_output=True, text=True)
            assert syntax.returncode == 0, f"{where}: {syntax.stderr}"
            for words in _commands(code):
                if words[0] == "make":
                    targets = [w for w in words[1:] if "=" not in w]
                    dry = subprocess.run(["make", "-n", "-C", str(REPO), *targets], capture_output=True, text=True,
                                         env={**os.environ, "MAKEFLAGS": ""})
                    assert dry.returncode == 0, f"{where}: make {' '.join(targets)}: {dry.stderr}"
                if "--" in words:  # ray job submit ... -- python examples/cluster.py ...
                    words = words[words.index("--") + 1:]
                if words[0].endswith("coevo-ray"):
                    parse_args(words[1:])
                    checked += 1
                elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
                    assert (REPO / words[1]).is_file(), f"{where}: {words[1]} does not exist"
                    if words[1] == "examples/cluster.py":
                        parse_args(words[2:])
                        checked += 1
    assert checked >= 3  # the README's and the guide's CLI lines were found and parsed


def test_the_benchmark_provenance_table_is_up_to_date():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "provenance.py"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cpu_large_table_in_the_results_doc_is_the_result_files():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality_large.py"), "--check-docs"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
