"""The pandas driver: the exact model input of a frame, and validation of new data against the schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema
from fasttrack.errors import SchemaValidationError, Violation
from fasttrack.features.frames import frame_input, prepare_features, validate
from fasttrack.features.rules import category_text


def test_prepare_features_gives_the_model_input_dtypes(schema: Schema, training: pd.DataFrame) -> None:
    prepared = prepare_features(training, schema)
    assert prepared.columns.tolist() == schema.feature_names
    assert [str(t) for t in prepared.dtypes] == ["float64", "float64", "float64", "object", "float64"]
    assert prepared["member"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert all(type(v) is str for v in prepared["colour"])
    assert prepared["age"].isna().sum() == 10


def test_prepare_features_converts_what_clients_send(schema: Schema) -> None:
    frame = pd.DataFrame(
        {
            "extra": ["ignored", "too"],
            "member": ["TRUE", " false"],
            "colour": [None, " blue "],
            "income": ["12.5", ""],
            "rooms": [3, 4],
            "age": pd.Series([1, None], dtype="Int64"),
        },
        index=[5, 6],
    )
    prepared = prepare_features(frame, schema)
    assert prepared.columns.tolist() == schema.feature_names
    assert prepared.index.tolist() == [5, 6]
    assert prepared["member"].tolist() == [1.0, 0.0]
    assert prepared["colour"].dtype == object
    assert prepared["colour"].iloc[1] == "blue"
    assert prepared["colour"].iloc[0] is np.nan  # noqa: PLW0177 - the very object sklearn's imputer expects
    assert prepared["income"].iloc[0] == 12.5
    assert np.isnan(prepared["income"].iloc[1])
    assert np.isnan(prepared["age"].iloc[1])


def test_category_text_is_what_prepare_features_gives_a_column() -> None:
    frame = pd.DataFrame({"code": ["3", "1", "3", "2"], "x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    schema = infer_schema(frame, "y")
    for sent in (
        [3.0, 2.5, 1e16, np.nan],
        [" a ", "", "b", None],
        [True, False, True, False],
        [3, 1, 2, 10**6],
        [True, 3, "x", None],  # mixed Python objects: the rule value by value
        ["NA", "?", "null", "None"],
    ):
        prepared = prepare_features(pd.DataFrame({"code": pd.Series(sent, dtype=object), "x": [1.0] * 4}), schema)
        expected = [None if pd.isna(v) else v for v in prepared["code"]]
        assert [category_text(v) for v in sent] == expected, sent
        assert all(type(v) is str for v in prepared["code"].dropna())


def test_prepare_features_fills_an_absent_nullable_feature(schema: Schema, training: pd.DataFrame) -> None:
    prepared = prepare_features(training.drop(columns=["age"]), schema)
    assert prepared["age"].isna().all()
    assert prepared["age"].dtype == "float64"


def test_prepare_features_collects_every_violation(schema: Schema) -> None:
    frame = pd.DataFrame(
        {
            "age": ["1", "abc", "abc", "x"],
            "income": [1.0, np.inf, 2.0, 3.0],
            "colour": ["red"] * 4,
            "member": ["yes", "true", "no", "false"],
        }
    )
    with pytest.raises(SchemaValidationError) as caught:
        prepare_features(frame, schema)
    assert caught.value.violations == [
        Violation("age", "expected a number, got 'abc', 'x' (3 rows)"),
        Violation("rooms", "required column is missing"),
        Violation("income", "expected a finite number, got inf (1 rows)"),
        Violation("member", "expected true or false (or 0/1), got 'yes', 'no' (2 rows)"),
    ]


def test_prepare_features_boolean_from_numbers(schema: Schema, training: pd.DataFrame) -> None:
    prepared = prepare_features(training.assign(member=[1, 0] * 100), schema)
    assert prepared["member"].tolist()[:2] == [1.0, 0.0]
    with pytest.raises(SchemaValidationError, match=r"member: expected true or false \(or 0/1\), got 2 \(100 rows\)"):
        prepare_features(training.assign(member=[1, 2] * 100), schema)


def test_missing_values_are_accepted_and_counted(schema: Schema, training: pd.DataFrame) -> None:
    frame = training.assign(income=[np.nan, "?", *training["income"].iloc[2:]])
    prepared = frame_input(frame, schema)
    assert prepared.violations == []
    assert prepared.counts.missing == {"income": 2}


def test_validate_training_data_is_clean(schema: Schema, training: pd.DataFrame) -> None:
    result = validate(training, schema)
    assert result.ok
    assert result.errors == []
    assert result.warnings == []
    result.raise_for_errors()


def test_validate_sorts_problems_into_errors_and_warnings(schema: Schema) -> None:
    frame = pd.DataFrame(
        {
            "age": [1.0, 200.0, -5.0, np.nan],
            "income": [50.0, np.nan, np.inf, 40.0],
            "colour": ["red", "mauve", "teal", "mauve"],
            "member": [True, False, True, False],
            "surprise": [1, 2, 3, 4],
            "id": [1, 2, 3, 4],
            "y": ["no", "yes", "no", "yes"],
        }
    )
    result = validate(frame, schema)
    assert not result.ok
    assert result.errors == [
        Violation("rooms", "required column is missing"),
        Violation("income", "expected a finite number, got inf (1 rows)"),
    ]
    age = schema.feature("age")
    assert result.warnings == [
        Violation("age", f"2 values outside the training range [{age.min}, {age.max}]"),
        Violation("income", "1 missing values; the training data had none (the model imputes them)"),
        Violation("colour", "2 categories never seen in training: 'mauve', 'teal' (3 rows)"),
        Violation("surprise", "unknown column, ignored"),  # "id" and "y" are the training data's own columns
    ]
    with pytest.raises(SchemaValidationError) as caught:
        result.raise_for_errors()
    assert caught.value.violations == result.errors


def test_validate_wrong_types_are_errors(schema: Schema, training: pd.DataFrame) -> None:
    result = validate(training.assign(rooms=["3"] * 199 + ["many"]), schema)
    assert result.errors == [Violation("rooms", "expected a number, got 'many' (1 rows)")]
    # The bad value is reported once, not again as a missing value.
    assert result.warnings == []


def test_validate_absent_nullable_column_is_a_warning(schema: Schema, training: pd.DataFrame) -> None:
    result = validate(training.drop(columns=["age"]), schema)
    assert result.ok
    assert result.warnings == [Violation("age", "column is missing; its values are treated as missing")]
