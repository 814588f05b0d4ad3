"""The schema model: what it records, its JSON round trip, and schemas written before it recorded more."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.clean import clean
from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import MAX_STORED_CATEGORIES, FeatureSchema, Schema
from fasttrack.features.rules import DEFAULT_MISSING_MARKERS


@pytest.fixture
def schema() -> Schema:
    raw = pd.DataFrame(
        {
            "id": range(1, 41),
            "constant": ["same"] * 40,
            "colour": ["red", "blue"] * 20,
            "x": np.arange(40) / 4,
            "y": [0, 1] * 20,
        }
    )
    frame, report = clean(raw, "y")
    return infer_schema(frame, "y", dropped_columns=report.dropped_columns, missing_markers=["?", "-"])


def test_the_schema_records_the_columns_cleaning_dropped_and_the_markers(schema: Schema) -> None:
    assert schema.feature_names == ["colour", "x"]
    assert list(schema.dropped_columns) == ["id", "constant"]
    assert schema.dropped_columns["id"].startswith("identifier")
    assert schema.training_columns == ["id", "constant", "y"]
    assert schema.missing_markers == ["?", "-"]


def test_round_trip(tmp_path: Path, schema: Schema) -> None:
    path = tmp_path / "schema.json"
    schema.save(path)
    assert Schema.load(path) == schema
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_schema_written_before_version_2_reads_with_defaults(tmp_path: Path, schema: Schema) -> None:
    old = schema.model_dump(mode="json", exclude={"dropped_columns", "missing_markers"})
    old["version"] = 1
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = Schema.load(path)
    assert loaded.dropped_columns == {}
    assert loaded.missing_markers == list(DEFAULT_MISSING_MARKERS)
    assert loaded.training_columns == ["y"]


def test_known_categories_only_when_every_one_was_stored() -> None:
    few = FeatureSchema(name="c", kind="categorical", dtype="str", nullable=False, missing_ratio=0, categories=["a"])
    assert few.known_categories() == frozenset({"a"})
    many = few.model_copy(update={"categories": [str(i) for i in range(MAX_STORED_CATEGORIES)]})
    assert many.known_categories() is None
    number = FeatureSchema(name="n", kind="numeric", dtype="float64", nullable=False, missing_ratio=0)
    assert number.known_categories() is None
