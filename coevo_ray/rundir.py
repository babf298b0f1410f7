"""The run directory: one sub-directory per finished stage, named by a hash of everything the
stage depends on, so a rerun reads finished stages and a changed setting recomputes only what it
affects. Stages are written to a temporary sibling and renamed, so a killed stage is never
mistaken for a finished one.

``manifest.json`` at the root lists the finished stages (name, directory, key, seconds) and the
configuration that wrote them; a directory written by a different configuration is refused
unless the caller asks to resume it (then only the stages whose inputs changed run again)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from coevo_ray._atomic import atomic_dir, atomic_write_json
from coevo_ray.errors import RunDirectoryError

logger = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class RunDir:
    def __init__(self, root: str | os.PathLike | None) -> None:
        if root is None:
            # Nobody asked to keep this run: like ``TemporaryDirectory`` it goes with its owner
            # (the fitted model holds it) or at exit, instead of piling up in the temp folder.
            root = tempfile.mkdtemp(prefix="coevo-run-")
            weakref.finalize(self, shutil.rmtree, root, ignore_errors=True)
        self.root = Path(root).expanduser().resolve()
        self._check_writable()
        self.reused: list[str] = []
        self.ran: list[str] = []

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"runs": [], "stages": {}}
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise RunDirectoryError(f"{self.manifest_path} is unreadable ({exc}); move it away to start over") from None

    def open_run(self, config: dict[str, Any], resume: bool) -> None:
        """Refuse a directory holding another configuration's run unless ``resume``."""
        config = json.loads(json.dumps(config, default=str))  # as stored: tuples become lists
        manifest = self.manifest()
        key = fingerprint(config)
        previous = manifest["runs"][-1] if manifest["runs"] else None
        if previous and previous["config_key"] != key and not resume:
            changed = sorted(_changed_keys(previous.get("config", {}), config))
            raise RunDirectoryError(
                f"{self.root} holds a run written by a different configuration (changed: {', '.join(changed) or '?'}); "
                "pass resume=True (CLI: --resume) to reuse the stages that still apply, or choose a new output directory")
        manifest["runs"].append({"config_key": key, "config": config, "started_at": time.time()})
        self._save(manifest)
        self.reused, self.ran = [], []

    def _save(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

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
            logger.debug("stage %s: reusing %s", name, path.name)
            self.reused.append(name)
            return path, True
        twin = self._finished_with_key(key)
        if twin is not None:
            # The same work already done under another name (the baseline's embedding of the texts
            # is iteration 0's when the embedder was not trained): linked, not recomputed.
            logger.debug("stage %s: linking %s", name, twin.name)
            atomic_dir(path, lambda tmp: shutil.copytree(twin, tmp, dirs_exist_ok=True, copy_function=_link_or_copy))
            self.reused.append(name)
            manifest = self.manifest()
            manifest["stages"][path.name] = {"stage": name, "key": key, "seconds": 0.0, "finished_at": time.time(),
                                             "linked_from": twin.name}
            self._save(manifest)
            return path, True
        logger.debug("stage %s: running", name)
        start = time.perf_counter()
        atomic_dir(path, build)
        self.ran.append(name)
        manifest = self.manifest()
        manifest["stages"][path.name] = {"stage": name, "key": key, "seconds": round(time.perf_counter() - start, 2),
                                         "finished_at": time.time()}
        self._save(manifest)
        return path, False

    def _finished_with_key(self, key: str) -> Path | None:
        """A finished stage directory with this key under any name (keys hash the stage's kind
        and everything it depends on, so equal keys mean equal contents)."""
        for dirname, entry in sorted(self.manifest()["stages"].items()):
            path = self.root / "stages" / dirname
            if entry.get("key") == key and path.is_dir():
                return path
        return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copy2(src, dst)


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k in set(old) | set(new):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out |= _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.add(prefix + k)
    return out
