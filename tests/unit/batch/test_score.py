"""Batch scoring: streamed in batches, same predictions as the pipeline, atomic output, one-line errors."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fasttrack import process
from fasttrack.batch.score import Engine, _BatchModel, _label_array, score_file
from fasttrack.config import Settings, TrainConfig
from fasttrack.data import arrays, stream
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import read_table
from fasttrack.data.stream import open_batches
from fasttrack.errors import ConfigError, DataError, ModelLoadError, SchemaValidationError
from fasttrack.export.check import export_to_folder
from fasttrack.features.arrow import ArrowDriver
from fasttrack.features.frames import prepare_features
from fasttrack.registry import cache
from fasttrack.registry.model_folder import (
    DataLineage,
    LoadedModel,
    load_model_folder,
    metadata_for,
    save_model_folder,
)
from fasttrack.runtime.onnx import RUN_FLOATS, RUN_ROWS_MAX, RUN_ROWS_MIN, OnnxRuntime, run_rows
from fasttrack.runtime.select import batch_threads
from fasttrack.training.train import TrainResult, train
from support import FASTTRACK, clean_env, run_cli

ROWS = 3000
BATCH = 400


def training_frame(task: str, rows: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows)
    b = rng.normal(5, 2, rows)
    flag = rng.random(rows) < 0.5
    colour = rng.choice(["red", "green", "blue"], rows).astype(object)
    colour[rng.random(rows) < 0.1] = None
    signal = a - (b - 5) / 2 + flag + (colour == "red") + rng.normal(0, 0.3, rows)
    frame = pd.DataFrame({"a": a, "b": b, "flag": flag, "colour": colour})
    frame["y"] = signal * 10 + 50 if task == "regression" else np.where(signal > 0.5, "yes", "no")
    return frame


def save_model(result: TrainResult, folder: Path) -> Path:
    """A model folder as the registry writes it (MLflow sklearn model + FastTrack files + model.onnx)."""
    staging = folder.parent / f"{folder.name}-staging"
    info, onnx_file = export_to_folder(result.pipeline, result.schema, result.task, result.X_test, staging)
    assert info.status == "ok", info.reason
    assert onnx_file is not None
    lineage = DataLineage(source="memory://scoring.csv", fingerprint="abc", rows=500, columns=5)
    metadata = metadata_for(result, name="scoring", data=lineage, onnx=info)
    return save_model_folder(result, folder, metadata, extra_files=[onnx_file])


def fitted(task: str) -> TrainResult:
    frame = training_frame(task)
    config = TrainConfig.model_validate(
        {"data": "memory://scoring.csv", "target": "y", "model": "linear", "task": task, "cv_folds": 0}
    )
    return train(frame, config, infer_schema(frame, "y", task))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model_folder(save_model(fitted("classification"), tmp_path_factory.mktemp("cls") / "model"))


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model_folder(save_model(fitted("regression"), tmp_path_factory.mktemp("reg") / "model"))


def messy_input(rows: int = ROWS, seed: int = 1) -> pd.DataFrame:
    """Data to score as people send it: text numbers with spaces, missing markers, unseen categories, ids."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows).round(3).astype(str).astype(object)
    a[::11] = " 0.25 "
    a[5::17] = "?"
    a[7::19] = ""
    b = rng.normal(5, 2, rows).round(2).astype(str).astype(object)
    b[3::13] = "NA"
    b[9::23] = "1e1"
    flag = rng.choice(["true", "false", "True", " FALSE "], rows).astype(object)
    flag[4::29] = ""
    colour = rng.choice(["red", " green", "blue ", "purple"], rows).astype(object)
    colour[6::31] = "N/A"
    colour[8::37] = ""
    ids = np.array([f"id-{i:05d}" for i in range(rows)], dtype=object)
    return pd.DataFrame({"id": ids, "a": a, "b": b, "flag": flag, "colour": colour})


def expected_predictions(model: LoadedModel, path: Path) -> tuple[list[Any], np.ndarray[Any, Any] | None]:
    """What the in-memory path (read whole, clean, prepare, predict) gives."""
    features = prepare_features(read_table(path), model.schema)  # the contract reads the raw text too
    labels = model.pipeline.predict(features).tolist()
    if not model.is_classifier:
        return labels, None
    proba = np.asarray(model.pipeline.predict_proba(features))
    return labels, proba


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def messy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "messy.csv"
    messy_input().to_csv(path, index=False)
    return path


