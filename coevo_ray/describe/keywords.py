"""Top keywords per cluster from the interpretations' keyword lists.

Class-TF-IDF as in BERTopic (written here because it is ten lines over keyword lists, not
documents): tf(w, c) = count of w in cluster c, normalised by the cluster's keyword count;
idf(w) = log(1 + A / f(w)) with A the mean keyword count per cluster and f(w) the count of w
over all clusters. Keywords are lower-cased and de-duplicated per text first; English stop words
and the filler small LLMs put in keyword lists ("specifically", "involves", ...) are dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np


FILLER = frozenset({"specifically", "involves", "involving", "related", "text", "user", "request", "asking",
                    "refers", "mentioned", "reasoning", "keywords", "information", "specific", "question"})


# Suffixes folded together when comparing keywords ("refund", "refunds", "refundable").
# A hand-written stemmer: a few suffixes are all a keyword list needs, no NLP package for it.
_SUFFIXES = ("ability", "able", "ation", "ings", "ing", "ed", "es", "s")


def word_stem(word: str) -> str:
    w = word.lower()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 4 and not w.endswith("ss"):
            return w[: -len(suffix)]
    return w


def distinct_keywords(keywords: Sequence[str]) -> list[str]:
    """Keywords in order, without those whose word stems a previous keyword already has
    ("refunds" after "refund", "card" after "credit card")."""
    seen: set[str] = set()
    out = []
    for kw in keywords:
        stems = {word_stem(w) for w in re.findall(r"[A-Za-z0-9]+", kw)}
        if stems and not stems <= seen:
            out.append(kw)
            seen |= stems
    return out


def cluster_keywords(keywords: Sequence[Sequence[str]], labels: Sequence[int], n_clusters: int,
                     top: int = 8) -> list[list[str]]:
    """``top`` keywords for each cluster id 0..n_clusters-1 (an empty list for an empty cluster)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    drop = FILLER | ENGLISH_STOP_WORDS
    per_cluster = [Counter() for _ in range(n_clusters)]
    for kws, c in zip(keywords, labels):
        words = (k.strip().lower() for k in kws if k and k.strip())
        per_cluster[int(c)].update(list(dict.fromkeys(w for w in words if w not in drop)))
    total = Counter()
    for counts in per_cluster:
        total.update(counts)
    if not total:
        return [[] for _ in range(n_clusters)]
    mean_count = np.mean([sum(c.values()) for c in per_cluster])
    out = []
    for counts in per_cluster:
        size = sum(counts.values())
        scored = [(counts[w] / size * np.log(1 + mean_count / total[w]), w) for w in counts] if size else []
        out.append(distinct_keywords([w for _, w in sorted(scored, key=lambda s: (-s[0], s[1]))])[:top])
    return out


def text_keywords(text: str) -> list[str]:
    """A text's own words as a keyword list (lower-cased, three letters or more, first occurrence
    order), for clusterings without LLM interpretations (``EmbeddingKMeans``)."""
    return list(dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9'-]{2,}", text)))
