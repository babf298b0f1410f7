"""A validated corpus with stable row ids, and the readers that build one.

Every problem is reported with the row (or file line) it sits on, so a user with 100k rows can
find it; nothing is silently dropped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

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


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{type(value).__name__} {value!r:.40}"


def validate_texts(
    texts: Sequence[Any],
    labels: Sequence[Any] | None = None,
    max_chars: int = DEFAULT_MAX_TEXT_CHARS,
    where: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Raise :class:`InputError` naming the bad rows; return counts of what was tolerated.

    ``where`` gives, per row, how to name it in messages (e.g. "line 12 of x.jsonl").
    """
    name = (lambda i: where[i]) if where is not None else (lambda i: f"row {i}")
    if texts is None or len(texts) == 0:
        raise InputError("empty corpus: no texts to cluster")
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a sequence of strings, not a single string")
    bad_type = [(i, t) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad_type:
        shown = "; ".join(f"{name(i)}: {_describe(t)}" for i, t in bad_type[:5])
        more = f" (and {len(bad_type) - 5} more)" if len(bad_type) > 5 else ""
        raise InputError(f"{len(bad_type)} texts are not strings: {shown}{more}")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        shown = ", ".join(name(i) for i in blank[:5])
        more = f" (and {len(blank) - 5} more)" if len(blank) > 5 else ""
        raise InputError(f"{len(blank)} texts are empty or whitespace only: {shown}{more}")
    if len(texts) < 2:
        raise InputError(f"a corpus of {len(texts)} text cannot be clustered: need at least 2")
    if labels is not None:
        if len(labels) != len(texts):
            raise InputError(f"labels of the wrong length: {len(labels)} labels for {len(texts)} texts")
        missing = [i for i, y in enumerate(labels) if y is None or (isinstance(y, float) and math.isnan(y))]
        if missing:
            raise InputError(f"{len(missing)} labels are missing, first at {name(missing[0])}")
    long_rows = [i for i, t in enumerate(texts) if len(t) > max_chars]
    if long_rows:
        logger.warning(
            "%d texts are longer than %d characters and are truncated for the models (first: %s, %d chars)",
            len(long_rows), max_chars, name(long_rows[0]), len(texts[long_rows[0]]),
        )
    counts = Counter(texts)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    if duplicates:
        logger.warning("%d duplicate texts (kept; each row is clustered)", duplicates)
    if len(counts) == 1:
        raise InputError(f"all {len(texts)} texts are identical: there is nothing to cluster")
    return {"n_texts": len(texts), "truncated": len(long_rows), "duplicates": duplicates,
            "distinct": len(counts)}


def _read_jsonl(path: Path, text_field: str, label_field: str | None):
    texts, labels, where = [], [], []
    with _Utf8Reader(path) as fh:
        for lineno, line in _lines(fh, path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON on line {lineno} of {path}: {exc.msg} (column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"line {lineno} of {path} is a JSON {type(obj).__name__}, expected an object")
            _take(obj, lineno, path, text_field, label_field, texts, labels)
            where.append(f"line {lineno} of {path.name}")
    return texts, labels, where


def _take(obj, lineno, path, text_field, label_field, texts, labels):
    if text_field not in obj:
        raise InputError(
            f"line {lineno} of {path} has no text field {text_field!r} (fields: {sorted(obj)[:10]})"
        )
    texts.append(obj[text_field])
    if label_field is not None:
        if label_field not in obj:
            raise InputError(f"line {lineno} of {path} has no label field {label_field!r}")
        labels.append(obj[label_field])


class _Utf8Reader:
    """Opens a file as UTF-8 and turns a decode failure into an error with the line number."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            self.fh = open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror}") from None
        return self.fh

    def __exit__(self, *exc):
        self.fh.close()


def _lines(fh, path: Path) -> Iterable[tuple[int, str]]:
    for lineno, raw in enumerate(fh, start=1):
        try:
            yield lineno, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path} is not UTF-8: undecodable byte on line {lineno} (position {exc.start})") from None


def _read_txt(path: Path):
    texts, where = [], []
    with _Utf8Reader(path) as fh:
        for lineno, line in _lines(fh, path):
            if line.strip():
                texts.append(line)
                where.append(f"line {lineno} of {path.name}")
    return texts, [], where


def _read_csv(path: Path, text_field: str, label_field: str | None):
    texts, labels, where = [], [], []
    with _Utf8Reader(path) as fh:
        decoded = (line for _, line in _lines(fh, path))
        reader = csv.DictReader(decoded)
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            raise InputError(f"{path} has no column {text_field!r} (columns: {reader.fieldnames})")
        for row in reader:
            lineno = reader.line_num
            _take(row, lineno, path, text_field, label_field, texts, labels)
            where.append(f"line {lineno} of {path.name}")
    return texts, labels, where


def _read_parquet(path: Path, text_field: str, label_field: str | None):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"cannot read Parquet file {path}: {exc}") from None
    if text_field not in table.column_names:
        raise InputError(f"{path} has no column {text_field!r} (columns: {table.column_names})")
    if label_field is not None and label_field not in table.column_names:
        raise InputError(f"{path} has no label column {label_field!r}")
    texts = table.column(text_field).to_pylist()
    labels = table.column(label_field).to_pylist() if label_field else []
    return texts, labels, [f"row {i} of {path.name}" for i in range(len(texts))]


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
            raise InputError(f"input is a directory, expected a file: {path}")
        suffix = path.suffix.lower()
        readers = {".jsonl": _read_jsonl, ".json": _read_jsonl, ".csv": _read_csv,
                   ".parquet": _read_parquet}
        if suffix in readers:
            texts, file_labels, where = readers[suffix](path, text_field, label_field)
        elif suffix in (".txt", ""):
            texts, file_labels, where = _read_txt(path)
        else:
            raise InputError(f"unsupported input format {suffix!r} for {path}: use .jsonl, .csv, .parquet or .txt")
        if labels is None and label_field is not None:
            labels = file_labels
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
