"""Corpora as Ray Datasets: read, validated and numbered on the cluster, not in the driver.

Row ids are ``0..N-1`` in input order (files sorted by path, records in file order): the ids a
list of the same texts gets. They come from a first pass that counts each file's records in a
Ray task (the driver sees one integer per file); each file is then read by one Ray Data task
that starts at its offset, so ids need no pass through the driver and are the same on every
read. Split a large file into several to read it in parallel.

The corpus-wide checks (duplicates, truncation, all texts identical) run as one more pass on the
cluster: a Ray task counts the rows' 64-bit text hashes. Row problems (a text that is not a string, a
blank text, a missing label, malformed JSON) raise :class:`InputError` naming the file and line,
exactly as :func:`coevo_ray.data.load_corpus` does, before any model is loaded.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from coevo_ray.data.corpus import DEFAULT_MAX_TEXT_CHARS, corpus_stats
from coevo_ray.data.readers import check_records, count_records, file_format, iter_records, list_files, location
from coevo_ray.errors import InputError

logger = logging.getLogger(__name__)

#: Rows per block the file reader emits (a block is what one downstream batch task gets at most).
READ_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class CorpusDataset:
    """A validated corpus on the cluster: ``dataset`` has ``id`` (int64, 0..N-1 in input order),
    ``text`` (as the models see it: truncated to ``max_chars``) and ``label`` when labelled."""

    dataset: Any  # ray.data.Dataset
    source: str
    stats: dict[str, Any]
    labelled: bool

    def __len__(self) -> int:
        return int(self.stats["n_texts"])


def is_ray_dataset(obj: Any) -> bool:
    try:
        from ray.data import Dataset
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return isinstance(obj, Dataset)


def read_corpus_dataset(source: Any, text_field: str = "text", label_field: str | None = None,
                        max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> CorpusDataset:
    """Read ``source`` — a file, a directory, a glob (``data/*.jsonl``), a URI pyarrow reads
    (``s3://bucket/corpus/``), or a ``ray.data.Dataset`` with a ``text_field`` column — into a
    validated :class:`CorpusDataset`. A Dataset's own ``id`` column is kept (it must be unique
    integers); without one, rows are numbered in the Dataset's order, which materialises it in
    the object store once. Runs the check pass now; the returned dataset is lazy."""
    with input_errors():
        if is_ray_dataset(source):
            (raw, own_ids), name = _from_dataset(source, text_field, label_field), "<ray.data.Dataset>"
        elif isinstance(source, str) or hasattr(source, "__fspath__"):
            raw, name, own_ids = _from_files(str(source), text_field, label_field), str(source), False
        else:
            raise InputError(f"cannot read a corpus from {type(source).__name__}: give a path, a glob, a "
                             "directory, a URI or a ray.data.Dataset")
        stats = _check_pass(raw, max_chars, check_ids=own_ids)
    if stats["truncated"]:
        logger.warning("%d texts are longer than %d characters and are truncated for the models",
                       stats["truncated"], max_chars)
    dataset = raw.map_batches(_truncate, fn_kwargs={"max_chars": max_chars}, batch_format="numpy",
                              udf_modifying_row_count=False)
    return CorpusDataset(dataset, name, stats, label_field is not None)


def collect_corpus(corpus: CorpusDataset):
    """The corpus as an in-driver :class:`~coevo_ray.data.Corpus` in id order (model texts): what
    the co-evolution loop works on, which holds its texts in the driver."""
    import pyarrow as pa
    import ray

    from coevo_ray.data.corpus import Corpus

    table = pa.concat_tables(ray.get(corpus.dataset.to_arrow_refs())).sort_by("id")
    labels = table.column("label").to_pylist() if corpus.labelled else None
    return Corpus(table.column("text").to_pylist(), labels, corpus.source, corpus.stats)


def is_scale_input(source: Any) -> bool:
    """Inputs only the Ray Data reader takes: a Dataset, a directory, a glob or a URI."""
    if is_ray_dataset(source):
        return True
    if not isinstance(source, str) and not hasattr(source, "__fspath__"):
        return False
    text = str(source)
    if "\n" in text:
        return False
    import os

    return "://" in text or any(ch in text for ch in "*?[") or os.path.isdir(os.path.expanduser(text))


def source_key(source: str, text_field: str = "text", label_field: str | None = None) -> str:
    """A run-directory key for the files ``source`` names: their paths, sizes and modification
    times (read from the filesystem, not the contents), so changed files are read again."""
    from coevo_ray.data.readers import file_infos
    from coevo_ray.rundir import fingerprint

    return fingerprint("files", text_field, label_field, file_infos(source))


@contextmanager
def input_errors() -> Iterator[None]:
    """Re-raise an :class:`InputError` raised inside a Ray task or Ray Data operation as itself,
    without the remote traceback around it, so a user reads "line 12 of x.jsonl: ..."."""
    try:
        yield
    except InputError as exc:
        original = _input_error_in(exc)
        if original is exc:
            raise
        raise InputError(str(original)) from None
    except Exception as exc:
        original = _input_error_in(exc)
        if original is None:
            raise
        raise InputError(str(original)) from None


def _input_error_in(exc: BaseException | None) -> InputError | None:
    seen, top = set(), exc
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc) is InputError:
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    # Raised in a Ray Data worker under a Ray task (the check pass), the error reaches the driver
    # only as the text of a UserCodeException: take its message from there.
    found = _REMOTE_INPUT_ERROR.findall(str(top)) if top is not None else []
    return InputError(found[-1].strip()) if found else None


_REMOTE_INPUT_ERROR = re.compile(r"coevo_ray\.errors\.InputError: (.+)")


# ----------------------------------------------------------------------------- files
def _count_task(path: str, text_field: str) -> int:
    return count_records(path, text_field)


def _from_files(source: str, text_field: str, label_field: str | None):
    import ray

    files = list_files(source)
    counter = ray.remote(num_cpus=0.5)(_count_task)
    counts = ray.get([counter.remote(f, text_field) for f in files])
    if sum(counts) == 0:
        raise InputError(f"empty corpus: no texts in {source}")
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    work = [{"path": f, "first_id": int(o), "rows": int(c)} for f, o, c in zip(files, offsets, counts) if c]
    return ray.data.from_items(work, override_num_blocks=len(work)).map_batches(
        _read_files, batch_size=1, fn_kwargs={"text_field": text_field, "label_field": label_field})


def _read_files(batch: dict[str, np.ndarray], text_field: str, label_field: str | None):
    """Ray Data generator: the records of the batch's files as blocks of ``READ_CHUNK_ROWS``."""
    for path, first_id, rows in zip(batch["path"], batch["first_id"], batch["rows"]):
        path, fmt, done = str(path), file_format(str(path)), 0
        texts: list[Any] = []
        labels: list[Any] = []
        numbers: list[int] = []
        for number, text, label in iter_records(path, text_field, label_field):
            texts.append(text)
            labels.append(label)
            numbers.append(number)
            if len(texts) == READ_CHUNK_ROWS:
                yield _block(path, fmt, int(first_id) + done, texts, labels if label_field else None, numbers)
                done += len(texts)
                texts, labels, numbers = [], [], []
        if texts:
            yield _block(path, fmt, int(first_id) + done, texts, labels if label_field else None, numbers)
            done += len(texts)
        if done != rows:
            raise InputError(f"{path} changed while it was read: {rows} records counted, {done} read")


def _block(path: str, fmt: str, first_id: int, texts: list, labels: list | None, numbers: list[int]) -> dict:
    check_records(texts, labels, lambda i: location(fmt, numbers[i], path))
    out = {"id": np.arange(first_id, first_id + len(texts), dtype=np.int64), "text": np.array(texts, dtype=object)}
    if labels is not None:
        out["label"] = np.array([str(y) for y in labels], dtype=object)
    return out


# ----------------------------------------------------------------------------- a Ray Dataset
def _from_dataset(ds, text_field: str, label_field: str | None):
    """(the checked rows, whether the ids are the Dataset's own: those must be checked unique)."""
    import ray

    columns = ds.columns()
    for field, what in ((text_field, "text"), (label_field, "label")):
        if field is not None and field not in columns:
            raise InputError(f"the Dataset has no {what} column {field!r} (columns: {columns})")
    keep = {text_field: "text", **({label_field: "label"} if label_field else {})}
    if "id" in columns:
        keep["id"] = "id"
    ds = ds.select_columns(list(keep))
    renames = {k: v for k, v in keep.items() if k != v}
    if renames:
        ds = ds.rename_columns(renames)
    if "id" not in columns:  # number the rows in the Dataset's order: its blocks, then their rows
        from coevo_ray.runtime import in_input_order

        # In input order: blocks come back as their tasks finish otherwise, and a busy machine
        # numbered the rows in another order than the Dataset's.
        refs = in_input_order(ds).to_arrow_refs()
        counts = ray.get([ray.remote(num_cpus=0.5)(_num_rows).remote(r) for r in refs])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        numbered = ray.remote(num_cpus=0.5)(_with_ids)
        ds = ray.data.from_arrow_refs([numbered.remote(r, int(o)) for r, o in zip(refs, offsets)])
    checked = ds.map_batches(_check_dataset_block, fn_kwargs={"labelled": label_field is not None},
                             batch_format="numpy", udf_modifying_row_count=False)
    return checked, "id" in columns


def _num_rows(table) -> int:
    return table.num_rows


def _with_ids(table, first_id: int):
    import pyarrow as pa

    return table.append_column("id", pa.array(np.arange(first_id, first_id + table.num_rows, dtype=np.int64)))


def _check_dataset_block(batch: dict[str, np.ndarray], labelled: bool) -> dict[str, np.ndarray]:
    ids = batch["id"]
    if not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"the Dataset's id column must hold integers, got {ids.dtype}")
    texts = list(batch["text"])
    labels = list(batch["label"]) if labelled else None
    check_records(texts, labels, lambda i: f"row id {ids[i]} of the Dataset")
    batch["id"] = ids.astype(np.int64)
    if labelled:
        batch["label"] = np.array([str(y) for y in labels], dtype=object)
    return batch


# ----------------------------------------------------------------------------- corpus-wide checks
def _hash_rows(batch: dict[str, np.ndarray], max_chars: int) -> dict[str, np.ndarray]:
    import pandas as pd

    texts = batch["text"]
    return {"id": batch["id"], "hash": pd.util.hash_array(np.asarray(texts, dtype=object)),
            "long": np.fromiter((len(t) > max_chars for t in texts), dtype=np.int64, count=len(texts))}


def _count_rows(hashed, check_ids: bool) -> dict[str, int]:
    """Ray task: counts over the rows' hashes (8 bytes a row in this worker, none in the driver;
    one task is seconds where Ray Data's groupby and sum cost several each on a small corpus)."""
    hashes, ids, long = [], [], 0
    for batch in hashed.iter_batches(batch_format="numpy", batch_size=65536):
        hashes.append(batch["hash"])
        long += int(batch["long"].sum())
        if check_ids:
            ids.append(batch["id"])
    n = sum(len(h) for h in hashes)
    distinct = len(np.unique(np.concatenate(hashes))) if hashes else 0
    unique_ids = len(np.unique(np.concatenate(ids))) if ids else n
    return {"n": n, "distinct": distinct, "long": long, "unique_ids": unique_ids}


def _check_pass(raw, max_chars: int, check_ids: bool) -> dict[str, Any]:
    """One read of the corpus: row checks (in the readers), then corpus-wide counts in a task."""
    import ray

    hashed = raw.map_batches(_hash_rows, fn_kwargs={"max_chars": max_chars}, batch_format="numpy",
                             udf_modifying_row_count=False)
    counts = ray.get(ray.remote(num_cpus=0.5)(_count_rows).remote(hashed, check_ids))
    if counts["n"] == 0:
        raise InputError("empty corpus: no texts to cluster")
    if counts["unique_ids"] != counts["n"]:
        raise InputError("the Dataset's id column has duplicate values: ids must be unique")
    return corpus_stats(counts["n"], counts["long"], counts["distinct"])


def _truncate(batch: dict[str, np.ndarray], max_chars: int) -> dict[str, np.ndarray]:
    batch["text"] = np.array([t if len(t) <= max_chars else t[:max_chars] for t in batch["text"]], dtype=object)
    return batch


def read_input(texts: Any, labels: Any = None, text_field: str = "text", label_field: str | None = None,
               max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> tuple[CorpusDataset, str, bool]:
    """Any input the estimators take as a :class:`CorpusDataset`: (the dataset, a key for the run
    directory, whether the input was in memory). A file, directory, glob or URI is keyed by its
    files' names, sizes and times; in-memory texts by their contents; a Dataset by nothing stable
    (a random key: its stages are never reused)."""
    import uuid
    from pathlib import Path

    import ray

    from coevo_ray.data.corpus import Corpus, as_corpus
    from coevo_ray.rundir import fingerprint

    if is_ray_dataset(texts):
        return read_corpus_dataset(texts, text_field, label_field, max_chars), uuid.uuid4().hex, False
    if isinstance(texts, (str, Path)) and not (isinstance(texts, str) and "\n" in texts):
        corpus = read_corpus_dataset(texts, text_field, label_field, max_chars)
        return corpus, source_key(str(texts), text_field, label_field), False
    corpus = as_corpus(texts if isinstance(texts, Corpus) else list(texts), labels, max_chars)
    rows = [{"id": i, "text": t} for i, t in enumerate(corpus.model_texts(max_chars))]
    if corpus.labels is not None:
        rows = [{**row, "label": y} for row, y in zip(rows, corpus.labels)]
    dataset = ray.data.from_items(rows)
    return (CorpusDataset(dataset, corpus.source, corpus.stats, corpus.labels is not None),
            fingerprint("corpus", corpus.texts, corpus.labels), True)
