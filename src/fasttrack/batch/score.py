"""Batch scoring: a file in, the same rows with predictions out, in flat memory however large the file.

:func:`score_file` streams the input in batches (:func:`fasttrack.data.stream.open_batches`), normalises each
batch by the feature contract (:class:`~fasttrack.features.arrow.ArrowDriver`), predicts it with the model's ONNX
Runtime graph when it has one that agreed with scikit-learn at registration (else with the scikit-learn
pipeline), and appends the batch to the output (:mod:`fasttrack.batch.writers`). The output is written to a temporary
file next to the target and renamed into place at the end, so a failed run leaves no partial file behind.

Reading, predicting and writing overlap, each on threads of its own (pyarrow and ONNX Runtime release the GIL):
the input is opened and read from the start, while the model loads, and then up to two batches ahead of the
one predicted, while the previous ones are written. Memory is bounded by those few batches.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from fasttrack.batch.writers import BackgroundWriter, writer_for
from fasttrack.config import Engine
from fasttrack.data.arrays import Batch, arrow_array, arrow_strings
from fasttrack.data.stream import DEFAULT_BATCH_ROWS, BatchStream, open_batches
from fasttrack.errors import ConfigError, DataError
from fasttrack.features.arrow import ArrowDriver, ScoringBatch

if TYPE_CHECKING:
    from fasttrack.registry.model_folder import LoadedModel

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
OUTPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}


class ScoreProgress(Protocol):
    """Receives progress: once the input is open, then after each batch."""

    def start(self, stream: BatchStream) -> None:
        """The input is open: ``stream.unit`` and ``stream.total`` say how progress is measured."""

    def update(self, rows: int, position: int) -> None:
        """``rows`` rows scored so far; reading has reached ``position`` (in ``stream.unit``)."""


@dataclass(frozen=True)
class ScoreSummary:
    """What :func:`score_file` did."""

    rows: int
    batches: int
    engine: Literal["onnx", "sklearn"]
    output: Path
    seconds: float


def output_format(path: Path) -> str:
    """The output format named by a path's extension; ``ConfigError`` for an unknown one."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot write {path}: use .csv, .parquet, .json or .jsonl")
    return fmt


def score_file(
    model: LoadedModel | Path,
    source: str | Path,
    output: Path,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    probabilities: bool = False,
    engine: Engine = "auto",
    format: str | None = None,
    progress: ScoreProgress | None = None,
) -> ScoreSummary:
    """Score the file ``source`` with ``model`` and write its columns plus ``prediction`` to ``output``.

    ``model`` is a loaded model or a model folder; from a folder, the ONNX path never unpickles (nor imports)
    scikit-learn, which saves a second or two of start-up.

    With ``probabilities`` a classifier adds one ``probability_<label>`` column per label. ``engine`` picks the
    ONNX Runtime graph (``onnx``; an error when the model has none), the scikit-learn pipeline (``sklearn``)
    or the graph when there is one (``auto``). ``format`` overrides the input's extension. Input problems raise
    :class:`~fasttrack.errors.DataError` (``SchemaValidationError`` naming the column for values the model
    cannot take); nothing is left at ``output`` unless every row was scored.

    The caller's process is left as it was: ``fasttrack predict`` runs this inside
    :func:`fasttrack.process.small_pages`, which a script scoring large files may do too.
    """
    started = time.perf_counter()
    fmt = output_format(output)
    # The input is opened and read on a thread of its own from the start, while the model loads (ONNX Runtime's
    # import and session take a few tenths of a second); the model's problems are still reported first.
    with _ReadAhead(source, batch_rows=batch_rows, format=format) as reading:
        predictor = _BatchModel(model, engine)
        if probabilities and not predictor.is_classifier:
            raise ConfigError("--probabilities applies to classifiers; this model is a regressor")
        stream = reading.open()
        normalizer = ArrowDriver(predictor.schema, stream.columns)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        rows = batches = 0
        try:
            if progress is not None:
                progress.start(stream)
            with BackgroundWriter(writer_for(fmt, tmp)) as writer:
                for batch, position in reading:
                    scoring = normalizer.normalize(batch)
                    predicted, proba = predictor.predict(scoring, probabilities)
                    writer.write(_output_table(scoring, predicted, proba, predictor.labels))
                    rows += scoring.rows
                    batches += 1
                    if progress is not None:
                        progress.update(rows, position)
            if rows == 0:
                raise DataError(f"{source} has a header but no data rows")
            tmp.replace(output)
        finally:
            tmp.unlink(missing_ok=True)
    return ScoreSummary(
        rows=rows, batches=batches, engine=predictor.name, output=output, seconds=time.perf_counter() - started
    )


