"""A folder of Parquet parts written by a Dask cluster, published atomically: the one owner of that layout.

Batch scoring (:mod:`fasttrack.batch.dask_score`) and cleaned data (:func:`save_parts`, ``fasttrack ingest
--engine dask --out``) write the same way. Each partition becomes ``part-NNNNN.parquet`` (numbered in input order,
so reading the parts in name order gives the rows in their order) in a hidden staging folder next to the output;
``_SUCCESS`` (JSON: rows, parts, and what the writer adds) is written last. On a local or shared file system the
finished folder is then renamed into place, so the output name only ever shows a complete result, and an earlier
output there is replaced only once the new one is complete. An object store has no rename: the parts are copied
under the output after its earlier ``_SUCCESS`` is deleted, and ``_SUCCESS`` lists them, so a reader that waits for
the marker and reads the parts it lists reads a complete result.

A part written again (a task retried after its worker died) replaces the first whole: locally through a file of its
own renamed over the part, on an object store by the upload that appears whole anyway.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from fasttrack.data import object_store
from fasttrack.data.sniff import is_url
from fasttrack.errors import ConfigError, DataError

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client

log = logging.getLogger(__name__)

#: The marker written last into a finished output folder.
SUCCESS = "_SUCCESS"


def part_name(number: int) -> str:
    """The file name of partition ``number``'s part."""
    return f"part-{number:05d}.parquet"


def is_local(fs: Any) -> bool:
    """Whether an fsspec file system is the local one (where a folder can be renamed into place)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"file", "local"} & set(protocols))


def filesystem(path: str) -> tuple[Any, str]:
    """The file system of a path or URL, with the object-store options FastTrack's readers use (read from the
    environment of the process calling: on a worker, the worker's credentials and endpoint)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **storage_options_for(path))
    return fs, str(root)


def storage_options_for(path: str) -> dict[str, Any]:
    """fsspec options for an object-store URL (:func:`fasttrack.data.object_store.storage_options`); ``{}`` for
    a local path."""
    if not object_store.is_object_store_url(path):
        return {}
    object_store.apply_network_defaults()
    return object_store.storage_options(path)


def write_part(staging: str, number: int, tables: Iterable[pa.Table]) -> int:
    """Write the tables (one schema) as part ``number`` of the staging folder; the rows written. No table, no part."""
    path = f"{staging.rstrip('/')}/{part_name(number)}"
    fs, root = filesystem(path)
    local = is_local(fs)
    writing = f"{root}.{uuid.uuid4().hex[:8]}.tmp" if local else root
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        with fs.open(writing, "wb") as handle:
            for table in tables:
                if writer is None:
                    writer = pq.ParquetWriter(handle, table.schema)
                writer.write_table(table)
                rows += table.num_rows
            if writer is not None:
                writer.close()
        if local:
            Path(writing).replace(root)
    finally:
        if local:
            Path(writing).unlink(missing_ok=True)
    return rows


