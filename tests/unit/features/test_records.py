"""The record driver: every bad field named with its reason, training columns ignored, unusual values counted."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fasttrack.data.schema import FeatureSchema, Schema, TargetSchema
from fasttrack.errors import SchemaValidationError
from fasttrack.features.records import MAX_DETAILS, UNKNOWN_FIELD, ModelInput, RecordDriver


def numeric(name: str, *, nullable: bool = False, low: float = 0.0, high: float = 10.0) -> FeatureSchema:
    return FeatureSchema(
        name=name, kind="numeric", dtype="float64", nullable=nullable, missing_ratio=0, min=low, max=high
    )


SAMPLE = Schema(
    features=[numeric("feature_1"), numeric("feature_2")],
    target=TargetSchema(name="label", task="classification", dtype="str", labels=["negative", "positive"]),
    n_rows=100,
    dropped_columns={"id": "identifier (all values unique)"},
)
MIXED = Schema(
    features=[
        numeric("amount", nullable=True, low=5.0, high=90.0),
        FeatureSchema(
            name="colour", kind="categorical", dtype="str", nullable=False, missing_ratio=0, categories=["red", "blue"]
        ),
        FeatureSchema(name="member", kind="boolean", dtype="bool", nullable=False, missing_ratio=0),
    ],
    target=TargetSchema(name="bought", task="classification", dtype="str", labels=["no", "yes"]),
    n_rows=100,
)


def validate(schema: Schema, records: list[Any], **options: Any) -> ModelInput:
    return RecordDriver(schema).validate(records, **options)


def problems(schema: Schema, records: list[Any], **options: Any) -> list[tuple[str, str]]:
    with pytest.raises(SchemaValidationError) as caught:
        validate(schema, records, **options)
    return [(v.field, v.reason) for v in caught.value.violations]


SAMPLE_ERRORS = [
    ({"feature_1": "abc", "feature_2": 2.1}, [("feature_1", "expected a number, got 'abc'")]),
    ({"feature_1": 5.3}, [("feature_2", "field required")]),
    ({"feature_1": 5.3, "feature_2": 2.1, "colour": "red"}, [("colour", "unknown field")]),
    ({"feature_1": float("inf"), "feature_2": 2.1}, [("feature_1", "expected a finite number, got inf")]),
    ({"feature_1": "-Infinity", "feature_2": 2.1}, [("feature_1", "expected a finite number, got '-Infinity'")]),
    (
        {"feature_1": [1], "feature_2": {"a": 1}},
        [("feature_1", "expected a number, got [1]"), ("feature_2", "expected a number, got {'a': 1}")],
    ),
    (
        {"feature_1": 10**400, "feature_2": 2.1},
        [("feature_1", "expected a finite number, got " + repr(10**400)[:57] + "...")],
    ),
]


@pytest.mark.parametrize(("record", "expected"), SAMPLE_ERRORS)
def test_each_bad_field_is_named_with_its_reason(record: dict[str, Any], expected: list[Any]) -> None:
    assert problems(SAMPLE, [record]) == expected


@pytest.mark.parametrize(
    ("record", "value"),
    [
        ({"feature_1": "5.3", "feature_2": 2.1}, 5.3),  # numbers as text, as training read them
        ({"feature_1": " 7 ", "feature_2": 2.1}, 7.0),
        ({"feature_1": True, "feature_2": 2.1}, 1.0),
        ({"feature_1": None, "feature_2": 2.1}, None),  # missing: imputed, and counted
        ({"feature_1": float("nan"), "feature_2": 2.1}, None),
        ({"feature_1": "NA", "feature_2": 2.1}, None),
        ({"feature_1": "", "feature_2": 2.1}, None),
    ],
)
def test_values_training_would_have_read(record: dict[str, Any], value: float | None) -> None:
    model_input = validate(SAMPLE, [record])
    assert model_input.values["feature_1"] == [value]
    assert model_input.missing == ({"feature_1": 1} if value is None else {})


def test_batch_problems_name_the_row() -> None:
    records = [{"feature_1": 1.0, "feature_2": 2.0}, {"feature_1": "x", "feature_2": 2.0}, 7]
    assert problems(SAMPLE, records) == [
        ("[1].feature_1", "expected a number, got 'x'"),
        ("[2]", "expected an object, got 7"),
    ]


def test_an_empty_batch_is_refused() -> None:
    assert problems(SAMPLE, []) == [("body", "empty batch: send at least one record")]


def test_a_flood_of_problems_is_cut_short() -> None:
    found = problems(SAMPLE, [{"feature_1": "x", "feature_2": "y"}] * 1000)
    assert len(found) == MAX_DETAILS + 1
    assert found[-1] == ("body", "more problems not shown; fix these first")


def test_a_record_of_many_unknown_fields_is_cut_short() -> None:
    record = {"feature_1": 1.0, "feature_2": 2.0, **{f"x{i}": i for i in range(5000)}}
    found = problems(SAMPLE, [record])
    assert len(found) == MAX_DETAILS + 1 and found[0] == ("x0", "unknown field")


def test_a_row_of_the_training_file_is_accepted() -> None:
    # The identifier cleaning dropped and the target are the training data's own columns: ignored, counted.
    row = {"id": 17, "feature_1": 1.0, "feature_2": 2.0, "label": "positive"}
    model_input = validate(SAMPLE, [row, row])
    assert model_input.values == {"feature_1": [1.0, 1.0], "feature_2": [2.0, 2.0]}
    assert model_input.ignored == {"id": 2, "label": 2}


def test_fields_the_model_never_saw_can_be_ignored_and_counted() -> None:
    record = {"feature_1": 1.0, "feature_2": 2.0, "colour": "red", "size": 3}
    assert [f for f, _ in problems(SAMPLE, [record])] == ["colour", "size"]
    model_input = validate(SAMPLE, [record], extra="ignore")
    assert model_input.ignored == {UNKNOWN_FIELD: 2}


def test_names_with_surrounding_spaces_are_the_features_training_stripped() -> None:
    model_input = validate(SAMPLE, [{" feature_1": 1.0, "feature_2 ": "2"}])
    assert model_input.values == {"feature_1": [1.0], "feature_2": [2.0]}
    assert model_input.ignored == {}
    # An exact name wins over a padded one.
    model_input = validate(SAMPLE, [{"feature_1": 1.0, " feature_1": 9.0, "feature_2": 2.0}])
    assert model_input.values["feature_1"] == [1.0]


MIXED_CASES = [
    # nullable numeric: absent and null are fine
    ({"colour": "red", "member": True}, None),
    ({"amount": None, "colour": "red", "member": False}, None),
    # categorical: numbers and booleans become their text; objects are refused
    ({"amount": 1, "colour": {"x": 1}, "member": True}, [("colour", "expected a category (text), got {'x': 1}")]),
    ({"amount": 1, "colour": True, "member": True}, None),
    ({"amount": 1, "colour": "", "member": True}, None),
    ({"amount": 1, "member": True}, [("colour", "field required")]),
    # boolean: true/false or 0/1, also as text
    ({"amount": 1, "colour": "red", "member": 1}, None),
    ({"amount": 1, "colour": "red", "member": " TRUE "}, None),
    ({"amount": 1, "colour": "red", "member": "yes"}, [("member", "expected true or false (or 0/1), got 'yes'")]),
    ({"amount": 1, "colour": "red", "member": 2}, [("member", "expected true or false (or 0/1), got 2")]),
]


@pytest.mark.parametrize(("record", "expected"), MIXED_CASES)
def test_every_feature_kind(record: dict[str, Any], expected: list[Any] | None) -> None:
    if expected is None:
        validate(MIXED, [record])
    else:
        assert problems(MIXED, [record]) == expected


def test_columns_have_the_pipeline_dtypes() -> None:
    columns = validate(
        MIXED,
        [
            {"amount": 3, "colour": " red ", "member": True},
            {"amount": None, "colour": 7.0, "member": 0},
            {"colour": "?", "member": "false"},
        ],
    ).columns
    assert columns["amount"].dtype == np.float64
    assert columns["amount"][0] == 3.0 and math.isnan(columns["amount"][1])
    assert columns["colour"].dtype == object
    assert columns["colour"][:2].tolist() == ["red", "7"]
    assert columns["colour"][2] is np.nan  # noqa: PLW0177 - the very object sklearn's imputer expects
    assert columns["member"].tolist() == [1.0, 0.0, 0.0]


def test_unusual_values_are_counted() -> None:
    records = [
        {"amount": 1, "colour": "purple", "member": True},
        {"amount": 50, "colour": "red", "member": None},
        {"amount": 1e9, "colour": "orange", "member": False},
        {"amount": 50, "colour": "?", "member": False},
    ]
    model_input = validate(MIXED, records)
    assert model_input.unseen == {"colour": 2}
    assert model_input.out_of_range == {"amount": 2}
    assert model_input.missing == {"colour": 1, "member": 1}
