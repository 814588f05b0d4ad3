"""The Arrow driver: typed and text columns become the model's input in one pass, problems per feature."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fasttrack.data.schema import Schema
from fasttrack.errors import SchemaValidationError, Violation
from fasttrack.features.arrow import ArrowDriver
from fasttrack.features.columns import CategoricalColumn


def normalize(schema: Schema, **columns: Any) -> Any:
    return ArrowDriver(schema, list(columns)).normalize(pa.table(columns))


def text(values: list[Any]) -> pa.Array:
    return pa.array(values, pa.string())


def test_csv_text_is_read_by_the_rules(schema: Schema) -> None:
    batch = normalize(
        schema,
        age=text([" 31 ", "NA", None, "1e1"]),
        rooms=text(["3", "4", "5", "?"]),
        income=text(["12.5", "nan", "7", "-0"]),
        colour=text([" red", "", "n/a", "7.0"]),
        member=text(["TRUE", "0", "false", None]),
        note=text([" keep ", "?", "x", None]),
    )
    assert batch.numeric["age"].tolist()[:2] == [31.0, pytest.approx(np.nan, nan_ok=True)]
    assert batch.numeric["age"][3] == 10.0
    assert np.isnan(batch.numeric["rooms"][3])
    assert batch.numeric["member"][:3].tolist() == [1.0, 0.0, 0.0]
    colour = batch.categorical["colour"]
    assert isinstance(colour, CategoricalColumn)
    assert colour.values(None).tolist() == ["red", None, None, "7.0"]
    # Columns the model does not use pass through, stripped, with markers made missing.
    assert batch.table.column("note").to_pylist() == ["keep", None, "x", None]
    assert batch.table.column("member").type == pa.bool_()
    assert batch.counts.missing == {"rooms": 1, "income": 1, "colour": 2, "member": 1}
    assert batch.counts.unseen == {"colour": 1}


def test_typed_columns(schema: Schema) -> None:
    batch = normalize(
        schema,
        age=pa.array([1, None, 3], pa.int8()),
        rooms=pa.array([2**53 + 1, 2, 3], pa.int64()),
        income=pa.array([1.5, float("nan"), None], pa.float32()),
        colour=pa.array(["red", "blue", "red"]).dictionary_encode(),
        member=pa.array([True, None, False]),
    )
    assert batch.numeric["rooms"][0] == float(2**53 + 1)  # rounded as Python's float() rounds
    assert np.isnan(batch.numeric["income"][1:]).all()
    assert batch.categorical["colour"].values(None).tolist() == ["red", "blue", "red"]
    assert np.isnan(batch.numeric["member"][1])


def test_every_problem_of_a_batch_at_once(schema: Schema) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        normalize(
            schema,
            age=text(["1", "abc", "abc", "x", "y", "z"]),
            rooms=pa.array([1.0, float("inf"), 2.0, 3.0, 4.0, 5.0]),
            income=text(["1"] * 6),
            colour=pa.array([[1], [2], [1], None, [1], [3]]),
            member=pa.array([0, 1, 2, 1, 0, 7]),
        )
    assert caught.value.violations == [
        Violation("age", "expected a number, got 'abc', 'x', 'y', ... (5 rows)"),
        Violation("rooms", "expected a finite number, got inf (1 rows)"),
        Violation("colour", "expected a category (text), got [1], [2], [1], ... (5 rows)"),
        Violation("member", "expected true or false (or 0/1), got 2, 7 (2 rows)"),
    ]


def test_an_absent_required_feature_is_refused_at_once(schema: Schema) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        ArrowDriver(schema, ["age", "colour"])
    assert [v.field for v in caught.value.violations] == ["rooms", "income", "member"]
    batch = ArrowDriver(schema, ["rooms", "income", "colour", "member"]).normalize(
        pa.table({"rooms": [1], "income": [2.0], "colour": ["red"], "member": [True]})
    )
    assert "age" not in batch.numeric  # absent nullable features are all missing for the runtime


def test_markers_that_read_as_numbers(schema: Schema) -> None:
    recorded = schema.model_copy(update={"missing_markers": ["-999"]})
    batch = normalize(
        recorded, age=text(["-999", "5"]), rooms=[1, 2], income=[1.0, 2.0], colour=["a", "b"], member=[True, False]
    )
    assert np.isnan(batch.numeric["age"][0]) and batch.numeric["age"][1] == 5.0
