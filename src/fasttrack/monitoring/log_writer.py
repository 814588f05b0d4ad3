"""The inference log's writer: every prediction and label the server makes or receives, to Parquet, off its requests.

The server's request path only appends: :meth:`LogSource.predictions` (from
:meth:`~fasttrack.serving.predictor.Predictor._track`, once per model call) and :meth:`LogSource.feedback` (from
``POST /feedback``) put one tuple holding references to what the request already built (validated columns,
predictions, probabilities, ids) on a bounded queue, under an uncontended lock: no conversion, no I/O, no
waiting. When the queue holds ``queue_rows`` rows, new rows are dropped and counted (``queue_full``) rather than
waited for: a slow store costs rows, never requests.

A daemon thread (:class:`InferenceLog`'s writer) takes the whole queue every fraction of a second, converts each
model version's rows to Arrow in one go per column (``pyarrow.array`` on the joined Python lists: C loops, the
thread holds the GIL for a few microseconds per thousand values), and buffers them per table, model, schema and UTC
day (:mod:`~fasttrack.monitoring.log_layout`'s partitions). A buffer becomes one Parquet file when it reaches
``rotate_rows`` rows or its oldest row is ``rotate_seconds`` old. Files appear whole: in a local folder they are
written beside their final name under a ``.``-prefixed temporary name (which readers skip), synced and renamed; in
an object store (``s3://``, ``gs://``, through fsspec) they are written to a local temporary file and uploaded in
one piece, which the store makes visible only once complete.

A store that fails (a read-only folder, an unreachable endpoint, a missing bucket) costs the rows of the files it
refused, counted as dropped (``store_error``); the problem is logged once, then at most once a minute while it
lasts, and again when writing works again. The thread never stops on an error. :meth:`InferenceLog.close` (the
server's shutdown, SIGTERM included) stops taking rows and writes everything queued and buffered; what it cannot
write in time is counted (``shutdown``). A process killed without a shutdown (``kill -9``) loses the rows not yet
written: at most ``rotate_seconds`` of them.
"""

from __future__ import annotations

import atexit
import datetime as dt
import itertools
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fasttrack.data.object_store import (
    apply_network_defaults,
    error_message,
    is_object_store_url,
    storage_options,
)
from fasttrack.data.schema import FeatureSchema
from fasttrack.errors import ConfigError
from fasttrack.features.rules import category_text
from fasttrack.monitoring import log_layout as layout

log = logging.getLogger(__name__)

DropReason = Literal["queue_full", "store_error", "shutdown"]
#: Why rows were not written: the queue was full, the store refused their file, or the process stopped first.
DROP_REASONS: Final[tuple[DropReason, ...]] = ("queue_full", "store_error", "shutdown")
PREDICTIONS: Final[layout.Table] = "predictions"
FEEDBACK: Final[layout.Table] = "feedback"

DEFAULT_QUEUE_ROWS: Final = 100_000
DEFAULT_ROTATE_ROWS: Final = 100_000
DEFAULT_ROTATE_SECONDS: Final = 60.0
#: Seconds :meth:`InferenceLog.close` waits for the writer to write what is queued and buffered.
CLOSE_TIMEOUT: Final = 20.0
#: How often the writer takes the queue (seconds): small enough to keep the queue short at a server's full rate,
#: large enough that each take converts many rows per ``pyarrow.array`` call.
POLL_SECONDS: Final = 0.2
#: Seconds between two reports of the same ongoing store problem.
REPORT_EVERY: Final = 60.0
#: URL schemes of local files, besides a plain path.
_LOCAL_SCHEMES: Final = frozenset({"file"})


class LogCounters(Protocol):
    """Where the writer counts what it did: the server's Prometheus metrics, or a :class:`LogTally`."""

    def written(self, table: layout.Table, rows: int) -> None:
        """``rows`` rows of ``table`` were written (in one file)."""

    def file(self, table: layout.Table) -> None:
        """One file of ``table`` was written."""

    def dropped(self, table: layout.Table, reason: DropReason, rows: int) -> None:
        """``rows`` rows of ``table`` will never be written, for ``reason``."""

    def queued(self, rows: int) -> None:
        """The queue held ``rows`` rows when the writer last took it."""


