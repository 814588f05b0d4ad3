"""Batch scoring: a file in, the same rows with predictions out, in flat memory however large the file.

:func:`score_file` streams the input in batches (:func:`fasttrack.data.stream.open_batches`), normalises each
batch like training data (:class:`~fasttrack.data.stream.BatchNormalizer`), predicts it with the model's ONNX
Runtime graph when it has one that agreed with scikit-learn at registration (else with the scikit-learn
pipeline), and appends the batch to the output: CSV and Parquet through pyarrow's writers, JSON Lines and JSON
record by record. The output is written to a temporary file next to the target and renamed into place at the
end, so a failed run leaves no partial file behind. Reading, predicting and writing overlap: the next batch is
read and the previous one written while a batch is predicted.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fasttrack.config import Engine
from fasttrack.data.schema import Schema
from fasttrack.data.stream import (
    DEFAULT_BATCH_ROWS,
    BatchNormalizer,
    BatchStream,
    CategoricalColumn,
    ScoringBatch,
    open_batches,
)
from fasttrack.errors import ConfigError, DataError, ModelLoadError
from fasttrack.registry.onnx import MISSING_CATEGORY

if TYPE_CHECKING:
    from fasttrack.registry.model_folder import LoadedModel
    from fasttrack.registry.onnx import OnnxModel

log = logging.getLogger(__name__)

#: Rows per ONNX Runtime call in batch scoring.
RUN_ROWS = 16_384
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
    """
    started = time.perf_counter()
    fmt = output_format(output)
    predictor = _predictor(model, engine)
    if probabilities and not predictor.is_classifier:
        raise ConfigError("--probabilities applies to classifiers; this model is a regressor")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    rows = batches = 0
    try:
        with open_batches(source, batch_rows=batch_rows, format=format) as stream:
            normalizer = BatchNormalizer(predictor.schema, stream.columns)
            if progress is not None:
                progress.start(stream)
            with _BackgroundWriter(_writer(fmt, tmp)) as writer, closing(_read_ahead(stream)) as batches_read:
                for batch, position in batches_read:
                    scoring = normalizer.normalize(batch)
                    predicted, proba = predictor.predict(scoring)
                    writer.write(_output_table(scoring, predicted, proba if probabilities else None, predictor.labels))
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
class _Predictor:
    name: Literal["onnx", "sklearn"]
    schema: Schema
    is_classifier: bool
    labels: list[Any]

    def predict(self, batch: ScoringBatch) -> tuple[pa.Array, np.ndarray[Any, Any] | None]:
        """The ``prediction`` column and, for classifiers, probabilities ``[rows, len(labels)]``."""
        raise NotImplementedError


def _predictor(model: LoadedModel | Path, engine: Engine) -> _Predictor:
    from fasttrack.registry.model_folder import (
        EXTRA_DIR,
        ONNX_FILE,
        SCHEMA_FILE,
        LoadedModel,
        find_extra,
        load_model_folder,
        read_metadata,
    )
    from fasttrack.registry.onnx import OnnxModel

    if engine not in ("auto", "onnx", "sklearn"):
        raise ConfigError(f"unknown engine {engine!r}; use auto, onnx or sklearn")
    if isinstance(model, LoadedModel):
        metadata, folder = model.metadata, model.path
    else:
        metadata, folder = read_metadata(model), Path(model)
    if engine != "sklearn":
        path = folder / EXTRA_DIR / ONNX_FILE
        if metadata.onnx is not None and metadata.onnx.status == "ok" and path.is_file():
            schema = model.schema if isinstance(model, LoadedModel) else Schema.load(find_extra(folder, SCHEMA_FILE))
            try:
                onnx_model = OnnxModel.load(path, schema, metadata.labels, categorical_codes=True)
                return _OnnxPredictor(onnx_model, metadata.task)
            except Exception as exc:  # onnxruntime's own exception types
                if engine == "onnx":
                    raise ModelLoadError(f"{path}: cannot load the ONNX model ({exc})") from None
                log.warning("%s: cannot load the ONNX model (%s); scoring with scikit-learn", path, exc)
        elif engine == "onnx":
            info = metadata.onnx
            why = f"its export {info.status}: {info.reason}" if info is not None else "it predates ONNX export"
            raise ConfigError(f"this model has no ONNX graph to score with ({why}); use --engine sklearn")
    return _SklearnPredictor(model if isinstance(model, LoadedModel) else load_model_folder(folder))


