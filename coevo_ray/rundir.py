"""The run directory: one sub-directory per finished stage, named by a hash of everything the
stage depends on, so a rerun reads finished stages and a changed setting recomputes only what it
affects. Stages are written to a temporary sibling and renamed, so a killed stage is never
mistaken for a finished one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from coevo_ray._atomic import atomic_dir
from coevo_ray.errors import RunDirectoryError

logger = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class RunDir:
    def __init__(self, root: str | os.PathLike | None) -> None:
        if root is None:
            root = tempfile.mkdtemp(prefix="coevo-run-")
        self.root = Path(root).expanduser().resolve()
        self._check_writable()

    def _check_writable(self) -> None:
        """Fail before any expensive stage if results could not be saved."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-", delete=True)
            probe.write(b"x" * 4096)
            probe.flush()
            probe.close()
        except OSError as exc:
            raise RunDirectoryError(f"output directory {self.root} is not writable: {exc.strerror or exc}") from None

    def stage_path(self, name: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
        return self.root / "stages" / f"{safe}-{key}"

    def run_stage(self, name: str, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return (path, reused). ``build(tmp)`` writes the stage's files into ``tmp``."""
        path = self.stage_path(name, key)
        if path.exists():
            logger.info("stage %s: reusing %s", name, path.name)
            return path, True
        logger.info("stage %s: running", name)
        atomic_dir(path, build)
        return path, False
