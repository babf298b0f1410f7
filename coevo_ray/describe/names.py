"""Cluster names written by the LLM: one request per cluster (its keywords and a few member
texts), sent through the same Ray Data generation stage as the interpretations."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from coevo_ray.interpret.prompts import NAMING_EXAMPLE


def naming_requests(texts: Sequence[str], labels: np.ndarray, keywords: Sequence[Sequence[str]],
                    centers_distance: np.ndarray | None = None, examples: int = 4) -> list[str]:
    """The user-turn content for each cluster: its keywords and the texts nearest its centre."""
    requests = []
    for c, kws in enumerate(keywords):
        members = np.flatnonzero(labels == c)
        if centers_distance is not None and len(members):
            members = members[np.argsort(centers_distance[members], kind="stable")]
        shown = "\n".join(f"- {' '.join(texts[i].split())[:160]}" for i in members[:examples])
        requests.append(f"Keywords: {', '.join(kws) or '(none)'}\nTexts:\n{shown or '- (empty cluster)'}")
    return requests


def clean_name(raw: str, keywords: Sequence[str]) -> str:
    """First line of the answer without a ``Name:`` prefix or quotes; keywords when it is empty."""
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
    line = re.sub(r"^(cluster\s+)?name\s*:\s*", "", line, flags=re.I).strip(" \"'*.#")
    words = line.split()
    # A small model may copy the worked example's answer instead of naming this cluster.
    if not words or line.lower() == NAMING_EXAMPLE[1].lower():
        return ", ".join(keywords[:3]) or "(unnamed)"
    return " ".join(words[:6])
