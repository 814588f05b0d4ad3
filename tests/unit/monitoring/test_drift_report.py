"""The drift report: the drifted feature named and only it, drift per time window, live and estimated accuracy,
the calibration note, and a self-contained HTML file."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema
from fasttrack.monitoring.drift_report import MAX_WINDOWS, ReportData, Windows, data_drift, version_drift
from fasttrack.monitoring.log_reader import LogReader, Period, join_labels, timestamps_us
from fasttrack.monitoring.performance import Calibration, ReliabilityBin
from fasttrack.monitoring.report_html import render, write_report
from fasttrack.monitoring.statistics import DEFAULT_PSI_THRESHOLD
from inference_log import START, write_feedback, write_predictions

LABELS = ["no", "yes"]


def frame(rows: int, seed: int, *, amount_shift: float = 0.0) -> pd.DataFrame:
    """Every feature kind from one fixed distribution; ``amount`` optionally shifted."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(50.0 + amount_shift, 10.0, rows)
    return pd.DataFrame(
        {
            "amount": amount,
            "rooms": rng.poisson(2, rows),
            "colour": rng.choice(["red", "blue", "green"], rows, p=[0.5, 0.3, 0.2]),
            "member": rng.random(rows) < 0.3,
            "label": np.where(rng.random(rows) < 0.5, "yes", "no"),
        }
    )


@pytest.fixture(scope="module")
def schema() -> Schema:
    return infer_schema(frame(5000, seed=0), "label")


def trusted() -> Calibration:
    return Calibration(
        error=0.01, rows=1000, accuracy=0.8, confidence=0.79, bins=[ReliabilityBin(lower=0, upper=1, rows=1000)]
    )


def logged(root: Path, schema: Schema, *, days: int = 2, per_hour: int = 300, shift_after: float = 0.5) -> int:
    """Rows every hour for ``days`` days; ``amount`` shifted by +25 in the last ``1 - shift_after`` of them; a
    label for every other row (right 70 % of the time); probabilities of 0.7 on the predicted class."""
    hours = days * 24
    count = hours * per_hour
    data = pd.concat(
        [
            frame(int(count * shift_after), seed=1),
            frame(count - int(count * shift_after), seed=2, amount_shift=25.0),
        ],
        ignore_index=True,
    )
    rng = np.random.default_rng(3)
    times = np.asarray([START + dt.timedelta(hours=h, seconds=s) for h in range(hours) for s in range(per_hour)])
    predicted = data["label"].to_numpy()
    proba = np.where(predicted[:, None] == np.asarray(LABELS)[None, :], 0.7, 0.3)
    ids = [f"p-{i}" for i in range(count)]
    write_predictions(
        root, "m", "1", schema.features, data, predicted, times=times, ids=ids, labels=LABELS, probabilities=proba
    )
    labelled = np.arange(0, count, 2)
    truth = np.where(
        rng.random(labelled.size) < 0.7, predicted[labelled], np.where(predicted[labelled] == "yes", "no", "yes")
    )
    write_feedback(
        root, "m", "1", [ids[i] for i in labelled], truth.tolist(), times=times[labelled] + dt.timedelta(minutes=5)
    )
    return count


def report_of(root: Path, schema: Schema, calibration: Calibration | None) -> ReportData:
    reader = LogReader(str(root))
    joined = join_labels(
        reader.read("predictions", "m", Period()), reader.read("feedback", "m", Period(), bounded=False)
    )
    stamps = timestamps_us(joined.table)
    windows = Windows.covering(int(stamps.min()), int(stamps.max()))
    drift = version_drift(
        "1",
        joined.table,
        schema,
        lambda name: DEFAULT_PSI_THRESHOLD,
        windows=windows,
        timestamps_us=stamps,
        labels=LABELS,
        calibration=calibration,
    )
    return ReportData(model="m", source=str(root), period="the whole log", versions=[drift], windows=windows)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory, schema: Schema) -> Path:
    root = tmp_path_factory.mktemp("drift-log")
    logged(root, schema)
    return root


def test_the_drifted_feature_is_named_and_only_it(log: Path, schema: Schema) -> None:
    report = report_of(log, schema, trusted())
    (version,) = report.versions
    assert [f.name for f in version.drifted] == ["amount"]
    assert version.features[0].name == "amount"  # drifted features first
    assert {f.name for f in version.features} == {"amount", "rooms", "colour", "member"}
    by_name = {f.name: f for f in version.features}
    assert by_name["amount"].scores["ks"] > 0.3 and set(by_name["colour"].scores) == {"psi", "js"}
    assert version.prediction is not None and not version.prediction.drifted
    html = render(report)
    drifted = re.search(r'<ul class="drifted">(.*?)</ul>', html, re.S)
    assert drifted is not None and re.findall(r"<li>(\w+) ", drifted.group(1)) == ["amount"]


def test_drift_per_window_starts_where_the_shift_does(log: Path, schema: Schema) -> None:
    report = report_of(log, schema, trusted())
    assert report.windows is not None and report.windows.count <= MAX_WINDOWS
    assert report.windows.width == 3 * 3600  # 48 hours in at most 24 windows
    amount = report.versions[0].features[0].window_psi
    assert amount is not None and amount.size == report.windows.count
    half = amount.size // 2
    assert (amount[:half] < 0.1).all() and (amount[half:] > DEFAULT_PSI_THRESHOLD).all()
    rooms = next(f for f in report.versions[0].features if f.name == "rooms").window_psi
    assert rooms is not None and (rooms < DEFAULT_PSI_THRESHOLD).all()