def save_parts(
    frame: dd.DataFrame,
    output: str,
    *,
    what: str,
    marker: Mapping[str, Any] | None = None,
    client: Client | None = None,
) -> tuple[int, list[str]]:
    """Write a Dask DataFrame to the folder ``output`` as parts, atomically (see the module); the rows and the parts.

    ``what`` names the folder's content in errors (an existing folder that is not such an output is refused);
    ``marker`` adds to ``_SUCCESS``. Raises ``DataError`` when the frame has no rows.
    """
    from distributed import default_client

    client = client or default_client()  # type: ignore[no-untyped-call]
    target = PartsFolder(output, what=what)
    target.check_replaceable()
    staging = target.staging()
    target.fs.makedirs(staging, exist_ok=True)
    try:
        counts = frame.map_partitions(  # type: ignore[no-untyped-call]
            _save_partition, staging, meta={"partition": "int64", "rows": "int64"}, enforce_metadata=False
        ).compute()
        written = dict(zip(counts["partition"].tolist(), counts["rows"].tolist(), strict=True))
        rows = sum(written.values())
        if rows == 0:
            raise DataError(f"no rows to write to {output}")
        parts = [part_name(number) for number in sorted(written) if written[number]]
        content = {"rows": rows, "partitions": len(parts), "parts": parts, **(marker or {})}
        content["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        target.publish(staging, parts, json.dumps(content, indent=2).encode())
    finally:
        target.discard(staging)
    return rows, parts


def _save_partition(frame: pd.DataFrame, staging: str, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    import pandas as pd

    if partition_info is None:  # dask's meta inference: an empty frame and no partition
        return pd.DataFrame({"partition": pd.Series([], dtype="int64"), "rows": pd.Series([], dtype="int64")})
    number = int(partition_info["number"])
    tables = [pa.Table.from_pandas(frame, preserve_index=False)] if len(frame) else []
    return pd.DataFrame({"partition": [number], "rows": [write_part(staging, number, tables)]})


class PartsFolder:
    """An output folder of parts (a local path or a URL): where a run stages its parts, and how a finished run
    is published (``_SUCCESS`` last). ``what`` names what the folder holds in errors (``scoring output``)."""

    def __init__(self, output: str, *, what: str) -> None:
        self.output = output
        self.what = what
        self.fs, self.root = filesystem(output)
        self.root = self.root.rstrip("/")
        self.local = is_local(self.fs)
        self.parent, self.name = self.root.rsplit("/", 1) if "/" in self.root else ("", self.root)

    def url(self, root: str) -> str:
        """A path of this file system as workers are given it (with the URL's protocol)."""
        if self.local or not is_url(self.output):
            return root
        protocol = self.output.split("://", 1)[0]
        return f"{protocol}://{root}"

    def check_replaceable(self) -> None:
        """Refuse to overwrite anything but an earlier output of this kind (a folder with ``_SUCCESS``) or nothing."""
        self.fs.invalidate_cache()
        if not self.fs.exists(self.root):
            return
        if not self.fs.isdir(self.root):
            raise ConfigError(f"{self.output} exists and is a file: the Dask engine writes a folder")
        if self.fs.exists(f"{self.root}/{SUCCESS}") or not self.fs.ls(self.root):
            return
        raise ConfigError(f"{self.output} exists and is not a {self.what} (no {SUCCESS}): name a new folder")

    def staging(self) -> str:
        """A hidden folder next to the output for this run's parts (skipped by readers of the parent folder)."""
        hidden = f".{self.name}.{uuid.uuid4().hex[:12]}.tmp"
        return self.url(f"{self.parent}/{hidden}" if self.parent else hidden)

    def publish(self, staging: str, parts: list[str], marker: bytes) -> None:
        """Make the staged parts the output, ``_SUCCESS`` last."""
        _, staged = filesystem(staging)
        if self.local:
            with self.fs.open(f"{staged}/{SUCCESS}", "wb") as handle:
                handle.write(marker)
            previous = None
            if Path(self.root).exists():
                previous = f"{self.parent}/.{self.name}.{uuid.uuid4().hex[:12]}.old"
                Path(self.root).replace(previous)
            Path(staged).replace(self.root)
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
            return
        self.fs.invalidate_cache()  # the workers wrote the parts: this process' listings are stale
        if self.fs.exists(f"{self.root}/{SUCCESS}"):
            self.fs.rm(f"{self.root}/{SUCCESS}")
        old = []
        if self.fs.exists(self.root):
            old = [p for p in self.fs.find(self.root) if PurePosixPath(p).name not in parts]
        for part in parts:
            self.fs.copy(f"{staged}/{part}", f"{self.root}/{part}")
        if old:
            self.fs.rm(old)
        with self.fs.open(f"{self.root}/{SUCCESS}", "wb") as handle:
            handle.write(marker)

    def discard(self, staging: str) -> None:
        """Delete what is left of a run's staging folder (all of it after a failure; nothing after a local publish)."""
        _, staged = filesystem(staging)
        try:
            if self.local and Path(staged).exists():
                # Moved aside first: a cancelled task still running cannot finish a part in a folder it no longer
                # finds, so nothing reappears under the staging name once it is deleted.
                aside = Path(f"{staged}.discarded")
                Path(staged).replace(aside)
                shutil.rmtree(aside, ignore_errors=True)
            elif self.fs.exists(staged):
                self.fs.rm(staged, recursive=True)
        except OSError as exc:
            log.warning("could not delete the temporary folder %s: %s", staging, exc)
