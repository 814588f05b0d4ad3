"""Telling what an input file is before reading it: its format from its name, binary content, CSV delimiters.

Shared by :mod:`fasttrack.data.ingest` (whole files into pandas) and :mod:`fasttrack.data.stream` (files in
batches, for scoring). Only the standard library is imported here, so that ``fasttrack predict`` opens a local
file without importing pandas or fsspec, which batch scoring never needs.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from fasttrack.errors import DataError

FORMATS = ("csv", "json", "jsonl", "parquet")
EXTENSIONS = {
    "csv": "csv",
    "tsv": "csv",
    "txt": "csv",
    "json": "json",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "parquet": "parquet",
    "pq": "parquet",
}
DELIMITERS = (",", ";", "\t", "|")
BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 64 * 1024
SNIFF_RECORDS = 20
# Leading bytes of binary formats people mistake for text, to say what a file really is.
MAGIC = {b"PAR1": "a Parquet file", b"\x1f\x8b": "gzip-compressed data", b"PK\x03\x04": "a zip archive"}


def is_url(name: str) -> bool:
    """Whether a source names a URL (``scheme://...``) rather than a local path."""
    return "://" in name


def _suffixes(name: str) -> list[str]:
    path = PurePosixPath(urlsplit(name).path) if is_url(name) else PurePosixPath(Path(name).name)
    return [s.lstrip(".").lower() for s in path.suffixes]


def stem_suffix(name: str) -> str | None:
    """The extension that names the format, skipping a ``.gz`` compression suffix."""
    suffixes = _suffixes(name)
    if suffixes and suffixes[-1] == "gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else None


def resolve_format(name: str, format: str | None) -> tuple[str, bool]:
    """The format (one of ``FORMATS``) named by ``format`` or else by the name's extension, and whether the
    content is gzip-compressed (a ``.gz`` suffix); ``DataError`` for an unknown one."""
    compressed = _suffixes(name)[-1:] == ["gz"]
    known = ", ".join(FORMATS)
    if format is not None:
        fmt = EXTENSIONS.get(format.lower().lstrip("."))
        if fmt is None:
            raise DataError(f"unknown format {format!r}; known formats: {known}")
        return fmt, compressed
    ext = stem_suffix(name)
    fmt = EXTENSIONS.get(ext or "")
    if fmt is None:
        what = f"extension '.{ext}'" if ext else "no extension"
        extensions = " ".join(f".{e}" for e in EXTENSIONS)
        raise DataError(
            f"cannot tell the format of {name} ({what}); known formats: {known} ({extensions}, optionally .gz)"
        )
    return fmt, compressed


def local_file(name: str) -> Path:
    """The local file a source names, refusing a missing path or a folder with one clear line."""
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"file not found: {name}")
    if path.is_dir():
        raise DataError(f"{name} is a folder, not a file")
    return path


def binary_kind(data: bytes) -> str | None:
    """What binary content is, when it is not text: a known format's name, or ``binary data``."""
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return kind
    return "binary data" if b"\x00" in data[:SNIFF_BYTES] else None


def first_line(exc: Exception) -> str:
    """An exception's message, first line only (its type's name when it has none)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def sniff_delimiter(sample: str, truncated: bool) -> str:
    """The candidate delimiter that splits the first records into the most, equally many, fields."""
    best, best_score = ",", (False, 1)
    for candidate in DELIMITERS:
        records = list(csv.reader(sample.splitlines()[: SNIFF_RECORDS + 1], delimiter=candidate))
        if truncated and len(records) > 1:
            records = records[:-1]
        widths = [len(r) for r in records if r]
        if not widths or widths[0] < 2:
            continue
        score = (all(w == widths[0] for w in widths), widths[0])
        if score > best_score:
            best, best_score = candidate, score
    return best


def is_number(text: str) -> bool:
    """Whether text parses as a float (a header made of such is data, not column names)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
