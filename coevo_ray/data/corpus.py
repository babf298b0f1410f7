"""A validated corpus with stable row ids, and the readers that build one.

Every problem is reported with the row (or file line) it sits on, so a user with 100k rows can
find it; nothing is silently dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from coevo_ray.data.readers import check_records, file_format, iter_records, location
from coevo_ray.errors import InputError

logger = logging.getLogger(__name__)

#: Characters of a text handed to the models; longer texts are truncated (with a warning).
DEFAULT_MAX_TEXT_CHARS = 2000


@dataclass
class Corpus:
    """Texts (as given), optional labels, and row ids ``0..n-1`` in input order."""

    texts: list[str]
    labels: list[str] | None = None
    source: str = "<memory>"
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return list(range(len(self.texts)))

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_classes(self) -> int | None:
        return None if self.labels is None else len(set(self.labels))

    def sample(self, n: int, seed: int = 0) -> "Corpus":
        """A seeded random subset of ``n`` texts (with their labels), in input order."""
        if n < 1:
            raise InputError(f"sample size must be >= 1, got {n}")
        if n >= len(self):
            return self
        import numpy as np

        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        labels = None if self.labels is None else [self.labels[i] for i in keep]
        return Corpus([self.texts[i] for i in keep], labels, f"{self.source} (sample of {n}, seed {seed})",
                      {**self.stats, "sampled_from": len(self)})

    def model_texts(self, max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> list[str]:
        """Texts as the models see them: truncated to ``max_chars``."""
        return [t if len(t) <= max_chars else t[:max_chars] for t in self.texts]

    def to_ray_dataset(self, max_chars: int = DEFAULT_MAX_TEXT_CHARS):
        """A Ray Dataset with columns ``id`` (stable row id) and ``text`` (model text)."""
        import ray

        return ray.data.from_items(
            [{"id": i, "text": t} for i, t in enumerate(self.model_texts(max_chars))]
        )


def validate_texts(
    texts: Sequence[Any],
    labels: Sequence[Any] | None = None,
    max_chars: int = DEFAULT_MAX_TEXT_CHARS,
    where: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Raise :class:`InputError` naming the bad rows; return counts of what was tolerated.

    ``where`` gives, per row, how to name it in messages (e.g. "line 12 of x.jsonl").
    """
    if texts is None or len(texts) == 0:
        raise InputError("empty corpus: no texts to cluster")
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a sequence of strings, not a single string")
    if labels is not None and len(labels) != len(texts):
        raise InputError(f"labels of the wrong length: {len(labels)} labels for {len(texts)} texts")
    check_records(texts, labels, (lambda i: where[i]) if where is not None else (lambda i: f"row {i}"))
    long_rows = [i for i, t in enumerate(texts) if len(t) > max_chars]
    if long_rows:
        logger.warning("%d texts are longer than %d characters and are truncated for the models (first: %s, %d chars)",
                       len(long_rows), max_chars, where[long_rows[0]] if where else f"row {long_rows[0]}",
                       len(texts[long_rows[0]]))
    counts = Counter(texts)
    return corpus_stats(len(texts), len(long_rows), len(counts))


def corpus_stats(n_texts: int, truncated: int, distinct: int) -> dict[str, Any]:
    """The corpus-wide checks (shared with the Ray Data reader, which counts on the cluster)."""
    if n_texts < 2:
        raise InputError(f"a corpus of {n_texts} text cannot be clustered: need at least 2")
    if distinct == 1:
        raise InputError(f"all {n_texts} texts are identical: there is nothing to cluster")
    duplicates = n_texts - distinct
    if duplicates:
        logger.warning("%d duplicate texts (kept; each row is clustered)", duplicates)
    return {"n_texts": n_texts, "truncated": truncated, "duplicates": duplicates, "distinct": distinct}


def load_corpus(
    source: str | Path | Sequence[str],
    labels: Sequence[Any] | None = None,
    text_field: str = "text",
    label_field: str | None = None,
    max_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> Corpus:
    """Load and validate a corpus from a file (by extension) or an in-memory sequence."""
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and "\n" in source):
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"input file not found: {path}")
        if path.is_dir():
            raise InputError(f"input is a directory, expected a file: {path} (CoEvolver.fit and "
                             "read_corpus_dataset read directories and globs through Ray Data)")
        fmt = file_format(str(path))
        records = list(iter_records(str(path), text_field, label_field))
        texts = [text for _, text, _ in records]
        where = [location(fmt, n, str(path)) for n, _, _ in records]
        if labels is None and label_field is not None:
            labels = [label for _, _, label in records]
        stats = validate_texts(texts, labels, max_chars, where)
        return Corpus(list(texts), None if labels is None else [str(y) for y in labels], str(path), stats)
    texts = list(source) if not isinstance(source, (str, bytes)) else source
    stats = validate_texts(texts, labels, max_chars)
    return Corpus(list(texts), None if labels is None else [str(y) for y in labels], "<memory>", stats)


def as_corpus(texts: Corpus | Sequence[str], labels: Sequence[Any] | None = None,
              max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> Corpus:
    """What ``fit``/``predict`` take: a loaded ``Corpus`` as it is (``labels`` added when it has
    none), anything else through :func:`load_corpus`."""
    if not isinstance(texts, Corpus):
        return load_corpus(texts, labels=labels, max_chars=max_chars)
    if labels is not None and texts.labels is None:
        return load_corpus(texts.texts, labels=labels, max_chars=max_chars)
    return texts


def load_demo() -> tuple[list[str], list[str]]:
    """The bundled demo corpus: 240 customer-support requests and their 10 intent labels (the
    corpus ``make demo`` and ``coevo-ray`` without ``--input`` cluster)."""
    from importlib import resources

    corpus = load_corpus(str(resources.files("coevo_ray") / "demo" / "support_requests.jsonl"), label_field="label")
    return corpus.texts, list(corpus.labels or [])
