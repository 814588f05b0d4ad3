"""Reading the inference log: the period's partitions and rows, versions with different features, labels joined
by prediction id (the first valid label wins), and the times the command line takes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.schema import FeatureSchema
from fasttrack.errors import ConfigError, DataError
from fasttrack.monitoring import log_layout
from fasttrack.monitoring.log_reader import (
    LogReader,
    Period,
    first_labels,
    join_labels,
    parse_instant,
    versions_served,
)
from inference_log import START, minutes, write_feedback, write_predictions

AMOUNT = FeatureSchema(name="amount", kind="numeric", dtype="float64", nullable=False, missing_ratio=0.0)
COLOUR = FeatureSchema(name="colour", kind="categorical", dtype="str", nullable=False, missing_ratio=0.0)
MEMBER = FeatureSchema(name="member", kind="boolean", dtype="bool", nullable=False, missing_ratio=0.0)


def rows(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(50, 10, count),
            "colour": rng.choice(["red", "blue"], count),
            "member": rng.random(count) < 0.5,
        }
    )


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Two days of version 1 (amount, colour), then version 2 (amount, colour, member) on the third day."""
    root = tmp_path / "log"
    times = minutes(48 * 6, every=10)  # 2 days, a row every 10 minutes
    write_predictions(
        root, "m", "1", [AMOUNT, COLOUR], rows(len(times)), ["yes"] * len(times), times=times, ids=ids("a", len(times))
    )
    later = minutes(6, start=START + dt.timedelta(days=2), every=60)
    write_predictions(root, "m", "2", [AMOUNT, COLOUR, MEMBER], rows(6, 1), ["no"] * 6, times=later, ids=ids("b", 6))
    return root


def test_reads_every_row_with_the_union_of_the_versions_columns(log: Path) -> None:
    table = LogReader(str(log)).read("predictions", "m", Period())
    assert table.num_rows == 48 * 6 + 6
    assert log_layout.input_column("member") in table.column_names
    by_version = table.to_pandas().groupby(log_layout.VERSION)[log_layout.input_column("member")]
    assert by_version.apply(lambda s: s.isna().all()).to_dict() == {"1": True, "2": False}
    assert versions_served(table) == ["1", "2"]


def test_a_period_reads_its_rows_and_only_its_days_partitions(log: Path) -> None:
    # A file no read may open: in the partition of a day outside the period, not a Parquet file at all.
    outside = Path(log_layout.partition(str(log), "predictions", "m", dt.date(2026, 11, 20)))
    outside.mkdir(parents=True)
    (outside / log_layout.file_name(START, 0, "bad")).write_bytes(b"not parquet")
    reader = LogReader(str(log))
    since, until = START + dt.timedelta(hours=10), START + dt.timedelta(hours=20)
    table = reader.read("predictions", "m", Period(since, until))
    times = table[log_layout.TIMESTAMP].to_pylist()
    assert len(times) == 60 and min(times) == since and max(times) < until
    assert all(f"date={dt.date(2026, 11, 20)}" not in p for p in reader.files("predictions", "m", Period(since)).paths)
    with pytest.raises(DataError, match="cannot read the inference log"):
        reader.read("predictions", "m", Period())  # the whole log opens the broken file: one readable error


def test_versions_filter_and_unfinished_files_are_ignored(log: Path) -> None:
    day = Path(log_layout.partition(str(log), "predictions", "m", START.date()))
    (day / ".part-20261201T080000Z-1-000009-tmp.parquet.tmp").write_bytes(b"half written")
    table = LogReader(str(log)).read("predictions", "m", Period(), versions=["2"])
    assert table.num_rows == 6 and set(table[log_layout.VERSION].to_pylist()) == {"2"}


def test_an_unknown_model_or_folder_reads_nothing(tmp_path: Path, log: Path) -> None:
    assert LogReader(str(log)).read("predictions", "other", Period()).num_rows == 0
    assert LogReader(str(tmp_path / "nowhere")).read("feedback", "m", Period()).num_rows == 0