@dataclass
class LogTally:
    """In-memory :class:`LogCounters`, for a log used outside the server (and what ``InferenceLog.tally`` is)."""

    written_rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    dropped_rows: dict[tuple[str, str], int] = field(default_factory=dict)
    queue_rows: int = 0

    def written(self, table: layout.Table, rows: int) -> None:
        """Count written rows."""
        self.written_rows[table] = self.written_rows.get(table, 0) + rows

    def file(self, table: layout.Table) -> None:
        """Count a written file."""
        self.files[table] = self.files.get(table, 0) + 1

    def dropped(self, table: layout.Table, reason: DropReason, rows: int) -> None:
        """Count dropped rows."""
        self.dropped_rows[table, reason] = self.dropped_rows.get((table, reason), 0) + rows

    def queued(self, rows: int) -> None:
        """Remember the queue's depth."""
        self.queue_rows = rows


class _Both:
    """Counts in the caller's counters and in the log's own tally."""

    def __init__(self, first: LogCounters, second: LogTally) -> None:
        self._first, self._second = first, second

    def written(self, table: layout.Table, rows: int) -> None:
        self._first.written(table, rows)
        self._second.written(table, rows)

    def file(self, table: layout.Table) -> None:
        self._first.file(table)
        self._second.file(table)

    def dropped(self, table: layout.Table, reason: DropReason, rows: int) -> None:
        self._first.dropped(table, reason, rows)
        self._second.dropped(table, reason, rows)

    def queued(self, rows: int) -> None:
        self._first.queued(rows)
        self._second.queued(rows)


# ------------------------------------------------------------------------------------------------------ stores
def write_parquet(table: pa.Table, where: str) -> None:
    """Write one log file: zstd, and dictionaries for the text columns that repeat (versions, categories, labels).

    Measured on 100,000 adult-like rows: a third faster and 40% smaller than pyarrow's defaults (snappy, a dictionary
    tried on every column, the random prediction ids included).
    """
    repeating = [f.name for f in table.schema if pa.types.is_string(f.type) and f.name != layout.PREDICTION_ID]
    pq.write_table(table, where, compression="zstd", use_dictionary=repeating)