@pytest.mark.parametrize("engine", ["onnx", "sklearn"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_streamed_predictions_match_the_pipeline(
    classifier: LoadedModel, messy_csv: Path, tmp_path: Path, suffix: str, engine: Engine
) -> None:
    output = tmp_path / f"scored{suffix}"
    summary = score_file(
        classifier,
        messy_csv,
        output,
        batch_rows=BATCH,
        probabilities=True,
        engine=engine,
    )
    assert (summary.rows, summary.engine) == (ROWS, engine)
    assert summary.batches >= 4  # CSV blocks are gathered into batches of at least BATCH rows
    labels, proba = expected_predictions(classifier, messy_csv)
    frame = read_output(output)
    assert list(frame.columns) == ["id", "a", "b", "flag", "colour", "prediction", "probability_no", "probability_yes"]
    assert frame["id"].tolist() == [f"id-{i:05d}" for i in range(ROWS)]  # every row, in order
    assert frame["prediction"].tolist() == labels
    assert proba is not None
    np.testing.assert_allclose(frame[["probability_no", "probability_yes"]].to_numpy(float), proba, atol=1e-4)
    # Features are written normalised, typed by the schema.
    assert frame["a"].iloc[0] == pytest.approx(float(messy_input()["a"].iloc[0]))
    assert pd.isna(frame["a"].iloc[5]) and pd.isna(frame["colour"].iloc[6])
    assert frame["colour"].iloc[1:4].tolist() == [c.strip() for c in messy_input()["colour"].iloc[1:4]]
    assert not list(tmp_path.glob(".*tmp"))


def test_regression_and_other_input_formats(regressor: LoadedModel, tmp_path: Path) -> None:
    clean = messy_input(1000)
    clean["a"] = np.linspace(-2, 2, 1000)
    clean["flag"] = np.arange(1000) % 2 == 0
    sources = {
        "parquet": tmp_path / "in.parquet",
        "jsonl": tmp_path / "in.jsonl",
        "json": tmp_path / "in.json",
        "csv.gz": tmp_path / "in.csv.gz",
    }
    clean.to_parquet(sources["parquet"], index=False)
    clean.to_json(sources["jsonl"], orient="records", lines=True)
    clean.to_json(sources["json"], orient="records")
    clean.to_csv(sources["csv.gz"], index=False)
    expected, _ = expected_predictions(regressor, sources["parquet"])
    for fmt, source in sources.items():
        output = tmp_path / f"out-{fmt.replace('.', '-')}.parquet"
        summary = score_file(regressor, source, output, batch_rows=300)
        assert summary.rows == 1000, fmt
        predicted = pq.read_table(output).column("prediction").to_numpy()
        np.testing.assert_allclose(predicted, expected, rtol=1e-4, err_msg=fmt)


def test_a_bad_value_late_in_the_file_leaves_no_output(classifier: LoadedModel, tmp_path: Path) -> None:
    rows = messy_input()
    rows.loc[ROWS - 5, "b"] = "lots"
    source = tmp_path / "bad.csv"
    rows.to_csv(source, index=False)
    output = tmp_path / "scored.csv"
    output.write_text("an earlier result\n")
    with pytest.raises(SchemaValidationError, match=r"b: expected a number, got 'lots' \(1 rows\)"):
        score_file(classifier, source, output, batch_rows=BATCH)
    assert output.read_text() == "an earlier result\n"  # untouched: the new file never replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "scored.csv"]


def test_problems_are_one_clear_error(classifier: LoadedModel, regressor: LoadedModel, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    messy_input(50).drop(columns=["b"]).to_csv(source, index=False)
    with pytest.raises(SchemaValidationError, match="b: required column is missing"):
        score_file(classifier, source, tmp_path / "out.csv")
    messy_input(50).to_csv(source, index=False)
    with pytest.raises(ConfigError, match="regressor"):
        score_file(regressor, source, tmp_path / "out.csv", probabilities=True)
    with pytest.raises(ConfigError, match=r"\.xlsx"):
        score_file(classifier, source, tmp_path / "out.xlsx")
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,a,b,flag,colour\n")
    with pytest.raises(DataError, match="no data rows"):
        score_file(classifier, header_only, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_engine_choice(classifier: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in.csv"
    messy_input(50).to_csv(source, index=False)
    assert score_file(classifier.path, source, tmp_path / "out.csv").engine == "onnx"
    no_onnx = classifier.metadata.model_copy(update={"onnx": None})
    monkeypatch.setattr(classifier, "metadata", no_onnx)
    assert score_file(classifier, source, tmp_path / "out.csv").engine == "sklearn"
    with pytest.raises(ModelLoadError, match="no usable ONNX model"):
        score_file(classifier, source, tmp_path / "out.csv", engine="onnx")


def test_batches_keep_their_size_and_types(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    messy_input(2500).to_csv(source, index=False)
    with open_batches(source, batch_rows=1000) as stream:
        assert stream.columns == ["id", "a", "b", "flag", "colour"]
        assert (stream.unit, stream.total) == ("bytes", source.stat().st_size)
        batches = list(stream)
    assert sum(b.num_rows for b, _ in batches) == 2500
    assert all(1000 <= b.num_rows < 2000 for b, _ in batches[:-1])  # small blocks gathered up to batch_rows
    assert {str(b.schema.types) for b, _ in batches} == {str(batches[0][0].schema.types)}


# The SIGABRT at `fasttrack predict`'s exit: pyarrow's streaming CSV reader reads ahead on Arrow's thread pools,
# and a pool thread that released (or read) a Python file after the interpreter began finalising took the GIL
# then, which ended it inside C++ code: "terminate called without an active exception". Core dumps showed
# ~PyReadableFile -> OwnedRefNoGIL -> PyGILState_Ensure -> pthread_exit on an Arrow pool thread.
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_arrow_reads_local_files_without_python(suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local CSV file is Arrow's own (pa.OSFile): none of Arrow's threads calls into Python while reading it."""
    source = tmp_path / f"in{suffix}"
    messy_input(2500).to_csv(source, index=False)

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Python file handed to Arrow")

    monkeypatch.setattr(pa, "PythonFile", refused)
    with open_batches(source, batch_rows=1000) as opened:
        assert sum(batch.num_rows for batch, _ in opened) == 2500


class GatedFile:
    """A URL's file whose reads, from the ``gate``-th on, wait until ``release`` is set."""

    def __init__(self, raw: Any, gate: int) -> None:
        self.raw, self.gate, self.reads = raw, gate, 0
        self.waiting, self.release = threading.Event(), threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads >= self.gate:
            self.waiting.set()
            self.release.wait()
        data: bytes = self.raw.read(size)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def test_closing_a_url_stream_stops_arrow_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL is read through a Python file: closing the stream waits for Arrow's read in progress and leaves
    none of Arrow's threads holding the file, so none can take the GIL after the command has ended."""
    import fsspec

    with fsspec.open("memory://scoring/gated.csv", "wb") as out:
        out.write(messy_input(50_000).to_csv(index=False).encode())
    opened_files: list[GatedFile] = []

    def gated_open(name: str, options: Any, *, native: bool = False) -> tuple[Any, int | None]:
        raw, size = open_raw(name, options, native=native)
        opened_files.append(GatedFile(raw, gate=6 if opened_files else 10**9))  # the second open is the reader's
        return opened_files[-1], size

    open_raw = stream._open_raw
    monkeypatch.setattr(stream, "_open_raw", gated_open)
    opened = open_batches("memory://scoring/gated.csv", batch_rows=1000)
    next(iter(opened))
    gated = opened_files[-1]
    closing = threading.Thread(target=opened.close)
    try:
        assert gated.waiting.wait(60)  # Arrow's read-ahead is now inside a read, on its own thread
        closing.start()
        closing.join(0.5)
        assert closing.is_alive()  # close() waits for that read...
    finally:
        gated.release.set()  # (a blocked read left behind would hang this process at its exit)
    closing.join(60)
    assert not closing.is_alive()
    watched = weakref.ref(gated)
    del opened, gated, opened_files[:]
    gc.collect()
    assert watched() is None  # ...and nothing in Arrow holds the file any more


def test_the_command_streams_and_reports(classifier: LoadedModel, messy_csv: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.jsonl"
    args = ["predict", "--model", str(classifier.path), "--data", str(messy_csv), "--out", str(output)]
    result = run_cli(*args, "--batch-rows", "1000", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert f"{ROWS} predictions written to {output} (onnx," in result.stdout
    first = json.loads(output.read_text().splitlines()[0])
    assert set(first) == {"id", "a", "b", "flag", "colour", "prediction"}

    bad = tmp_path / "bad.csv"
    messy_input(10).drop(columns=["a"]).to_csv(bad, index=False)
    failed = run_cli(
        "predict", "--model", str(classifier.path), "--data", str(bad), "--out", str(output), home=tmp_path
    )
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "error: input does not match the model's schema: a: required column is missing"
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_ctrl_c_stops_the_command_with_one_line(classifier: LoadedModel, tmp_path: Path) -> None:
    """fasttrack predict interrupted half-way (a real SIGINT): exit 130, one line, no output left behind."""
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    messy_input(300_000).to_csv(source, index=False)
    args = ["predict", "--model", str(classifier.path), "--data", str(source), "--out", str(output)]
    running = subprocess.Popen(
        [*FASTTRACK, *args, "--batch-rows", "500"],
        env=clean_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The temporary output appears with the first scored batch: the command is then half-way.
        while running.poll() is None and not list(tmp_path.glob(".out.csv.*.tmp")):
            time.sleep(0.01)
        running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=300)
    finally:
        running.kill()
    assert running.returncode == 130, err
    assert [line for line in err.splitlines() if line.strip()] == ["interrupted"]
    assert out == ""
    assert not output.exists()
    assert not list(tmp_path.glob(".out.csv*"))


def test_the_onnx_path_never_unpickles_and_slices_any_size(classifier: LoadedModel, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(classifier.path, folder)
    (folder / "fasttrack-manifest.json").unlink()  # as a folder saved before manifests, which would refuse this
    (folder / "model.skops").write_bytes(b"not a skops archive")  # only scikit-learn would need it
    source = tmp_path / "in.csv"
    messy_input(500).to_csv(source, index=False)
    summary = score_file(folder, source, tmp_path / "out.csv", probabilities=True)
    assert (summary.engine, summary.rows) == ("onnx", 500)
    with pytest.raises(ModelLoadError, match="cannot load the model"):
        score_file(folder, source, tmp_path / "out.csv", engine="sklearn")

    predictor = _BatchModel(classifier.path, "onnx")
    runtime = predictor.runtime
    assert isinstance(runtime, OnnxRuntime)
    assert RUN_ROWS_MIN <= runtime.run_rows <= RUN_ROWS_MAX
    assert runtime.threads == batch_threads()  # slices on every core (the server runs one at a time)
    normalizer = ArrowDriver(predictor.schema, ["id", "a", "b", "flag", "colour"])
    batch = normalizer.normalize(pa.RecordBatch.from_pandas(messy_input(500), preserve_index=False))
    labels, proba = predictor.predict(batch, True)
    runtime.run_rows = 7  # many small ONNX Runtime calls give the same answers as one
    small_labels, small_proba = predictor.predict(batch, True)
    assert small_labels.to_pylist() == labels.to_pylist()
    assert proba is not None and small_proba is not None
    np.testing.assert_array_equal(small_proba, proba)


def test_run_rows_follow_the_width_of_the_graph(classifier: LoadedModel) -> None:
    model = _BatchModel(classifier.path, "onnx").runtime
    assert isinstance(model, OnnxRuntime)
    colours = model.category_codes["colour"] if model.category_codes else model.schema.features[3].categories
    assert colours
    width = 3 + len(colours) + 1  # a, b, flag; the colours and "unknown"
    assert run_rows(model) == 1 << ((RUN_FLOATS // width).bit_length() - 1)
    codes, model.category_codes = model.category_codes, {"colour": {f"c{i}": i for i in range(5000)}}
    try:
        assert run_rows(model) == RUN_ROWS_MIN  # one-hot encoding thousands of categories
    finally:
        model.category_codes = codes


def test_chunked_batches_normalise_like_one_batch(classifier: LoadedModel) -> None:
    frame = messy_input(900)
    whole = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    chunked = pa.Table.from_batches([whole.slice(0, 300), whole.slice(300, 1), whole.slice(301)])
    normalizer = ArrowDriver(classifier.schema, list(frame.columns))
    one, many = normalizer.normalize(whole), normalizer.normalize(chunked)
    assert many.table.combine_chunks().equals(one.table.combine_chunks())
    for name, values in one.numeric.items():
        np.testing.assert_array_equal(many.numeric[name], values)
    for name, column in one.categorical.items():
        assert many.categorical[name].values(None).tolist() == column.values(None).tolist()


def test_the_model_is_checked_while_the_input_opens(regressor: LoadedModel, tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(ConfigError, match="regressor"):  # the model's problem first, as before
        score_file(regressor, missing, tmp_path / "out.csv", probabilities=True)
    with pytest.raises(DataError, match="file not found"):
        score_file(regressor, missing, tmp_path / "out.csv")
    assert not [t for t in threading.enumerate() if t.name == "fasttrack-reader"]  # reading stopped each time


def test_predict_imports_only_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring with the ONNX graph of a numeric-only model, from a cached registered version, needs neither
    MLflow nor scikit-learn nor the onnx package, nor pandas and fsspec (a local CSV, read and written through
    pyarrow); the command line's module imports none of the heavy ones."""
    for variable in ("MLFLOW_TRACKING_URI", "FASTTRACK_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    frame = training_frame("classification").drop(columns=["colour"])
    config = TrainConfig.model_validate(
        {"data": "memory://numeric.csv", "target": "y", "model": "linear", "cv_folds": 0}
    )
    result = train(frame, config, infer_schema(frame, "y", "classification"))
    home = tmp_path / "home"
    settings = Settings(home=home, tracking_uri=None)
    cached = cache.folder_for(settings, cache.version_key(settings, "numeric", "4"))
    save_model(result, cached)
    source = tmp_path / "in.csv"
    messy_input(100).drop(columns=["colour"]).to_csv(source, index=False)
    heavy = ["mlflow", "sklearn", "onnx", "skl2onnx", "matplotlib"]
    script = (
        "import sys\n"
        "import fasttrack.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in HEAVY + ['pandas']))\n"
        "fasttrack.cli.app(args=sys.argv[1:], standalone_mode=False)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY + ['pandas', 'fsspec'])))\n"
    ).replace("HEAVY", repr(heavy))
    args = ["predict", "--model", "models:/numeric/4", "--data", str(source), "--out", str(tmp_path / "out.csv")]
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "FASTTRACK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    at_import, after_predict, *_ = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert at_import == "[]"
    assert after_predict == "[]"
    assert "100 predictions written" in done.stdout


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5, -0.0, np.nan, 3.0]),
        np.array([1, 2, 3], dtype=np.int32),
        np.array([5, -7], dtype=np.int64),
        np.array([0.25, 1.0], dtype=np.float32),
        np.array([True, False, True, True, False, False, False, False, True]),
        np.array([], dtype=np.float64),
        np.array([[1.0, 2.0], [3.0, 4.0]])[:, 1],  # not contiguous
    ],
)
def test_arrays_made_from_buffers_are_what_pa_array_makes(values: np.ndarray[Any, Any]) -> None:
    def assert_same(made: pa.Array, expected: pa.Array) -> None:
        made.validate(full=True)
        assert made.type == expected.type
        np.testing.assert_equal(made.to_pylist(), expected.to_pylist())  # NaN equals NaN here

    assert_same(arrays.arrow_array(values), pa.array(values))
    missing = np.arange(len(values)) % 2 == 1
    assert_same(arrays.arrow_array(values, missing=missing), pa.array(values, mask=missing))


def test_strings_scalars_and_numpy_views_made_without_pa_array() -> None:
    for texts in (["red", "", "grün", "a,b"], []):
        assert arrays.arrow_strings(texts).equals(pa.array(texts, pa.string()))
    assert arrays.arrow_scalar(None, pa.string()).equals(pa.scalar(None, pa.string()))
    assert arrays.arrow_scalar("true", pa.string()).equals(pa.scalar("true"))
    assert arrays.arrow_scalar(1.0, pa.float64()).equals(pa.scalar(1.0))
    assert arrays.arrow_scalar(2.0, pa.float32()).equals(pa.scalar(2.0, pa.float32()))
    chunked = pa.chunked_array([pa.array([1.5, None]), pa.array([None, 4.0, 5.0]).slice(1)])
    np.testing.assert_array_equal(arrays.float_values(chunked), [1.5, np.nan, 4.0, 5.0])
    np.testing.assert_array_equal(arrays.float_values(pa.array([2.0, 3.0]).slice(1)), [3.0])
    assert arrays.float_values(pa.chunked_array([], pa.float64())).shape == (0,)
    indices = pa.chunked_array([pa.array([0, None], pa.int32()), pa.array([2, 1, 0], pa.int32()).slice(1)])
    np.testing.assert_array_equal(arrays.int_values(indices, 9), [0, 9, 1, 0])
    assert arrays.int_values(pa.chunked_array([], pa.int32()), 9).shape == (0,)


@pytest.mark.parametrize(
    "labels", [np.array(["no", "yes"], dtype=object), np.array([0, 1]), np.array([False, True]), np.array([0.5, 2.0])]
)
def test_label_dictionaries_are_what_pa_array_makes(labels: np.ndarray[Any, Any]) -> None:
    assert _label_array(labels).equals(pa.array(labels.tolist()))


def test_scoring_leaves_the_process_as_it_was(classifier: LoadedModel, tmp_path: Path) -> None:
    """score_file is a library function: no process-wide setting changed and no thread left behind, whether it
    succeeds or fails half-way (the CLI's process settings are fasttrack.process's, tested there)."""
    source, bad = tmp_path / "in.csv", tmp_path / "bad.csv"
    messy_input(5000).to_csv(source, index=False)
    broken = messy_input(5000)
    broken.loc[4000, "b"] = "not a number"
    broken.to_csv(bad, index=False)

    def settings() -> tuple[Any, ...]:
        return process.huge_pages_disabled(), gc.isenabled(), gc.get_freeze_count()

    class Watch:  # the settings while scoring, after each batch
        def __init__(self) -> None:
            self.seen: set[tuple[Any, ...]] = set()

        def start(self, stream: stream.BatchStream) -> None:
            self.seen.add(settings())

        def update(self, rows: int, position: int) -> None:
            self.seen.add(settings())

    before, threads, watch = settings(), set(threading.enumerate()), Watch()
    for engine in ("onnx", "sklearn"):
        score_file(classifier, source, tmp_path / "out.csv", batch_rows=1000, engine=engine, progress=watch)
        assert watch.seen == {before}
        assert settings() == before
        assert {thread for thread in threading.enumerate() if thread.is_alive()} <= threads
        with pytest.raises(SchemaValidationError):
            score_file(classifier, bad, tmp_path / "out.csv", batch_rows=1000, engine=engine)
        assert settings() == before
        assert {thread for thread in threading.enumerate() if thread.is_alive()} <= threads


@pytest.mark.parametrize("engine", ["onnx", "sklearn"])
def test_parquet_categories_with_narrow_dictionary_indices(
    classifier: LoadedModel, tmp_path: Path, engine: Engine
) -> None:
    # pandas writes a category column as a dictionary with int8 indices; Parquet batches keep them.
    frame = messy_input(600)
    frame["colour"] = frame["colour"].astype("category")
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    assert pq.read_table(source).schema.field("colour").type.index_type == pa.int8()
    plain = tmp_path / "plain.parquet"
    frame.astype({"colour": object}).to_parquet(plain, index=False)
    scored = score_file(classifier, source, tmp_path / "out.csv", batch_rows=200, engine=engine)
    assert scored.rows == 600
    score_file(classifier, plain, tmp_path / "plain.csv", batch_rows=200, engine=engine)
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    np.testing.assert_array_equal(
        arrays.int_values(pa.array([0, None, 2], pa.int8()), 9), np.array([0, 9, 2], dtype=np.int32)
    )