def test_a_feature_that_changed_kind_is_one_readable_error(tmp_path: Path) -> None:
    root = tmp_path / "log"
    as_text = COLOUR.model_copy(update={"name": "amount"})
    write_predictions(root, "m", "1", [AMOUNT], rows(3), ["yes"] * 3, times=minutes(3), ids=ids("a", 3))
    frame = rows(3).assign(amount=["1", "2", "3"])
    write_predictions(root, "m", "2", [as_text], frame, ["yes"] * 3, times=minutes(3, every=2), ids=ids("b", 3))
    changed = r"'input\.amount' is (double|string) in some files and (string|double) in others"
    with pytest.raises(DataError, match=changed):
        LogReader(str(root)).read("predictions", "m", Period())


def test_the_first_valid_label_of_an_id_wins(tmp_path: Path) -> None:
    root = tmp_path / "log"
    times = minutes(4)
    write_predictions(root, "m", "1", [AMOUNT], rows(4), ["yes"] * 4, times=times, ids=ids("a", 4))
    labelled_at = minutes(5, start=START + dt.timedelta(hours=1))
    # a-0 twice (first "no" wins), a-1 first null (not valid) then "yes", a-9 has no prediction here.
    write_feedback(
        root, "m", "1", ["a-0", "a-1", "a-0", "a-1", "a-9"], ["no", None, "yes", "yes", "no"], times=labelled_at
    )
    reader = LogReader(str(root))
    feedback = reader.read("feedback", "m", Period(), bounded=False)
    firsts, read, repeated = first_labels(feedback)
    assert dict(zip(firsts["prediction_id"].to_pylist(), firsts["label"].to_pylist(), strict=True)) == {
        "a-0": "no",
        "a-1": "yes",
        "a-9": "no",
    }
    assert (read, repeated) == (4, 1)
    joined = join_labels(reader.read("predictions", "m", Period()), feedback)
    assert joined.table["label"].to_pylist() == ["no", "yes", None, None]  # the predictions keep their order
    assert (joined.labelled, joined.unlabelled, joined.orphans) == (2, 2, 1)


def test_labels_after_the_period_still_label_its_predictions(tmp_path: Path) -> None:
    root = tmp_path / "log"
    write_predictions(root, "m", "1", [AMOUNT], rows(2), ["yes"] * 2, times=minutes(2), ids=ids("a", 2))
    write_feedback(root, "m", "1", ["a-0"], ["yes"], times=[START + dt.timedelta(days=3)])
    reader = LogReader(str(root))
    period = Period(START, START + dt.timedelta(hours=1))
    joined = join_labels(reader.read("predictions", "m", period), reader.read("feedback", "m", period, bounded=False))
    assert (joined.labelled, joined.unlabelled) == (1, 1)


def test_times_from_the_command_line() -> None:
    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    assert parse_instant("2026-12-03") == dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    assert parse_instant("2026-12-03T10:30") == dt.datetime(2026, 12, 3, 10, 30, tzinfo=dt.UTC)
    assert parse_instant("2026-12-03T10:30+01:00") == dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)
    assert parse_instant("2026-12-03T10:30:00Z") == dt.datetime(2026, 12, 3, 10, 30, tzinfo=dt.UTC)
    assert parse_instant("12h", now=now) == dt.datetime(2026, 12, 3, 0, 0, tzinfo=dt.UTC)
    assert parse_instant("7d", now=now) == dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="cannot read 'yesterday' as a time"):
        parse_instant("yesterday")
    with pytest.raises(ConfigError, match="the period is empty"):
        Period(now, now)


def test_an_fsspec_url_reads_as_a_folder_does(log: Path) -> None:
    by_url = LogReader(log.resolve().as_uri()).read("predictions", "m", Period(START + dt.timedelta(days=1)))
    by_path = LogReader(str(log)).read("predictions", "m", Period(START + dt.timedelta(days=1)))
    assert by_url.num_rows == by_path.num_rows == 24 * 6 + 6
    assert by_url.equals(by_path)


def test_whether_a_log_is_there(tmp_path: Path, log: Path) -> None:
    assert LogReader(str(log)).exists()
    assert not LogReader(str(tmp_path / "nowhere")).exists()
