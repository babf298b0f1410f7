"""Cluster names written by the LLM: one request per cluster (its keywords and a few member
texts), sent through the same Ray Data generation stage as the interpretations. An answer that is
not a short phrase of its own falls back to the cluster's top two keywords joined as a phrase."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from coevo_ray.describe.keywords import distinct_keywords, word_stem
from coevo_ray.interpret.parsing import STOPWORDS
from coevo_ray.interpret.prompts import NAMING_EXAMPLE

MAX_NAME_WORDS = 6


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


def keyword_name(keywords: Sequence[str]) -> str:
    """The fallback name: the top two keywords of different stems, as a phrase ("Refund and return")."""
    top = distinct_keywords(keywords)[:2]
    if not top:
        return "(unnamed)"
    name = " and ".join(top)
    return name[0].upper() + name[1:]


def _stems(s: str) -> list[str]:
    """Stems of the content words (function words like "and" repeat and recur legitimately)."""
    return [word_stem(w) for w in re.findall(r"[A-Za-z0-9]+", s) if len(w) > 2 and w.lower() not in STOPWORDS]


def name_problem(name: str, context: str, truncated: bool = False) -> str | None:
    """Why an LLM answer is not a usable name, or None. ``context`` is what the model was shown
    for this cluster (keywords and texts): a word of the prompt's worked example that is not in it
    was copied from the example."""
    if not name:
        return "empty"
    if truncated:
        return "cut by max_tokens"
    if name.lower() == NAMING_EXAMPLE[1].lower():
        return "the worked example's answer"
    if name.count(",") >= 2:
        return "a list, not a phrase"
    stems = _stems(name)
    if len(stems) != len(set(stems)):
        return "a repeated word"
    if len(name.split()) > MAX_NAME_WORDS:
        return "too long"
    example = set(_stems(" ".join(NAMING_EXAMPLE))) - set(_stems(context))
    if example & set(stems):
        return "words of the worked example"
    return None


def clean_name(raw: str, keywords: Sequence[str], context: str = "", truncated: bool = False) -> str:
    """First line of the answer without a ``Name:`` prefix or quotes, or :func:`keyword_name`
    when that line is no name of its own (see :func:`name_problem`)."""
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
    line = re.sub(r"^(cluster\s+)?name\s*:\s*", "", line, flags=re.I).strip(" \"'*.#")
    if name_problem(line, context or ", ".join(keywords), truncated):
        return keyword_name(keywords)
    return line