class LocalStore:
    """A folder on this machine: each file written under a hidden temporary name, synced, then renamed."""

    def __init__(self, root: str) -> None:
        self.root = str(Path(root).expanduser().resolve())

    def write(self, folder: str, name: str, table: pa.Table) -> None:
        """Write ``table`` as ``folder/name`` atomically (a reader sees the whole file or none)."""
        where = Path(folder)
        where.mkdir(parents=True, exist_ok=True)
        temporary = where / f".{name}.tmp"  # readers skip names starting with "."
        try:
            write_parquet(table, str(temporary))
            descriptor = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(descriptor)  # the data reaches the disk before the name does
            finally:
                os.close(descriptor)
            temporary.replace(where / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make a rename durable (best effort: some file systems cannot sync a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class ObjectStore:
    """An ``s3://`` or ``gs://`` prefix through fsspec: each file written locally, then uploaded whole."""

    def __init__(self, url: str) -> None:
        import fsspec

        apply_network_defaults()  # an unreachable endpoint fails in seconds, not after minutes of retries
        self.url = url.rstrip("/")
        try:
            self.fs, path = fsspec.core.url_to_fs(self.url, **storage_options(self.url))
        except ImportError:
            google = self.url.split("://", 1)[0].lower() in ("gs", "gcs")
            package, extra = ("gcsfs", "gcs") if google else ("s3fs", "s3")
            raise ConfigError(
                f"FASTTRACK_INFERENCE_LOG={url} needs {package}: install FastTrack with the {extra} extra"
            ) from None
        self.root = str(path).rstrip("/")

    def write(self, folder: str, name: str, table: pa.Table) -> None:
        """Upload ``table`` as ``folder/name`` in one piece (the store shows it once complete)."""
        handle, local = tempfile.mkstemp(prefix=".fasttrack-log-", suffix=".parquet")
        os.close(handle)
        try:
            write_parquet(table, local)
            self.fs.put_file(local, f"{folder}/{name}")
        finally:
            Path(local).unlink()


def open_store(location: str) -> LocalStore | ObjectStore:
    """The store of a log location: a folder (a path or ``file://``) or an object-store prefix.

    Raises ``ConfigError`` for a scheme FastTrack cannot write to, or an object store whose fsspec backend is not
    installed. Nothing is written or checked on the store itself: a store that fails later costs rows, not the
    server's start.
    """
    if "://" not in location:
        return LocalStore(location)
    scheme, rest = location.split("://", 1)
    if scheme.lower() in _LOCAL_SCHEMES:
        return LocalStore(rest)
    if is_object_store_url(location):
        return ObjectStore(location)
    raise ConfigError(f"FASTTRACK_INFERENCE_LOG must be a folder or an s3:// or gs:// prefix, got {location!r}")


# ------------------------------------------------------------------------------------------------------ sources
class LogSource:
    """One model version's way into the log, made once per served version (:meth:`InferenceLog.source`).

    Its two methods are the request path's whole cost of the log: a timestamp and one append to the queue.
    """

    __slots__ = ("_clock", "_put", "classifier", "features", "keys", "labels", "model", "schemas", "version")

    def __init__(
        self,
        log: InferenceLog,
        model: str,
        version: str,
        features: Sequence[FeatureSchema],
        *,
        classifier: bool,
        labels: Sequence[Any],
    ) -> None:
        self.model = model
        self.version = version
        self.classifier = classifier
        self.features = tuple((f.name, layout.feature_type(f)) for f in features)
        self.labels = tuple(_text(label) for label in labels) if classifier else ()
        self.schemas: dict[layout.Table, pa.Schema] = {
            PREDICTIONS: layout.predictions_schema(features, classifier=classifier, labels=self.labels),
            FEEDBACK: layout.feedback_schema(classifier=classifier),
        }
        # Versions whose files have the same columns share files (each row names its version).
        self.keys = {table: str(schema) for table, schema in self.schemas.items()}
        self._put = log._put
        self._clock = log.clock

    def predictions(
        self,
        columns: Mapping[str, list[Any]],
        predictions: list[Any],
        probabilities: np.ndarray | None,
        ids: list[str],
    ) -> None:
        """Log one model call's rows: validated ``columns`` (one list per feature), ``predictions`` as the model
        gave them, class ``probabilities`` (rows x labels, or ``None``) and the rows' prediction ids.

        Takes references, copies nothing: the caller must not change them afterwards. Never raises, never waits.
        """
        self._put((PREDICTIONS, self, self._clock(), columns, predictions, probabilities, ids), len(ids))

    def feedback(self, labelled: Sequence[tuple[str, Any, str]]) -> None:
        """Log received labels: ``(prediction id, label as sent, outcome)`` each (``invalid`` ones left out by the
        caller). Never raises, never waits."""
        if labelled:
            self._put((FEEDBACK, self, self._clock(), labelled), len(labelled))


def _text(value: Any) -> str:
    text = category_text(value)
    return text if text is not None else str(value)


# ------------------------------------------------------------------------------------------------------- buffers
@dataclass
class _Buffer:
    """Rows of one file-to-be: one table, model, schema and UTC day, as Arrow batches with their first times."""

    table: layout.Table
    model: str
    day: dt.date
    schema: pa.Schema
    batches: list[tuple[pa.RecordBatch, float]] = field(default_factory=list)
    rows: int = 0

    @property
    def first(self) -> float:
        """The time (seconds since the epoch) of the oldest row buffered."""
        return min(first for _, first in self.batches)

    def add(self, batch: pa.RecordBatch, first: float) -> None:
        self.batches.append((batch, first))
        self.rows += batch.num_rows

    def take(self, rows: int) -> tuple[pa.Table, float]:
        """The first ``rows`` rows as a table, and the time of the oldest of them; the rest stays."""
        first = self.first
        table = pa.Table.from_batches([b for b, _ in self.batches], schema=self.schema)
        if rows >= self.rows:
            self.batches, self.rows = [], 0
            return table, first
        rest = table.slice(rows)
        # The rest's oldest row is at least as recent as the batch the cut falls in.
        seen, cut_first = 0, first
        for batch, batch_first in self.batches:
            if seen + batch.num_rows > rows:
                cut_first = batch_first
                break
            seen += batch.num_rows
        self.batches = [(b, cut_first) for b in rest.to_batches()]
        self.rows -= rows
        return table.slice(0, rows), first


def _prediction_batch(schema: pa.Schema, items: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    """One Arrow batch from queued prediction items (all of one schema): each column converted in one call.

    Each column is the calls' own lists joined and converted in one call. Versions and labels, a handful of
    distinct values, are converted once each and repeated by Arrow.
    """
    counts = [len(item[6]) for item in items]
    source: LogSource = items[0][1]
    arrays: list[pa.Array] = [
        _flat([item[6] for item in items], pa.string()),
        pa.array(
            np.repeat(np.array([round(item[2] * 1e6) for item in items], np.int64), counts), layout.TIMESTAMP_TYPE
        ),
        _repeated([item[1].version for item in items], counts),
    ]
    for name, kind in source.features:
        arrays.append(_flat([item[3][name] for item in items], kind))
    predicted = [item[4] for item in items]
    if source.classifier:
        arrays.append(_label_texts(predicted))
        arrays.extend(_probability_columns(items, counts, len(source.labels)))
    else:
        arrays.append(_flat(predicted, pa.float64()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _flat(lists: list[list[Any]], kind: pa.DataType) -> pa.Array:
    """One column from the calls' lists of values (joined by ``itertools.chain``: measured faster than Arrow's own
    list arrays, flattened, or a comprehension)."""
    return pa.array(list(itertools.chain.from_iterable(lists)), kind)


def _repeated(values: list[str], counts: list[int]) -> pa.Array:
    """``values[i]`` ``counts[i]`` times each, as one string column."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        codes = np.zeros(sum(counts), np.int32)
    else:
        position = {value: code for code, value in enumerate(distinct)}
        codes = np.repeat(np.array([position[value] for value in values], np.int32), counts)
    return pa.array(distinct, pa.string()).take(codes)


def _label_texts(predicted: list[list[Any]]) -> pa.Array:
    """Predicted labels as category text: each distinct label converted once (a model predicts a few)."""
    try:
        raw = pa.array(predicted).flatten()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # labels of mixed types: one at a time
        return pa.array([category_text(v) for values in predicted for v in values], pa.string())
    distinct = pc.unique(raw)
    texts = pa.array([category_text(value) for value in distinct.to_pylist()], pa.string())
    return texts.take(pc.index_in(raw, value_set=distinct))


def _probability_columns(items: Sequence[tuple[Any, ...]], counts: list[int], labels: int) -> list[pa.Array]:
    """One ``float64`` column per label; null where a call's probabilities were not computed."""
    if not labels:
        return []
    blocks = []
    for item, rows in zip(items, counts, strict=True):
        proba = item[5]
        blocks.append(proba if proba is not None and proba.shape == (rows, labels) else np.full((rows, labels), np.nan))
    matrix = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return [
        pa.array(np.ascontiguousarray(matrix[:, column]), pa.float64(), from_pandas=True) for column in range(labels)
    ]


def _feedback_batch(schema: pa.Schema, items: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    """One Arrow batch from queued feedback items (all of one model's schema)."""
    classifier: bool = items[0][1].classifier
    ids: list[str] = []
    labels: list[Any] = []
    outcomes: list[str] = []
    times: list[int] = []
    versions: list[str] = []
    for item in items:
        stamp, version = round(item[2] * 1e6), item[1].version
        for prediction_id, label, outcome in item[3]:
            ids.append(str(prediction_id))
            labels.append(category_text(label) if classifier else _finite(label))
            outcomes.append(outcome)
            times.append(stamp)
            versions.append(version)
    arrays = [
        pa.array(ids, pa.string()),
        pa.array(np.array(times, np.int64), layout.TIMESTAMP_TYPE),
        pa.array(versions, pa.string()),
        pa.array(labels, pa.string() if classifier else pa.float64()),
        pa.array(outcomes, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _finite(value: Any) -> float | None:
    """A regression label as a number (``None`` for one that is not a finite number: it joins nothing)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# ------------------------------------------------------------------------------------------------------- the log
class InferenceLog:
    """The process' inference log: a bounded queue on the request path and a writer thread behind it.

    ``location`` is a folder (a path or ``file://``) or an ``s3://`` / ``gs://`` prefix. ``queue_rows`` bounds the
    rows waiting for the writer (more are dropped and counted, never waited for); a file is written per table,
    model, schema and UTC day when ``rotate_rows`` rows are buffered or the oldest is ``rotate_seconds`` old.
    ``counters`` receive what was written and dropped (the server's metrics); :attr:`tally` keeps the same counts.
    ``poll_seconds`` is how often the writer looks at the queue, ``clock`` the rows' time (for tests).
    Call :meth:`start` to start the writer and :meth:`close` to write everything and stop.
    """

    def __init__(
        self,
        location: str,
        *,
        queue_rows: int = DEFAULT_QUEUE_ROWS,
        rotate_rows: int = DEFAULT_ROTATE_ROWS,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        counters: LogCounters | None = None,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if queue_rows < 1 or rotate_rows < 1 or not rotate_seconds > 0 or not poll_seconds > 0:
            raise ConfigError(
                "the inference log needs queue_rows >= 1, rotate_rows >= 1 and rotate_seconds > 0, got "
                f"{queue_rows}, {rotate_rows} and {rotate_seconds}"
            )
        self.location = location
        #: When a row was made (seconds since the epoch); a test's own clock crosses midnight at will.
        self.clock = clock
        self.store: LocalStore | ObjectStore = open_store(location)
        self.queue_rows = queue_rows
        self.rotate_rows = rotate_rows
        self.rotate_seconds = float(rotate_seconds)
        self.tally = LogTally()
        self._counters: LogCounters = self.tally if counters is None else _Both(counters, self.tally)
        self._poll = min(poll_seconds, self.rotate_seconds / 2)
        self._lock = threading.Lock()
        self._items: list[tuple[Any, ...]] = []
        self._queued = 0
        self._open = True
        self._wake_at = max(1, queue_rows // 4)  # a queue filling fast wakes the writer before its next look
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._buffers: dict[tuple[layout.Table, str, str, dt.date], _Buffer] = {}
        self._sequence = itertools.count(1)
        self._day_range = (0.0, 0.0, dt.date(1970, 1, 1))
        self._problems = _Problems(self.location)
        # pyarrow imports pandas on its first conversion of Python values (0.2-0.5 s of CPU, a few hundred thousand
        # objects): here, at start, before the server freezes its start-up heap out of the collector's sight
        # (fasttrack.process.settle_heap), not in the writer thread, where the objects would stay in the collector's
        # oldest generation and every full collection would scan them again (measured: 32 ms instead of 7 for the
        # adult model's server, 12 µs more per request).
        _label_texts([["warm"]])
        _flat([[0.5]], pa.float64())

    # ------------------------------------------------------------------------------------------ request path
    def source(
        self, model: str, version: str, features: Sequence[FeatureSchema], *, classifier: bool, labels: Sequence[Any]
    ) -> LogSource:
        """The way into the log for one model version (``labels``: a classifier's, in probability order)."""
        return LogSource(self, model, version, features, classifier=classifier, labels=labels)

    def _put(self, item: tuple[Any, ...], rows: int) -> None:
        wake = False
        with self._lock:
            accepted = self._open and self._queued < self.queue_rows
            if accepted:
                self._items.append(item)
                self._queued += rows
                wake = self._queued >= self._wake_at
        if not accepted:
            try:
                self._counters.dropped(item[0], "queue_full" if self._open else "shutdown", rows)
            except Exception:  # counting must not fail a request either
                log.debug("counting dropped rows failed", exc_info=True)
            return
        if wake and not self._wake.is_set():
            self._wake.set()

    @property
    def queued(self) -> int:
        """Rows waiting in the queue now."""
        return self._queued

    # ------------------------------------------------------------------------------------------------ writer
    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="fasttrack-inference-log", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)  # a process that ends without the server's shutdown still writes its rows
        log.info("inference log: writing to %s", self.location)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Stop taking rows, write everything queued and buffered and stop the writer; whether it finished in time.

        Rows that arrive from now on are dropped (``shutdown``); so is what the writer has not written after
        ``timeout`` seconds (the store hangs). Rows a failing store refuses are dropped (``store_error``) as ever.
        Idempotent.
        """
        with self._lock:
            self._open = False
        atexit.unregister(self._at_exit)
        thread = self._thread
        if thread is None:  # never started: write here
            self._cycle(final=True)
            return True
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        if not thread.is_alive():
            return True
        # The writer is stuck on the store: what it has not taken or written yet is lost with the process.
        with self._lock:
            items, self._items, self._queued = self._items, [], 0
        left = dict.fromkeys(layout.TABLES, 0)
        for item in items:
            left[item[0]] += len(item[6]) if item[0] == PREDICTIONS else len(item[3])
        for buffer in list(self._buffers.values()):
            left[buffer.table] += buffer.rows
        for table, rows in left.items():
            if rows:
                self._counters.dropped(table, "shutdown", rows)
        log.warning("inference log: %d rows not written within %.0f s of shutting down", sum(left.values()), timeout)
        return False

    def _at_exit(self) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._poll)
            self._wake.clear()
            final = self._stopping
            try:
                self._cycle(final=final)
            except Exception as exc:  # the writer must outlive anything: the next cycle tries again
                self._problems.failed(f"the writer failed: {type(exc).__name__}: {exc}", 0, exc)
            if final:
                return

    def _cycle(self, *, final: bool) -> None:
        """Take the queue, convert it into the buffers, write the buffers that are due (all of them if ``final``)."""
        with self._lock:
            items, self._items = self._items, []
            queued, self._queued = self._queued, 0
        self._counters.queued(queued)
        if items:
            self._buffer(items)
        self._write_due(final)

    def _buffer(self, items: list[tuple[Any, ...]]) -> None:
        groups: dict[tuple[layout.Table, str, str, dt.date], list[tuple[Any, ...]]] = {}
        for item in items:
            table: layout.Table = item[0]
            source: LogSource = item[1]
            key = (table, source.model, source.keys[table], self._day(item[2]))
            groups.setdefault(key, []).append(item)
        for key, grouped in groups.items():
            table, model, _, day = key
            schema = grouped[0][1].schemas[table]
            rows = sum(len(item[6]) if table == PREDICTIONS else len(item[3]) for item in grouped)
            try:
                batch = (_prediction_batch if table == PREDICTIONS else _feedback_batch)(schema, grouped)
            except Exception as exc:  # a value Arrow refuses: these rows are lost, the others not
                self._counters.dropped(table, "store_error", rows)
                self._problems.failed(f"cannot convert {table} rows of {model}: {type(exc).__name__}: {exc}", rows, exc)
                continue
            buffer = self._buffers.get(key)
            if buffer is None:
                buffer = self._buffers[key] = _Buffer(table, model, day, schema)
            buffer.add(batch, min(item[2] for item in grouped))

    def _write_due(self, final: bool) -> None:
        now = self.clock()
        for key, buffer in list(self._buffers.items()):
            while buffer.rows >= self.rotate_rows:
                self._write(buffer, self.rotate_rows)
            if buffer.rows and (final or now - buffer.first >= self.rotate_seconds):
                self._write(buffer, buffer.rows)
            if not buffer.rows:
                del self._buffers[key]

    def _write(self, buffer: _Buffer, rows: int) -> None:
        table, first = buffer.take(rows)
        folder = layout.partition(self.store.root, buffer.table, buffer.model, buffer.day)
        name = layout.file_name(dt.datetime.fromtimestamp(first, dt.UTC), next(self._sequence), os.urandom(4).hex())
        try:
            self.store.write(folder, name, table)
        except Exception as exc:
            self._counters.dropped(buffer.table, "store_error", table.num_rows)
            remote = isinstance(self.store, ObjectStore)
            self._problems.failed(_describe(exc, self.location, remote=remote), table.num_rows, exc)
            return
        self._counters.written(buffer.table, table.num_rows)
        self._counters.file(buffer.table)
        self._problems.succeeded()

    def _day(self, stamp: float) -> dt.date:
        start, end, day = self._day_range
        if not start <= stamp < end:
            day = dt.datetime.fromtimestamp(stamp, dt.UTC).date()
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
            self._day_range = (start, start + 86_400, day)
        return day


def _describe(exc: BaseException, location: str, *, remote: bool) -> str:
    """One line for a failed write to ``location`` (an object store when ``remote``)."""
    known = error_message(exc, location) if remote else None  # it reads a PermissionError as refused credentials
    if known is not None:
        return known
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot write to {location}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return f"cannot write to {location}: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _kind(exc: BaseException) -> str:
    """What kind of failure ``exc`` is: its type, and its errno or an object store's error code when it has one."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{type(exc).__module__}.{type(exc).__qualname__}:{getattr(exc, 'errno', None)}:{code}"


class _Problems:
    """Store problems, logged once each, then at most every :data:`REPORT_EVERY` seconds while they last."""

    def __init__(self, location: str) -> None:
        self._location = location
        self._last: dict[str, float] = {}
        self._since: dict[str, tuple[int, int]] = {}  # problem -> (files, rows) since it was last logged
        self._failing = False

    def failed(self, problem: str, rows: int, exc: BaseException) -> None:
        """Log ``problem`` (``exc`` made it) unless it was logged less than a minute ago.

        A problem is its kind (the exception's type, errno, the store's error code), not its text: an object
        store's message names the file, which differs every time.
        """
        now = time.monotonic()
        kind = _kind(exc)
        files, dropped = self._since.get(kind, (0, 0))
        files, dropped = files + 1, dropped + rows
        last = self._last.get(kind)
        if last is None:
            if len(self._last) >= 100:  # distinct problems are few; never let the record grow
                self._last.clear()
                self._since.clear()
            log.error(
                "inference log: %s; %d rows dropped (fasttrack_inference_log_dropped_rows_total), the server goes on",
                problem,
                rows,
                exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
            )
            self._last[kind], self._since[kind] = now, (0, 0)
        elif now - last >= REPORT_EVERY:
            log.error(
                "inference log: still failing: %s (%d files, %d rows dropped in the last %.0f s)",
                problem,
                files,
                dropped,
                now - last,
            )
            self._last[kind], self._since[kind] = now, (0, 0)
        else:
            self._since[kind] = (files, dropped)
        self._failing = True

    def succeeded(self) -> None:
        if self._failing:
            log.warning("inference log: writing to %s again", self._location)
            self._failing = False
            self._last.clear()
            self._since.clear()
