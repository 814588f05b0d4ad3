"""Labelled rows from the log back in the training file's types: whole numbers, booleans, text and labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fasttrack.data.describe import infer_schema
from fasttrack.monitoring import log_layout
from fasttrack.monitoring.labelled import labelled_frame
from inference_log import logged_inputs


def training(target: pd.Series) -> pd.DataFrame:
    rows = len(target)
    rng = np.random.default_rng(0)
    rooms = rng.integers(1, 6, rows)
    return pd.DataFrame(
        {
            "income": rng.normal(50.0, 10.0, rows),
            "rooms": rooms,
            "floors": pd.array(np.where(np.arange(rows) % 7 == 0, None, rooms), dtype="Int64"),
            "colour": pd.Series(rng.choice(["red", "blue"], rows), dtype="str"),
            "member": np.arange(rows) % 3 == 0,
            "y": target,
        }
    )


def logged(frame: pd.DataFrame, label: pa.Array) -> pa.Table:
    schema = infer_schema(frame, "y")
    return pa.table({**logged_inputs(frame, schema.features), log_layout.LABEL: label})


@pytest.mark.parametrize(
    ("target", "logged_label", "dtype", "values"),
    [
        (pd.Series(["no", "yes"] * 50, dtype="str"), ["no", "yes"], "str", ["no", "yes"]),
        (pd.Series([0, 1] * 50), ["0", "1"], "int64", [0, 1]),
        (pd.Series([False, True] * 50), ["false", "true"], "bool", [False, True]),
        (pd.Series([0.0, 1.0] * 50), ["0", "1"], "float64", [0.0, 1.0]),
    ],
)
def test_features_and_labels_get_their_training_types(
    target: pd.Series, logged_label: list[str], dtype: str, values: list[object]
) -> None:
    frame = training(target)
    schema = infer_schema(frame, "y")
    table = logged(frame.iloc[:2], pa.array(logged_label, pa.string()))
    result = labelled_frame(table, schema)
    assert list(result.columns) == [*schema.feature_names, "y"]
    assert {name: str(result[name].dtype) for name in result.columns} == {
        "income": "float64",
        "rooms": "int64",
        "floors": "Int64",
        "colour": "str",
        "member": "bool",
        "y": dtype,
    }
    assert result["y"].tolist() == values
    assert result["rooms"].tolist() == frame["rooms"].iloc[:2].tolist()
    assert result["member"].tolist() == [True, False]


def test_missing_values_keep_the_types_nullable() -> None:
    frame = training(pd.Series([3, 4] * 50))
    member = pd.array(np.arange(len(frame)) % 3 == 0, dtype="boolean")
    member[0] = pd.NA  # the log holds it as 0/1 floats with NaN
    frame["member"] = member
    schema = infer_schema(frame, "y", "regression")
    table = logged(frame.iloc[:3], pa.array([3.0, None, 4.0], pa.float64()))
    result = labelled_frame(table, schema)
    assert str(result["member"].dtype) == "boolean" and result["member"].isna().tolist() == [True, False, False]
    assert str(result["y"].dtype) == "Int64" and result["y"].tolist()[::2] == [3, 4]


def test_a_feature_no_logged_version_had_is_missing() -> None:
    frame = training(pd.Series(["no", "yes"] * 50, dtype="str"))
    schema = infer_schema(frame, "y")
    table = logged(frame.iloc[:2], pa.array(["no", "yes"])).drop_columns([log_layout.input_column("colour")])
    result = labelled_frame(table, schema)
    assert result["colour"].isna().all() and len(result) == 2
