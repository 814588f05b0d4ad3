"""The inference log's writer: what it writes reads back equal, files rotate and appear whole, partitions, drops
counted when the queue is full or the store fails, everything written on close, many threads at once."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from fasttrack.data.schema import FeatureSchema
from fasttrack.errors import ConfigError
from fasttrack.monitoring import log_layout as layout
from fasttrack.monitoring.log_writer import InferenceLog, LogSource, open_store
from fasttrack.serving.metrics import ServerMetrics
from support import read_only_folder

FEATURES = [
    FeatureSchema(name="amount", kind="numeric", dtype="float64", nullable=True, missing_ratio=0.1),
    FeatureSchema(
        name="colour", kind="categorical", dtype="str", nullable=True, missing_ratio=0.1, categories=["red", "blue"]
    ),
    FeatureSchema(name="member", kind="boolean", dtype="bool", nullable=False, missing_ratio=0.0),
]
LABELS = ["no", "yes"]
#: 2026-12-03 23:59:59.5 UTC and half a second later, the next day: exact in microseconds.
BEFORE_MIDNIGHT = dt.datetime(2026, 12, 3, 23, 59, 59, 500_000, tzinfo=dt.UTC).timestamp()
AFTER_MIDNIGHT = BEFORE_MIDNIGHT + 1.0


class Clock:
    """A settable clock for rows' times."""

    def __init__(self, now: float = BEFORE_MIDNIGHT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(0.01)


def files(root: Path, table: str = "predictions") -> list[Path]:
    """The complete files of a table, oldest first."""
    return sorted((p for p in (root / table).rglob("*") if layout.is_complete(p.name)), key=lambda p: p.name)


def read(root: Path, table: str = "predictions") -> list[dict[str, Any]]:
    """Every row of a table, as a reader sees it: a Hive-partitioned Parquet dataset."""
    dataset = ds.dataset(root / table, format="parquet", partitioning="hive")
    rows: list[dict[str, Any]] = dataset.to_table().to_pylist()
    return rows


def classifier_source(log: InferenceLog, model: str = "churn", version: str = "1") -> LogSource:
    return log.source(model, version, FEATURES, classifier=True, labels=LABELS)


def send(source: LogSource, first: int, count: int) -> dict[str, dict[str, Any]]:
    """Log ``count`` classifier rows with ids ``r{first}``...; return what each should read back as."""
    numbers = range(first, first + count)
    columns = {
        "amount": [None if i % 7 == 0 else i * 1.5 for i in numbers],
        "colour": [None if i % 5 == 0 else ("red", "blue", "green")[i % 3] for i in numbers],
        "member": [float(i % 2) for i in numbers],
    }
    predictions = ["yes" if i % 3 else "no" for i in numbers]
    proba = np.array([[0.25, 0.75] if p == "yes" else [0.625, 0.375] for p in predictions])
    ids = [f"r{i}" for i in numbers]
    source.predictions(columns, predictions, proba, ids)
    return {
        pid: {
            "input.amount": columns["amount"][row],
            "input.colour": columns["colour"][row],
            "input.member": columns["member"][row],
            "prediction": predictions[row],
            "proba.no": proba[row, 0],
            "proba.yes": proba[row, 1],
        }
        for row, pid in enumerate(ids)
    }


def test_every_row_reads_back_as_it_went_in(tmp_path: Path) -> None:
    root = tmp_path / "log"
    clock = Clock()
    log = InferenceLog(str(root), clock=clock, poll_seconds=0.01)
    log.start()
    source = classifier_source(log)
    sent = send(source, 0, 1)
    sent |= send(source, 1, 30)
    # Labels are logged as category text (True is "true"), as predictions are.
    source.feedback([("r1", "yes", "matched"), ("r2", True, "duplicate"), ("elsewhere", "no", "unknown")])
    assert log.close()

    got = {row.pop("prediction_id"): row for row in read(root)}
    assert set(got) == set(sent)
    when = dt.datetime.fromtimestamp(BEFORE_MIDNIGHT, dt.UTC)
    for pid, expected in sent.items():
        row = got[pid]
        assert row.pop("timestamp") == when
        assert (row.pop("version"), row.pop("model"), str(row.pop("date"))) == ("1", "churn", "2026-12-03")
        assert row == expected, pid
    schema = ds.dataset(root / "predictions", format="parquet", partitioning="hive").schema
    in_files = pa.schema([f for f in schema if f.name not in (layout.MODEL, layout.DATE)])
    assert in_files.equals(layout.predictions_schema(FEATURES, classifier=True, labels=LABELS))

    labels = sorted(read(root, "feedback"), key=lambda r: r["prediction_id"])
    assert [(r["prediction_id"], r["label"], r["outcome"], r["version"]) for r in labels] == [
        ("elsewhere", "no", "unknown", "1"),
        ("r1", "yes", "matched", "1"),
        ("r2", "true", "duplicate", "1"),
    ]
    assert (log.tally.written_rows, log.tally.files, log.tally.dropped_rows) == (
        {"predictions": 31, "feedback": 3},
        {"predictions": 1, "feedback": 1},
        {},
    )


def test_a_regressor_logs_numbers(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = InferenceLog(str(root), clock=Clock())
    source = log.source("price", "local", FEATURES[:1], classifier=False, labels=[])
    source.predictions({"amount": [1.0, None]}, [10.5, -2.0], None, ["a", "b"])
    source.feedback([("a", 11, "matched"), ("b", "not a number", "unknown"), ("c", float("inf"), "unknown")])
    log.close()
    assert [(r["prediction_id"], r["input.amount"], r["prediction"]) for r in read(root)] == [
        ("a", 1.0, 10.5),
        ("b", None, -2.0),
    ]
    assert [(r["prediction_id"], r["label"]) for r in read(root, "feedback")] == [("a", 11.0), ("b", None), ("c", None)]
    assert not any(name.startswith("proba.") for name in read(root)[0])


def test_files_rotate_by_rows(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = InferenceLog(str(root), rotate_rows=100, rotate_seconds=3600, poll_seconds=0.01)
    log.start()
    source = classifier_source(log)
    for call in range(25):
        send(source, call * 10, 10)
    wait_for(lambda: len(files(root)) == 2, "two files of 100 rows")
    log.close()
    written = files(root)
    assert [pq.read_metadata(p).num_rows for p in written] == [100, 100, 50]
    assert len(read(root)) == 250


def test_files_rotate_by_age(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = InferenceLog(str(root), rotate_rows=1_000_000, rotate_seconds=0.2, poll_seconds=0.01)
    log.start()
    source = classifier_source(log)
    send(source, 0, 10)
    wait_for(lambda: len(files(root)) == 1, "the first rows' file")
    send(source, 10, 5)
    wait_for(lambda: len(files(root)) == 2, "the next rows' file")
    assert [pq.read_metadata(p).num_rows for p in files(root)] == [10, 5]
    log.close()
    assert len(files(root)) == 2


def test_files_appear_whole(tmp_path: Path) -> None:
    """A reader listing the folder while the writer writes never finds a file it cannot read in full."""
    root = tmp_path / "log"
    log = InferenceLog(str(root), rotate_rows=50, rotate_seconds=3600, poll_seconds=0.005)
    log.start()
    source = classifier_source(log)
    done = threading.Event()
    seen: set[Path] = set()
    failures: list[str] = []

    def reader() -> None:
        while not done.is_set():
            for path in files(root):
                try:
                    assert pq.read_table(path).num_rows == 50
                except Exception as exc:  # any failure to read a finished file is the finding
                    failures.append(f"{path.name}: {exc}")
                seen.add(path)

    thread = threading.Thread(target=reader)
    thread.start()
    for call in range(80):
        send(source, call * 25, 25)
        time.sleep(0.002)
    log.close()
    done.set()
    thread.join()
    assert failures == []
    assert len(seen) > 5 and len(files(root)) == 40
    assert [p for p in root.rglob("*") if p.name.startswith(".")] == []

    # A temporary file a killed writer left behind is not part of the log for readers.
    partition = files(root)[0].parent
    (partition / f".{files(root)[0].name}.tmp").write_bytes(b"PAR1 half a file")
    assert len(read(root)) == 2000


def test_partitions_by_model_and_utc_day(tmp_path: Path) -> None:
    root = tmp_path / "log"
    clock = Clock(BEFORE_MIDNIGHT)
    log = InferenceLog(str(root), clock=clock)
    first, second = (classifier_source(log, "churn model/v2", version) for version in ("1", "2"))
    other_features = log.source("churn model/v2", "3", FEATURES[:2], classifier=True, labels=LABELS)
    send(first, 0, 3)
    clock.now = AFTER_MIDNIGHT
    send(first, 3, 2)
    send(second, 5, 2)
    other_features.predictions({"amount": [1.0], "colour": ["red"]}, ["no"], np.array([[0.5, 0.5]]), ["x"])
    send(classifier_source(log, "other"), 100, 1)
    log.close()

    folders = sorted(str(p.relative_to(root)) for p in (root / "predictions").glob("*/*"))
    assert folders == [
        "predictions/model=churn%20model%2Fv2/date=2026-12-03",
        "predictions/model=churn%20model%2Fv2/date=2026-12-04",
        "predictions/model=other/date=2026-12-04",
    ]
    # Versions 1 and 2 have the same columns and share a file; version 3's columns are its own.
    day_two = root / "predictions" / "model=churn%20model%2Fv2" / "date=2026-12-04"
    assert sorted(pq.read_metadata(p).num_rows for p in day_two.iterdir()) == [1, 4]
    version_three = ds.dataset(
        [p for p in day_two.iterdir() if pq.read_metadata(p).num_rows == 1], format="parquet"
    ).to_table()
    assert version_three.column_names[-4:] == ["input.colour", "prediction", "proba.no", "proba.yes"]
    rows = ds.dataset(root / "predictions" / "model=other", format="parquet", partitioning="hive").to_table()
    assert rows.column("prediction_id").to_pylist() == ["r100"]
    partitioned = ds.dataset(root / "predictions", format="parquet", partitioning="hive")
    models = Counter(
        (row["model"], str(row["date"]), row["version"])
        for row in partitioned.to_table(columns=["model", "date", "version"]).to_pylist()
    )
    assert models == {
        ("churn model/v2", "2026-12-03", "1"): 3,
        ("churn model/v2", "2026-12-04", "1"): 2,
        ("churn model/v2", "2026-12-04", "2"): 2,
        ("churn model/v2", "2026-12-04", "3"): 1,
        ("other", "2026-12-04", "1"): 1,
    }


def test_a_full_queue_drops_and_counts_rather_than_waits(tmp_path: Path) -> None:
    root = tmp_path / "log"
    metrics = ServerMetrics()
    log = InferenceLog(str(root), queue_rows=10, counters=metrics.inference_log)
    source = classifier_source(log)
    for call in range(3):  # nothing takes the queue yet: the third call finds it full
        send(source, call * 5, 5)
    source.feedback([("r0", "yes", "matched")])
    assert log.queued == 10

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(f"fasttrack_inference_log_{name}", labels)

    assert sample("dropped_rows_total", table="predictions", reason="queue_full") == 5
    assert sample("dropped_rows_total", table="feedback", reason="queue_full") == 1
    log.start()
    assert log.close()
    assert sorted(row["prediction_id"] for row in read(root)) == sorted(f"r{i}" for i in range(10))
    assert sample("written_rows_total", table="predictions") == 10
    assert sample("files_total", table="predictions") == 1
    send(source, 100, 3)  # after close
    assert sample("dropped_rows_total", table="predictions", reason="shutdown") == 3
    assert sample("dropped_rows_total", table="predictions", reason="store_error") == 0


def test_the_queue_gauge_shows_the_rows_the_writer_found(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    log = InferenceLog(str(tmp_path / "log"), queue_rows=100, counters=metrics.inference_log, poll_seconds=3600)
    log.start()
    send(classifier_source(log), 0, 30)  # a quarter of the queue: the writer is woken (else it looks once an hour)
    wait_for(lambda: metrics.registry.get_sample_value("fasttrack_inference_log_queue_rows") == 30, "the gauge")
    assert log.close()


def test_a_read_only_folder_costs_rows_not_requests(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fasttrack.monitoring.log_writer")
    with read_only_folder(tmp_path / "read-only") as folder:
        root = folder / "log"
        log = InferenceLog(str(root), rotate_rows=10, rotate_seconds=3600, poll_seconds=0.01)
        log.start()
        source = classifier_source(log)
        for call in range(6):
            send(source, call * 10, 10)  # returns at once, whatever the store does
        wait_for(lambda: log.tally.dropped_rows.get(("predictions", "store_error")) == 60, "60 rows counted")
        assert not root.exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # six files refused, one problem, one line
    assert f"cannot write to {root}" in errors[0].getMessage()

    send(source, 100, 10)  # the folder is writable again
    wait_for(lambda: log.tally.written_rows.get("predictions") == 10, "rows written again")
    assert "writing to" in caplog.records[-1].getMessage()
    assert log.close()
    assert sorted(row["prediction_id"] for row in read(root)) == sorted(f"r{i}" for i in range(100, 110))


def test_close_writes_everything_queued_and_buffered(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = InferenceLog(str(root), rotate_rows=1_000_000, rotate_seconds=3600, poll_seconds=3600)
    log.start()
    source = classifier_source(log)
    for call in range(20):
        send(source, call * 7, 7)
    source.feedback([("r3", "no", "matched")])
    assert files(root) == []
    assert log.close(timeout=30)
    assert len(read(root)) == 140 and len(read(root, "feedback")) == 1
    assert log.close()  # again: nothing to do
    send(source, 1000, 2)
    assert log.tally.dropped_rows == {("predictions", "shutdown"): 2}


def test_threads_log_every_row_exactly_once(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = InferenceLog(str(root), rotate_rows=700, rotate_seconds=3600, poll_seconds=0.005)
    log.start()
    sources = [classifier_source(log, version=str(v)) for v in (1, 2)]
    sent: list[list[str]] = [[] for _ in range(8)]

    def client(number: int) -> None:
        pick = random.Random(number)
        for call in range(300):
            first = (number * 300 + call) * 10
            sent[number].extend(send(sources[call % 2], first, pick.randint(1, 5)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.close()
    logged = Counter(row["prediction_id"] for row in read(root))
    expected = [pid for ids in sent for pid in ids]
    assert sorted(logged) == sorted(expected) and set(logged.values()) == {1}
    assert log.tally.written_rows == {"predictions": len(expected)} and log.tally.dropped_rows == {}


def test_bad_locations_and_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a folder or an s3:// or gs:// prefix"):
        open_store("http://example.com/log")
    with pytest.raises(ConfigError, match="queue_rows >= 1"):
        InferenceLog(str(tmp_path), queue_rows=0)
    with pytest.raises(ConfigError, match="rotate_seconds > 0"):
        InferenceLog(str(tmp_path), rotate_seconds=0)
    assert open_store(f"file://{tmp_path}").root == str(tmp_path.resolve())
    if importlib.util.find_spec("gcsfs") is None:  # the gcs extra is not installed here: said at start, in one line
        with pytest.raises(ConfigError, match="needs gcsfs: install FastTrack with the gcs extra"):
            open_store("gs://bucket/log")
