"""Atomic writes: build in a temporary sibling, then rename, so a killed process never leaves a
file or directory that a later run would trust."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_dir(final: Path, build: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Run ``build(tmp)`` and rename ``tmp`` to ``final``."""
    final = Path(final)
    if final.exists() and not overwrite:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        if final.exists() and overwrite:
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():  # another process won the race when it exists
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
