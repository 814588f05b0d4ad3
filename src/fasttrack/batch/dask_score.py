"""Batch scoring on a Dask cluster: a data set larger than one machine in, partitioned Parquet with predictions out.

:func:`score_dataset` reads the input with :func:`fasttrack.data.dask_read.read_dask` and scores every partition
with ``map_partitions`` through the same model runtime (:func:`fasttrack.runtime.select.open_runtime`), feature
contract (:class:`~fasttrack.features.arrow.ArrowDriver`) and output table as single-machine scoring
(:func:`fasttrack.batch.score.score_file`), so both give the same predictions row for row.

Workers may run on other machines, so nothing they need is a path of the client's: the model folder's files travel
as bytes, scattered once to every worker, and each worker process opens the runtime once (cached by the files'
digest), never once per partition. Each partition is written as one part of an atomic parts folder
(:mod:`fasttrack.data.parts`: parts in input order, ``_SUCCESS`` last, renamed into place where the file system
can), and the task returns only its row count. A task whose worker dies is run again by Dask on another worker and
rewrites the same part whole, so a lost worker neither loses nor duplicates rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fasttrack.batch.score import _BatchModel, _output_table
from fasttrack.config import Engine
from fasttrack.data import object_store
from fasttrack.data.parts import PartsFolder, filesystem, part_name, storage_options_for, write_part
from fasttrack.data.sniff import first_line, is_url
from fasttrack.data.stream import DEFAULT_BATCH_ROWS, _stripped_names
from fasttrack.errors import ClusterError, ConfigError, DataError, FastTrackError
from fasttrack.features.arrow import ArrowDriver

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from fasttrack.registry.model_folder import LoadedModel

log = logging.getLogger(__name__)

#: Rows scored at a time inside a partition: the single-machine batch size, so memory per task stays bounded.
SLICE_ROWS = DEFAULT_BATCH_ROWS
#: Output names that say a format other than a folder of Parquet parts.
_FILE_SUFFIXES = (".csv", ".json", ".jsonl", ".ndjson", ".tsv", ".gz")

#: Called with (partitions done, partitions in all) as partitions finish.
PartitionProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class DaskScoreSummary:
    """What :func:`score_dataset` did: rows and partitions scored, the runtime used, where the output is, the
    wall time and the workers the cluster had when scoring started."""

    rows: int
    partitions: int
    engine: str
    output: str
    seconds: float
    workers: int


@dataclass(frozen=True)
class ShippedModel:
    """A model folder as bytes (path relative to the folder -> content) and the engine to open it with.

    ``digest`` names the content: a worker that has opened this model already reuses its runtime.
    """

    files: dict[str, bytes]
    engine: Engine
    digest: str

    @classmethod
    def of(cls, folder: Path, engine: Engine) -> ShippedModel:
        """Every file of ``folder`` (the runtime needs the schema, metadata, ``MLmodel`` and the model file)."""
        files = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        digest = hashlib.sha256()
        for name, content in files.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        return cls(files=files, engine=engine, digest=digest.hexdigest()[:16])


def score_dataset(
    model: LoadedModel | Path,
    source: str,
    output: str,
    *,
    client: Client | None = None,
    probabilities: bool = False,
    runtime: Engine = "auto",
    format: str | None = None,
    blocksize: int | None = None,
    progress: PartitionProgress | None = None,
) -> DaskScoreSummary:
    """Score ``source`` (a file, glob or folder of CSV or Parquet, local or a URL) on a Dask cluster into the
    folder ``output``: one ``part-NNNNN.parquet`` per partition, in input order, each with the input's columns
    plus ``prediction`` (and ``probability_<label>`` per label with ``probabilities``), then ``_SUCCESS``.

    ``client`` is the cluster's client (:func:`fasttrack.cluster.dask_client`); without one, Dask's default client.
    ``runtime`` picks ONNX Runtime or scikit-learn as :func:`fasttrack.runtime.select.open_runtime` does; the
    choice is made here, once, and every worker opens that same runtime. ``format`` overrides the input files'
    extension; ``blocksize`` is the bytes of CSV per partition (:data:`fasttrack.data.dask_read.DEFAULT_BLOCKSIZE`
    by default). ``progress`` is called with (partitions done, partitions) as partitions finish.

    CSV is read as text, as the single-machine reader does, and typed by the feature contract: the schema's
    dtypes given to the CSV parser would refuse what the contract accepts (``" 0.25 "``, missing markers such as
    ``?``) and fail a whole partition instead of naming the values. Parquet keeps its own types.

    The output must be a place every worker can write and this process can see: a shared file system, or an
    object store URL (credentials on the workers, docs/scale.md). Locally (or on a shared file system) the parts
    are written to a hidden folder next to ``output`` that is renamed to ``output`` once ``_SUCCESS`` is in it; an
    earlier result at ``output`` (a folder with a ``_SUCCESS``) is moved aside only then, and deleted. On an object
    store, which has no rename, the parts are written under a hidden prefix next to ``output`` and then copied
    under ``output``, after the earlier ``_SUCCESS`` there is deleted; ``_SUCCESS`` is written last and lists the
    parts: a reader that waits for it and reads the parts it lists reads a complete result, and a folder without it
    is incomplete (the earlier result is gone once the copy starts).

    Raises
    ------
    DataError
        Unreadable input, or values the model cannot take (``SchemaValidationError``, the same one line as
        single-machine scoring).
    ConfigError
        ``probabilities`` with a regressor, an output name that is a file format, or an output that exists and is
        not a scoring output.
    ClusterError
        The cluster lost work it could not recover (a task's workers died more often than Dask retries).
    """
    from distributed import as_completed, default_client

    from fasttrack.data.dask_read import DEFAULT_BLOCKSIZE, read_dask
    from fasttrack.registry.model_folder import LoadedModel, load_model_folder

    started = time.perf_counter()
    client = client or default_client()  # type: ignore[no-untyped-call]
    if output.rstrip("/").lower().endswith(_FILE_SUFFIXES):
        raise ConfigError(f"the Dask engine writes a folder of Parquet parts, not {output}: name a folder")
    folder = model if isinstance(model, LoadedModel) else load_model_folder(model)
    predictor = _BatchModel(folder, runtime)  # the model's problems come first, as on one machine
    if probabilities and not predictor.is_classifier:
        raise ConfigError("--probabilities applies to classifiers; this model is a regressor")
    try:
        options = storage_options_for(source) or None
        frame = read_dask(source, format=format, blocksize=blocksize or DEFAULT_BLOCKSIZE, storage_options=options)
    except FastTrackError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:  # dask samples the first file to plan the read
        raise _client_error(exc, source) from None
    columns = _stripped_names(list(frame.columns))
    types = _input_types(source, format)
    ArrowDriver(predictor.schema, columns)  # a required column missing: one line before any task runs
    target = PartsFolder(output, what="scoring output")
    target.check_replaceable()
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    package = ShippedModel.of(folder.path, predictor.name)
    shipped = client.scatter(package, broadcast=True, hash=False)
    staging = target.staging()
    target.fs.makedirs(staging, exist_ok=True)
    try:
        meta = {"partition": "int64", "rows": "int64"}
        scored = frame.map_partitions(  # type: ignore[no-untyped-call]
            _score_partition,
            shipped,
            staging,
            probabilities,
            types,
            meta=meta,
            enforce_metadata=False,
        )
        futures = client.compute(scored.to_delayed())
        counts: dict[int, int] = {}
        done = 0
        try:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                part = future.result()
                counts.update(zip(part["partition"].tolist(), part["rows"].tolist(), strict=True))
                done += 1
                if progress is not None:
                    progress(done, len(futures))
        except BaseException as exc:
            client.cancel(futures)
            raise _client_error(exc, source) from None
        rows = sum(counts.values())
        if rows == 0:
            raise DataError(f"{source} has a header but no data rows")
        parts = [part_name(number) for number in sorted(counts) if counts[number]]
        marker = {
            "rows": rows,
            "partitions": len(parts),
            "parts": parts,
            "model": {"name": folder.metadata.name, "path": str(folder.path), "digest": package.digest},
            "engine": predictor.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        target.publish(staging, parts, json.dumps(marker, indent=2).encode())
    finally:
        target.discard(staging)
        client.cancel([shipped])
    return DaskScoreSummary(
        rows=rows,
        partitions=len(parts),
        engine=predictor.name,
        output=output,
        seconds=time.perf_counter() - started,
        workers=workers,
    )


def _client_error(exc: BaseException, source: str) -> BaseException:
    """An error raised while the tasks ran, as the one-line error of single-machine scoring."""
    from distributed.scheduler import KilledWorker

    if isinstance(exc, FastTrackError | KeyboardInterrupt):
        return exc
    if isinstance(exc, KilledWorker):
        return ClusterError(f"scoring {source} failed: workers died running one partition repeatedly ({exc})")
    stored = object_store.error_message(exc, source) if is_url(source) else None
    if stored is not None:  # credentials, a missing bucket, an unreachable endpoint: the single-machine line
        return DataError(stored)
    reading = (OSError, ValueError, pa.ArrowException)
    if isinstance(exc, reading) or (isinstance(exc, Exception) and type(exc).__module__.startswith("pandas")):
        # Reading failed (pandas' parser, a vanished file, an unreadable Parquet file): dask wraps the parser's
        # error in one of its own, whose first line names only the backend.
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return DataError(f"cannot read {source}: {first_line(cause)}")  # type: ignore[arg-type]
    return exc


# ------------------------------------------------------------------------------------------------- on workers
_OPENED: dict[str, _BatchModel] = {}
_OPENING = threading.Lock()


def _worker_model(shipped: ShippedModel) -> _BatchModel:
    """This worker process's runtime for ``shipped``: its files written once under the worker's local folder and
    the runtime opened once, then reused by every partition the worker scores."""
    key = f"{shipped.digest}:{shipped.engine}"  # the same files opened with another runtime are another model
    with _OPENING:
        opened = _OPENED.get(key)
        if opened is None:
            from fasttrack.registry.model_folder import load_model_folder

            folder = Path(_local_directory()) / f"fasttrack-model-{shipped.digest}"
            # Written aside and renamed into place: the folder exists only whole. Nothing is added to it (no
            # marker file): it holds exactly the shipped files, which its manifest is checked against at load.
            if not folder.is_dir():
                unpacked = Path(tempfile.mkdtemp(prefix=".model-", dir=folder.parent))
                for name, content in shipped.files.items():
                    path = unpacked / PurePosixPath(name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                try:
                    unpacked.replace(folder)
                except OSError:  # another process of this machine finished first: theirs is the same files
                    shutil.rmtree(unpacked, ignore_errors=True)
            # One slice at a time: a worker runs as many tasks at once as it has threads, each on a core.
            opened = _BatchModel(load_model_folder(folder), shipped.engine, threads=1)
            _OPENED.clear()  # one model per worker process at a time: an earlier one's memory is given back
            _OPENED[key] = opened
        return opened


def _local_directory() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except ValueError:  # not on a worker (a task run by the client's local scheduler)
        return tempfile.gettempdir()


def _score_partition(
    frame: pd.DataFrame,
    shipped: ShippedModel,
    staging: str,
    probabilities: bool,
    types: pa.Schema | None,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score one partition into ``staging/part-NNNNN.parquet``; its number and row count, as a one-row frame."""
    import pandas as pd

    if partition_info is None:  # dask's meta inference calls with an empty frame and no partition
        return pd.DataFrame({"partition": pd.Series([], dtype="int64"), "rows": pd.Series([], dtype="int64")})
    number = int(partition_info["number"])
    if frame.empty:  # no part for no rows (a file ending on a block boundary)
        return pd.DataFrame({"partition": [number], "rows": [0]})
    model = _worker_model(shipped)
    table = _as_read(frame, types)
    normalizer = ArrowDriver(model.schema, table.column_names)

    def scored() -> Iterator[pa.Table]:
        for offset in range(0, table.num_rows, SLICE_ROWS):
            scoring = normalizer.normalize(table.slice(offset, SLICE_ROWS))
            predicted, proba = model.predict(scoring, probabilities)
            yield _output_table(scoring, predicted, proba, model.labels)

    write_part(staging, number, scored())
    return pd.DataFrame({"partition": [number], "rows": [table.num_rows]})


def _input_types(source: str, format: str | None) -> pa.Schema | None:
    """The Arrow types the single-machine reader gives a Parquet input (the first file's); ``None`` for CSV, which
    it reads as text."""
    from fasttrack.data.dask_read import dataset_files

    files, fmt = dataset_files(source, format=format, storage_options=storage_options_for(source) or None)
    if fmt != "parquet":
        return None
    fs, path = filesystem(files[0])
    try:
        with fs.open(path, "rb") as handle:
            schema = pq.read_schema(handle)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{files[0]} is not a valid Parquet file: {first_line(exc)}") from None
    return schema.remove_metadata()


def _as_read(frame: pd.DataFrame, types: pa.Schema | None) -> pa.Table:
    """A pandas partition as the single-machine reader gives that input: names stripped, and CSV as ``string``
    with empty fields missing (``read_dask`` keeps them as empty text), Parquet with its file's types (pandas may
    have widened text to ``large_string``)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    arrays = []
    for name, read in zip(table.column_names, table.columns, strict=True):
        column = read
        if types is None:
            if pa.types.is_large_string(column.type) or pa.types.is_string(column.type):
                text = column.cast(pa.string())
                column = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        elif name in types.names and column.type != types.field(name).type:
            # When pandas changed a type beyond a cast back, the feature contract types the column all the same.
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                column = column.cast(types.field(name).type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=_stripped_names(table.column_names))