# --------------------------------------------------------------------------------------------- predicting
class _BatchModel:
    """A model folder's runtime (:func:`~fasttrack.runtime.select.open_runtime`), and its predictions as the
    output's ``prediction`` column. ``threads``: how many slices of a batch run at once (default: one per core)."""

    def __init__(self, model: LoadedModel | Path, engine: Engine, *, threads: int | None = None) -> None:
        from fasttrack.registry.model_folder import LoadedModel, load_model_folder
        from fasttrack.runtime.select import batch_threads, open_runtime

        folder = model if isinstance(model, LoadedModel) else load_model_folder(model)
        self.runtime = open_runtime(folder, engine, threads=batch_threads() if threads is None else threads)
        self.name = self.runtime.name
        self.schema = folder.schema
        self.is_classifier = self.runtime.labels is not None
        self.labels: list[Any] = list(self.runtime.labels or [])
        self._dictionary = _label_array(self.labels) if self.is_classifier else None

    def predict(self, batch: ScoringBatch, probabilities: bool) -> tuple[pa.Array, np.ndarray[Any, Any] | None]:
        """The ``prediction`` column and, when asked (classifiers), probabilities ``[rows, len(labels)]``."""
        prediction = self.runtime.predict(batch.features(), batch.rows, probabilities=probabilities)
        if prediction.codes is not None and self._dictionary is not None:
            # Label codes make a dictionary-encoded column: no Python object per row.
            column = pa.DictionaryArray.from_arrays(arrow_array(prediction.codes.astype(np.int32)), self._dictionary)
        elif prediction.values.dtype.kind in "biuf":
            column = arrow_array(prediction.values)
        else:
            column = pa.array(prediction.values.tolist())
        return column, prediction.probabilities


def _label_array(labels: list[Any]) -> pa.Array:
    """The labels as an Arrow array (text and numbers without pa.array, which imports pandas: see
    :mod:`fasttrack.data.arrays`)."""
    if all(isinstance(value, str) for value in labels):
        return arrow_strings(labels)
    values = np.asarray(labels)
    if values.dtype.kind in "biuf":
        return arrow_array(values)
    return pa.array(labels)


def _output_table(
    batch: ScoringBatch, predicted: pa.Array, proba: np.ndarray[Any, Any] | None, names: list[Any]
) -> pa.Table:
    table = batch.table
    added = [PREDICTION] + ([f"{PROBABILITY_PREFIX}{label}" for label in names] if proba is not None else [])
    clashing = [name for name in added if name in table.column_names]
    if clashing:  # scoring a scored file: the new predictions replace the old
        table = table.drop_columns(clashing)
    table = table.append_column(PREDICTION, predicted)
    if proba is not None:
        for column, label in enumerate(names):
            table = table.append_column(f"{PROBABILITY_PREFIX}{label}", arrow_array(proba[:, column]))
    return table


class _ReadAhead:
    """Opens the input and reads it on a thread of its own, at most ``ahead`` batches ahead of the scoring.

    pyarrow parses without the GIL, so reading overlaps loading the model and scoring. Use as a context
    manager: :meth:`open` waits for the input to be open (raising its problems), iterating gives the batches
    (raising reading problems where they occur), and leaving stops the thread and closes the input.
    """

    def __init__(self, source: str | Path, *, batch_rows: int, format: str | None, ahead: int = 2) -> None:
        self._items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._stream: BatchStream | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(source, batch_rows, format), name="fasttrack-reader", daemon=True
        )

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def _run(self, source: str | Path, batch_rows: int, format: str | None) -> None:
        try:
            self._stream = open_batches(source, batch_rows=batch_rows, format=format)
        except BaseException as exc:  # handed to the consuming thread by open()
            self._error = exc
        finally:
            self._opened.set()
        if self._stream is None:
            return
        try:
            for item in self._stream:
                if self._stop.is_set():
                    return
                self._items.put(("batch", item))
            self._items.put(("end", None))
        except BaseException as exc:  # handed to the consuming thread
            self._items.put(("error", exc))

    def open(self) -> BatchStream:
        """The open input (once the reading thread has opened it)."""
        self._opened.wait()
        if self._error is not None:
            raise self._error
        assert self._stream is not None
        return self._stream

    def __iter__(self) -> Iterator[tuple[Batch, int]]:
        while True:
            kind, value = self._items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting to put, then let it finish
            try:
                self._items.get(timeout=0.05)
            except queue.Empty:
                continue
        self._thread.join()
        if self._stream is not None:
            self._stream.close()
