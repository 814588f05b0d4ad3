"""Stable splits: a row's part follows from its content and the salt, and the rows a model trained on are recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema
from fasttrack.errors import DataError
from fasttrack.training.split import TrainingRows, hashed_columns, row_hashes, split_fraction
from fasttrack.training.train import train


def raw_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Raw cleaned data: integers, floats with gaps, text categories and a text label."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows)
    income = rng.normal(50.0, 15.0, rows).round(2)
    colour = rng.choice(["red", "green", "blue"], rows)
    signal = (age - 50) / 20 + (income - 50) / 15 + rng.normal(0, 0.5, rows)
    return pd.DataFrame(
        {
            "age": age,
            "income": income,
            "colour": pd.Series(colour, dtype="str"),
            "label": np.where(signal > 0, "yes", "no"),
        }
    )


def schema_of(frame: pd.DataFrame) -> Schema:
    return infer_schema(frame, "label", "classification")


def config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {"data": "memory://rows.csv", "target": "label", "model": "linear", "cv_folds": 0}
    return TrainConfig.model_validate({**values, **overrides})


def test_a_rows_hash_does_not_depend_on_its_place_or_the_other_rows() -> None:
    frame = raw_frame()
    schema = schema_of(frame)
    hashes = row_hashes(frame, schema)
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert np.array_equal(row_hashes(shuffled, schema), hashes[shuffled.index.to_numpy()])
    assert np.array_equal(row_hashes(frame.iloc[::-1].reset_index(drop=True), schema), hashes[::-1])
    assert np.array_equal(row_hashes(frame.head(7), schema), hashes[:7])
    # The columns' order is not content either.
    assert np.array_equal(row_hashes(frame[["label", "colour", "income", "age"]], schema), hashes)
    assert len(np.unique(hashes)) == len(frame.drop_duplicates())


def test_two_reads_of_the_same_rows_hash_alike() -> None:
    frame = raw_frame(rows=50)
    schema = schema_of(frame)
    hashes = row_hashes(frame, schema)
    read_again = frame.assign(
        age=frame["age"].astype("float64"),  # a column that gained a missing value elsewhere reads as floats
        income=frame["income"].map(lambda v: f" {v} "),  # numbers written as text, with spaces
        colour=frame["colour"].astype("category"),
        label=frame["label"].astype(object),
    )
    assert np.array_equal(row_hashes(read_again, schema), hashes)
    # Zero is one value whatever its sign.
    zero, negative_zero = frame.copy(), frame.copy()
    zero.loc[0, "income"], negative_zero.loc[0, "income"] = 0.0, -0.0
    assert np.array_equal(row_hashes(negative_zero, schema), row_hashes(zero, schema))


def test_labels_hash_by_their_text_and_missing_values_alike() -> None:
    ints = pd.DataFrame({"x": [1.0, np.nan, 3.0], "label": [0, 1, 1]})
    schema = infer_schema(ints, "label", "classification")
    as_floats = ints.assign(label=[0.0, 1.0, 1.0])
    as_text = ints.assign(label=["0", "1", "1"], x=["1", "?", "3.0"])
    assert np.array_equal(row_hashes(as_floats, schema), row_hashes(ints, schema))
    assert np.array_equal(row_hashes(as_text, schema), row_hashes(ints, schema))
    # Every value of a row counts: another value, another hash.
    assert row_hashes(ints.assign(x=[1.5, np.nan, 3.0]), schema)[0] != row_hashes(ints, schema)[0]
    assert row_hashes(ints.assign(label=[1, 1, 1]), schema)[0] != row_hashes(ints, schema)[0]


def test_rows_cannot_be_identified_without_a_feature_or_the_target() -> None:
    frame = raw_frame(rows=20)
    schema = schema_of(frame)
    assert hashed_columns(schema) == ("age", "colour", "income", "label")
    with pytest.raises(DataError, match="'colour'"):
        row_hashes(frame.drop(columns="colour"), schema)
    with pytest.raises(DataError, match="'label'"):
        row_hashes(frame.drop(columns="label"), schema)


def test_the_split_keeps_test_size_approximately_and_another_salt_is_another_split() -> None:
    hashes = row_hashes(raw_frame(rows=20_000), schema_of(raw_frame(rows=20_000)))
    first = split_fraction(hashes, "fasttrack") < 0.2
    second = split_fraction(hashes, "another") < 0.2
    # Each is a binomial draw of 20,000 rows at 0.2: 4,000 ± 57, so ± 300 is over five standard deviations.
    assert abs(int(first.sum()) - 4000) < 300 and abs(int(second.sum()) - 4000) < 300
    # Independent splits share about 0.2 x 0.2 of the rows (800 ± 28).
    assert abs(int((first & second).sum()) - 800) < 150
    fractions = split_fraction(hashes, "fasttrack")
    assert fractions.min() >= 0.0 and fractions.max() < 1.0
    assert np.array_equal(split_fraction(hashes, "fasttrack"), fractions)


def test_adding_rows_moves_no_existing_row_between_parts() -> None:
    old = raw_frame(rows=300)
    new = pd.concat([raw_frame(rows=200, seed=1), old], ignore_index=True).sample(frac=1.0, random_state=5)
    schema = schema_of(old)
    before = train(old, config(), schema)
    after = train(new.reset_index(drop=True), config(), schema)
    assert before.training_rows is not None and after.training_rows is not None
    # Every row trained on before is still trained on; every row held out before is still held out.
    assert after.training_rows.contains(before.training_rows.hashes).all()
    held_out = row_hashes(before.X_test.assign(label=before.y_test.to_numpy()), schema)
    assert not after.training_rows.contains(held_out).any()
    assert set(held_out.tolist()) <= set(
        row_hashes(after.X_test.assign(label=after.y_test.to_numpy()), schema).tolist()
    )
    # The seed moves no row; the salt does.
    reseeded = train(old, config(seed=7), schema)
    assert reseeded.training_rows is not None
    assert np.array_equal(reseeded.training_rows.hashes, before.training_rows.hashes)
    salted = train(old, config(split_salt="another"), schema)
    assert salted.training_rows is not None
    assert not np.array_equal(salted.training_rows.hashes, before.training_rows.hashes)


def test_the_record_holds_the_training_part_and_the_held_out_part_is_apart() -> None:
    frame = raw_frame()
    schema = schema_of(frame)
    result = train(frame, config(test_size=0.25), schema)
    record = result.training_rows
    assert record is not None
    assert record.rows == result.train_rows and record.columns == hashed_columns(schema) and record.salt == "fasttrack"
    assert np.all(record.hashes[:-1] < record.hashes[1:])  # sorted, distinct
    assert 0.15 < result.test_rows / len(frame) < 0.35
    training = row_hashes(frame, schema)
    assert record.contains(training).sum() == result.train_rows
    # The held-out part, as logged (prepared features and target), hashes to rows the model never trained on.
    held_out = result.X_test.assign(label=result.y_test.to_numpy())
    assert not record.contains(row_hashes(held_out, schema)).any()


def test_rows_of_equal_content_share_a_part() -> None:
    frame = raw_frame(rows=200)
    doubled = pd.concat([frame, frame.head(50)], ignore_index=True)  # cleaning would drop these; train need not
    schema = schema_of(frame)
    result = train(doubled, config(), schema)
    assert result.training_rows is not None
    held_out = row_hashes(result.X_test.assign(label=result.y_test.to_numpy()), schema)
    assert not result.training_rows.contains(held_out).any()
    assert result.training_rows.rows == result.train_rows > len(result.training_rows.hashes)


def test_the_record_round_trips_through_parquet(tmp_path: Path) -> None:
    frame = raw_frame()
    schema = schema_of(frame)
    hashes = row_hashes(frame, schema)
    record = TrainingRows.of(hashes, schema, "pepper")
    record.write(tmp_path / "train_rows.parquet")
    back = TrainingRows.read(tmp_path / "train_rows.parquet")
    assert np.array_equal(back.hashes, record.hashes) and back.hashes.dtype == np.uint64
    assert (back.rows, back.columns, back.salt, back.scheme) == (
        len(frame),
        hashed_columns(schema),
        "pepper",
        record.scheme,
    )
    assert back.comparable(schema)
    assert not back.comparable(schema.model_copy(update={"features": schema.features[:2]}))
    assert back.contains(hashes).all()
    assert not back.contains(np.array([0, 1, np.iinfo(np.uint64).max], dtype=np.uint64)).any()
    assert not TrainingRows.of(np.array([], dtype=np.uint64), schema, "s").contains(hashes).any()


def test_a_part_left_empty_takes_the_row_nearest_the_threshold() -> None:
    frame = raw_frame(rows=6)
    schema = schema_of(frame)
    fractions = split_fraction(row_hashes(frame, schema), "fasttrack")
    size = float(fractions.min()) / 2  # below every row's place: nothing would be held out
    result = train(frame, config(test_size=size), schema)
    assert result.test_rows == 1
    assert any("no row fell in the test part" in note for note in result.evaluation.notes)