def test_live_accuracy_per_window_and_the_estimate_beside_it(log: Path, schema: Schema) -> None:
    version = report_of(log, schema, trusted()).versions[0]
    assert version.labelled == version.rows // 2
    live = version.performance
    assert live is not None and live.metric_names == ["accuracy"]
    assert live.overall["accuracy"] == pytest.approx(0.7, abs=0.02)
    assert np.nanmax(np.abs(live.metrics["accuracy"] - 0.7)) < 0.08
    assert live.estimated is not None and live.estimated == pytest.approx(0.7)
    assert version.calibration_note is None


def test_an_uncalibrated_model_says_so_and_draws_no_estimate(log: Path, schema: Schema) -> None:
    for calibration, said in (
        (None, "not known to be calibrated"),
        (trusted().model_copy(update={"error": 0.2}), "0.200"),
    ):
        version = report_of(log, schema, calibration).versions[0]
        assert version.performance is not None and version.performance.estimated is None
        assert version.calibration_note is not None and said in version.calibration_note
        assert said in render(report_of(log, schema, calibration))


def test_the_html_is_self_contained(log: Path, schema: Schema, tmp_path: Path) -> None:
    path = write_report(report_of(log, schema, trusted()), tmp_path / "out" / "drift.html")
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link)\b", html)
    images = re.findall(r'src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].split(",", 1)[1]).startswith(b"\x89PNG")
    assert [p.name for p in path.parent.iterdir()] == ["drift.html"]  # written aside, then renamed


def test_a_data_file_has_drift_sections_only(schema: Schema) -> None:
    from fasttrack.features.frames import frame_input

    data = frame(2000, seed=9)
    data["colour"] = "purple"
    prepared = frame_input(data, schema)
    drift = data_drift("1", schema, prepared.columns, prepared.rows, lambda name: DEFAULT_PSI_THRESHOLD)
    assert [f.name for f in drift.drifted] == ["colour"]
    assert drift.prediction is None and drift.performance is None
    html = render(ReportData(model="m", source="new.csv", period="a data file", versions=[drift]))
    assert "Drift over time" not in html and "Live performance" not in html and "colour" in html


def test_windows_cover_the_period_in_whole_widths() -> None:
    first = int(dt.datetime(2026, 12, 1, 8, 7, tzinfo=dt.UTC).timestamp() * 1e6)
    windows = Windows.covering(first, first + int(3600e6 * 5))
    assert windows.width == 15 * 60 and windows.start == dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    assert windows.count <= MAX_WINDOWS
    index = windows.index(np.array([first, first + int(3600e6 * 5)]))
    assert index.tolist() == [0, windows.count - 1]
    one = Windows.covering(first, first)
    assert (one.count, one.width) == (1, 60)


def test_a_version_without_labels_has_no_performance(tmp_path: Path, schema: Schema) -> None:
    data = frame(300, seed=4)
    times = [START + dt.timedelta(seconds=i) for i in range(300)]
    write_predictions(
        tmp_path,
        "m",
        "1",
        schema.features,
        data,
        data["label"],
        times=times,
        ids=[f"x{i}" for i in range(300)],
        labels=LABELS,
    )
    reader = LogReader(str(tmp_path))
    joined = join_labels(reader.read("predictions", "m", Period()), pa.table({}))
    stamps = timestamps_us(joined.table)
    windows = Windows.covering(int(stamps.min()), int(stamps.max()))
    version = version_drift(
        "1", joined.table, schema, lambda _: 0.2, windows=windows, timestamps_us=stamps, labels=LABELS
    )
    assert version.performance is None and version.labelled == 0


def test_a_regressor_has_rmse_and_mae_and_its_predictions_binned(tmp_path: Path) -> None:
    data = frame(3000, seed=5).drop(columns="label")
    data["price"] = data["amount"] * 3 + np.random.default_rng(6).normal(0, 5, len(data))
    schema = infer_schema(data, "price", "regression")
    live = frame(600, seed=7).drop(columns="label")
    predicted = live["amount"].to_numpy() * 3
    times = [START + dt.timedelta(minutes=i) for i in range(600)]
    ids = [f"r{i}" for i in range(600)]
    write_predictions(tmp_path, "m", "1", schema.features, live, predicted, times=times, ids=ids, classifier=False)
    truth = predicted + 2.0  # every prediction 2 below the truth: RMSE = MAE = 2
    write_feedback(tmp_path, "m", "1", ids, truth.tolist(), times=times, classifier=False)
    reader = LogReader(str(tmp_path))
    joined = join_labels(reader.read("predictions", "m", Period()), reader.read("feedback", "m", Period()))
    stamps = timestamps_us(joined.table)
    windows = Windows.covering(int(stamps.min()), int(stamps.max()))
    version = version_drift("1", joined.table, schema, lambda _: 0.2, windows=windows, timestamps_us=stamps)
    live_metrics = version.performance
    assert live_metrics is not None and live_metrics.metric_names == ["rmse", "mae"]
    assert live_metrics.overall == pytest.approx({"rmse": 2.0, "mae": 2.0})
    assert version.calibration_note is None  # a regressor has no accuracy to estimate
    assert version.prediction is not None and set(version.prediction.scores) == {"psi", "ks"}
    assert not version.prediction.drifted
    assert "rmse" in render(ReportData(model="m", source="log", period="all", versions=[version], windows=windows))


def test_a_report_that_cannot_be_written_is_one_error(tmp_path: Path) -> None:
    from fasttrack.errors import DataError

    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(DataError, match="cannot write the report to"):
        write_report(ReportData(model="m", source="s", period="p", versions=[]), tmp_path / "taken" / "drift.html")