class _OnnxPredictor(_Predictor):
    def __init__(self, model: OnnxModel, task: str) -> None:
        self.name = "onnx"
        self.model = model
        self.schema = model.schema
        self.is_classifier = task == "classification"
        self.labels = list(model.labels) if self.is_classifier else []
        self.dictionary = pa.array(model.label_values.tolist()) if self.is_classifier else None

    def _categorical(self, name: str, column: CategoricalColumn | None, rows: int) -> np.ndarray[Any, Any]:
        codes = self.model.category_codes
        if codes is None:  # text inputs
            return column.values(MISSING_CATEGORY) if column else np.full(rows, MISSING_CATEGORY, object)
        lookup = codes[name]
        missing = lookup.get(MISSING_CATEGORY, -1)
        if column is None:
            return np.full(rows, missing, np.int64)
        # One dictionary lookup per distinct category of the batch, then integer indexing for the rows.
        table = np.asarray([lookup.get(category, -1) for category in column.categories], dtype=np.int64)
        return column.mapped(table, missing)

    def predict(self, batch: ScoringBatch) -> tuple[pa.Array, np.ndarray[Any, Any] | None]:
        rows = batch.rows
        feeds: dict[str, np.ndarray[Any, Any]] = {}
        for feature in self.model.schema.features:
            name = feature.name
            if feature.kind == "categorical":
                values = self._categorical(name, batch.categorical.get(name), rows)
            else:
                numbers = batch.numeric.get(name)
                values = numbers.astype(np.float32) if numbers is not None else np.full(rows, np.nan, np.float32)
            feeds[name] = values.reshape(-1, 1)
        # ONNX Runtime works through the batch in slices: its memory arena then holds one slice's buffers.
        slices = [
            {name: values[start : start + RUN_ROWS] for name, values in feeds.items()}
            for start in range(0, max(rows, 1), RUN_ROWS)
        ]
        if not self.is_classifier:
            values = np.concatenate([self.model.run(part)[0] for part in slices])
            return pa.array(values), None
        # Label codes make a dictionary-encoded column: no Python object per row.
        outputs = [self.model.run_codes(part) for part in slices]
        codes = np.concatenate([c for c, _ in outputs])
        proba = np.concatenate([p for _, p in outputs])
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), self.dictionary), proba


class _SklearnPredictor(_Predictor):
    def __init__(self, model: LoadedModel) -> None:
        self.name = "sklearn"
        self.model = model
        self.schema = model.schema
        self.is_classifier = model.is_classifier
        self.labels = list(model.metadata.labels or [])

    def predict(self, batch: ScoringBatch) -> tuple[pa.Array, np.ndarray[Any, Any] | None]:
        import pandas as pd

        from fasttrack.training.evaluate import align_proba

        rows = batch.rows
        columns: dict[str, Any] = {}
        for feature in self.model.schema.features:
            name = feature.name
            if feature.kind == "categorical":
                column = batch.categorical.get(name)
                columns[name] = column.values(np.nan) if column else np.full(rows, np.nan, object)
            else:
                numbers = batch.numeric.get(name)
                columns[name] = numbers if numbers is not None else np.full(rows, np.nan)
        frame = pd.DataFrame(columns)
        pipeline = self.model.pipeline
        labels = pa.array(np.asarray(pipeline.predict(frame)))
        if not self.model.is_classifier or not hasattr(pipeline, "predict_proba"):
            return labels, None
        proba = align_proba(np.asarray(pipeline.predict_proba(frame)), list(pipeline.classes_), self.labels)
        return labels, proba


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
            table = table.append_column(f"{PROBABILITY_PREFIX}{label}", pa.array(proba[:, column]))
    return table


