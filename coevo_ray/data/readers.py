"""Record readers for corpus files, shared by the in-driver ``load_corpus`` and the Ray Data
reader: one generator per format yielding ``(line, text, label)``, with every problem named by
file and line. Files are opened through ``pyarrow.fs``, so a path, a shared mount or any URI
pyarrow knows (``file://``, ``s3://``, ``gs://``, ``hdfs://``) reads the same way.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
from typing import Any, Iterator, Sequence

from coevo_ray.errors import InputError

#: File suffix → format. Plain text is one text per non-blank line.
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "text", "": "text"}
Record = tuple[int, Any, Any]  # (line or row number, text, label)


def _filesystem(path: str):
    import pyarrow.fs as pafs

    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as exc:  # pyarrow raises several types for unknown schemes and credentials
            raise InputError(f"cannot open {path}: {exc}") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))  # workers have other cwds


def file_format(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[1].lower() if "." in name else ""
    if suffix not in FORMATS:
        raise InputError(f"unsupported input format {suffix!r} for {path}: use .jsonl, .csv, .parquet or .txt")
    return FORMATS[suffix]


def list_files(source: str) -> list[str]:
    """The files ``source`` names: one file, every supported file under a directory (recursive,
    hidden files skipped), or a glob pattern on its last parts; sorted, so row ids are stable."""
    return [path for path, _, _ in file_infos(source)]


def file_infos(source: str) -> list[tuple[str, int, int]]:
    """``(path, size, mtime in ns)`` of the files :func:`list_files` names."""
    import pyarrow.fs as pafs

    fs, path = _filesystem(str(source))
    scheme = str(source)[: str(source).index("://") + 3] if "://" in str(source) else ""
    if any(ch in path for ch in "*?["):
        root = path[: min(path.index(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0] or "/"
        # fnmatch's "*" crosses "/": keep the pattern's depth unless it asks for "**".
        infos = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
                 if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, path)
                 and ("**" in path or i.path.count("/") == path.count("/"))]
        what = "pattern"
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"input not found: {source}")
        if info.type == pafs.FileType.File:
            return [(scheme + path, info.size, info.mtime_ns or 0)]
        # A directory: its readable files (Ray Data and Spark leave _SUCCESS and dot files).
        infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                 if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))
                 and "." + i.extension.lower() in FORMATS and i.extension]
        what = "directory"
    files = sorted((scheme + i.path, i.size, i.mtime_ns or 0) for i in infos)
    if not files:
        raise InputError(f"no input files in {what} {source} (readable: .jsonl, .csv, .parquet, .txt)")
    formats = {file_format(f) for f, _, _ in files}
    if len(formats) > 1:
        raise InputError(f"{source} mixes input formats ({', '.join(sorted(formats))}); give one format")
    return files


def location(fmt: str, number: int, path: str) -> str:
    """How a message names a record: "line 12 of x.jsonl", "row 3 of x.parquet"."""
    return f"{'row' if fmt == 'parquet' else 'line'} {number} of {path.rsplit('/', 1)[-1]}"


def iter_records(path: str, text_field: str = "text", label_field: str | None = None) -> Iterator[Record]:
    """``(line, text, label)`` for every record of one file (label None without ``label_field``);
    blank lines of JSON Lines and text files are skipped."""
    fmt = file_format(path)
    if fmt == "parquet":
        yield from _parquet_records(path, text_field, label_field)
        return
    fs, inner = _filesystem(path)
    try:
        stream = io.BufferedReader(fs.open_input_stream(inner))
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    with stream:
        lines = _decoded_lines(stream, path)
        if fmt == "jsonl":
            yield from _jsonl_records(lines, path, text_field, label_field)
        elif fmt == "csv":
            yield from _csv_records(lines, path, text_field, label_field)
        else:
            yield from ((n, line, None) for n, line in lines if line.strip())


def _decoded_lines(stream, path: str) -> Iterator[tuple[int, str]]:
    for lineno, raw in enumerate(stream, start=1):
        try:
            yield lineno, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path} is not UTF-8: undecodable byte on line {lineno} (position {exc.start})") from None


def _field(obj: dict, lineno: int, path: str, text_field: str, label_field: str | None) -> Record:
    if text_field not in obj:
        raise InputError(f"line {lineno} of {path} has no text field {text_field!r} (fields: {sorted(obj)[:10]})")
    if label_field is not None and label_field not in obj:
        raise InputError(f"line {lineno} of {path} has no label field {label_field!r}")
    return lineno, obj[text_field], obj[label_field] if label_field is not None else None


def _jsonl_records(lines, path, text_field, label_field) -> Iterator[Record]:
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON on line {lineno} of {path}: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"line {lineno} of {path} is a JSON {type(obj).__name__}, expected an object")
        yield _field(obj, lineno, path, text_field, label_field)


def _csv_records(lines, path, text_field, label_field) -> Iterator[Record]:
    reader = csv.DictReader(line for _, line in lines)
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        raise InputError(f"{path} has no column {text_field!r} (columns: {reader.fieldnames})")
    for row in reader:
        yield _field(row, reader.line_num, path, text_field, label_field)


def _parquet_records(path, text_field, label_field) -> Iterator[Record]:
    import pyarrow.parquet as pq

    fs, inner = _filesystem(path)
    try:
        pfile = pq.ParquetFile(fs.open_input_file(inner))
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"cannot read Parquet file {path}: {exc}") from None
    names = pfile.schema_arrow.names
    if text_field not in names:
        raise InputError(f"{path} has no column {text_field!r} (columns: {names})")
    if label_field is not None and label_field not in names:
        raise InputError(f"{path} has no label column {label_field!r}")
    columns = [text_field] + ([label_field] if label_field else [])
    row = 0
    for batch in pfile.iter_batches(columns=columns):
        texts = batch.column(0).to_pylist()
        labels = batch.column(1).to_pylist() if label_field else [None] * len(texts)
        for text, label in zip(texts, labels):
            yield row, text, label
            row += 1


def count_records(path: str, text_field: str = "text") -> int:
    """Records in one file without building them: Parquet from its metadata, JSON Lines and text
    files by non-blank lines, CSV by parsing (a quoted field may span lines)."""
    fmt = file_format(path)
    if fmt == "csv":
        return sum(1 for _ in iter_records(path, text_field))
    fs, inner = _filesystem(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(fs.open_input_file(inner)).metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise InputError(f"cannot read Parquet file {path}: {exc}") from None
    try:
        stream = io.BufferedReader(fs.open_input_stream(inner), buffer_size=1 << 20)
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    with stream:
        return sum(1 for raw in stream if raw.strip())


def describe_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{type(value).__name__} {value!r:.40}"


def check_records(texts: Sequence[Any], labels: Sequence[Any] | None, where) -> None:
    """Raise :class:`InputError` naming the rows whose text is not a non-blank string or whose
    label is missing; ``where(i)`` names row ``i``."""
    bad_type = [(i, t) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad_type:
        shown = "; ".join(f"{where(i)}: {describe_value(t)}" for i, t in bad_type[:5])
        more = f" (and {len(bad_type) - 5} more)" if len(bad_type) > 5 else ""
        raise InputError(f"{len(bad_type)} texts are not strings: {shown}{more}")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        shown = ", ".join(where(i) for i in blank[:5])
        more = f" (and {len(blank) - 5} more)" if len(blank) > 5 else ""
        raise InputError(f"{len(blank)} texts are empty or whitespace only: {shown}{more}")
    if labels is not None:
        missing = [i for i, y in enumerate(labels) if y is None or (isinstance(y, float) and math.isnan(y))]
        if missing:
            raise InputError(f"{len(missing)} labels are missing, first at {where(missing[0])}")
