"""How large a model directory's model is, read from its safetensors headers and ``config.json``
(no weights loaded): what the hardware plan sizes training workers from."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSize:
    parameters: int  # 0: not known
    layers: int = 0  # transformer blocks (``num_hidden_layers``); 0: not known
    hidden: int = 0  # width of the hidden states (``hidden_size``)

    @classmethod
    def of(cls, model_dir: str | os.PathLike) -> "ModelSize":
        config = Path(model_dir) / "config.json"
        fields = json.loads(config.read_text()) if config.exists() else {}
        fields = fields.get("text_config", fields)  # multimodal configs nest the text model's
        return cls(parameter_count(model_dir), int(fields.get("num_hidden_layers", 0)), int(fields.get("hidden_size", 0)))


def parameter_count(model_dir: str | os.PathLike) -> int:
    """Parameters in every ``*.safetensors`` file under ``model_dir`` (a sentence-transformers
    directory keeps its Dense heads in subfolders); 0 — not known — when there is none (e.g.
    ``.bin`` weights) or one is unreadable (loading the model is where that is reported)."""
    from safetensors import SafetensorError, safe_open

    total = 0
    for path in sorted(Path(model_dir).rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="numpy") as f:
                total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
        except (SafetensorError, OSError):
            return 0
    return total