# ----------------------------------------------------------------------------------------------- writing
class _Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
            self.open(table.schema)
        elif table.schema != self.schema:
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise DataError(f"a column changes type half-way through the input: {exc}") from None
        self.append(table)

    def open(self, schema: pa.Schema) -> None:
        raise NotImplementedError

    def append(self, table: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _ArrowWriter(_Writer):
    """CSV or Parquet through pyarrow's incremental writers (``parquet`` picks the latter)."""

    def __init__(self, path: Path, *, parquet: bool) -> None:
        super().__init__(path)
        self.parquet = parquet
        self.writer: pa_csv.CSVWriter | pq.ParquetWriter | None = None

    def open(self, schema: pa.Schema) -> None:
        factory = pq.ParquetWriter if self.parquet else pa_csv.CSVWriter
        self.writer = factory(str(self.path), schema)

    def append(self, table: pa.Table) -> None:
        assert self.writer is not None
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _JsonWriter(_Writer):
    """JSON Lines (one record per line) or, with ``array``, one JSON array of records."""

    def __init__(self, path: Path, *, array: bool) -> None:
        super().__init__(path)
        self.array = array
        self.handle: Any = None
        self.first = True

    def open(self, schema: pa.Schema) -> None:
        self.handle = self.path.open("wb")
        if self.array:
            self.handle.write(b"[")

    def append(self, table: pa.Table) -> None:
        # Column by column (dictionary columns decoded first: their values one by one are slow to fetch);
        # orjson writes NaN as null, like the missing value it stands for. Each record goes straight into
        # one buffer: orjson's output objects are large, so a list of them would hold gigabytes.
        names = table.column_names
        columns = [_json_values(column) for column in table.columns]
        separator = b",\n" if self.array else b"\n"
        buffer = bytearray()
        for row in zip(*columns, strict=True):
            if not self.first:
                buffer += separator
            buffer += orjson.dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_SERIALIZE_NUMPY)
            self.first = False
        self.handle.write(buffer)

    def close(self) -> None:
        if self.handle is None and self.array:
            self.handle = self.path.open("wb")
            self.handle.write(b"[")
        if self.handle is not None:
            self.handle.write(b"]\n" if self.array else b"" if self.first else b"\n")
            self.handle.close()


def _json_values(column: pa.ChunkedArray) -> Any:
    """A column's values for orjson: float32 as numpy scalars (written with float32's shortest digits)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_float32(column.type) and column.null_count == 0:
        return column.to_numpy()
    return column.to_pylist()


def _writer(fmt: str, path: Path) -> _Writer:
    if fmt == "csv":
        return _ArrowWriter(path, parquet=False)
    if fmt == "parquet":
        return _ArrowWriter(path, parquet=True)
    return _JsonWriter(path, array=fmt == "json")


class _BackgroundWriter:
    """Writes tables on a thread of its own (pyarrow's writers release the GIL), at most two batches behind."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fasttrack-writer", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while (table := self.queue.get()) is not None:
                if self.error is None:
                    self.writer.write(table)
        except BaseException as exc:  # handed to the producing thread
            self.error = exc
            while self.queue.get() is not None:  # keep draining so the producer never blocks
                pass
        finally:
            try:
                self.writer.close()
            except BaseException as exc:
                self.error = self.error or exc

    def write(self, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(table)

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


def _read_ahead(stream: BatchStream) -> Generator[tuple[pa.RecordBatch, int], None, None]:
    """The stream's batches, the next one read on another thread while the current one is scored."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in stream:
                if stop.is_set():
                    return
                items.put(("batch", item))
            items.put(("end", None))
        except BaseException as exc:  # handed to the consuming thread
            items.put(("error", exc))

    thread = threading.Thread(target=read, name="fasttrack-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting to put, then let it finish
            try:
                items.get(timeout=0.05)
            except queue.Empty:
                continue
        thread.join()
