"""Labelled data from the inference log: logged inputs with their labels, as a training file has them.

The log keeps each feature as the model read it (:mod:`fasttrack.monitoring.log_layout`: numbers and booleans as
``float64``, categories as text) and each label as text (classifiers) or ``float64`` (regressors). A training file
had other types: whole numbers, booleans, labels that are numbers. :func:`labelled_frame` turns the log's columns
back into the types the training :class:`~fasttrack.data.schema.Schema` recorded (``FeatureSchema.dtype``,
``TargetSchema.dtype``), so the result trains as the original data did: ``fasttrack train`` infers the same kinds
from it. A whole-number or boolean feature with missing values becomes pandas' nullable ``Int64`` or ``boolean``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from fasttrack.data.schema import FeatureSchema, Schema, TargetSchema
from fasttrack.features.rules import category_text
from fasttrack.monitoring.log_layout import LABEL, input_column

if TYPE_CHECKING:
    import pandas as pd


def labelled_frame(table: pa.Table, schema: Schema) -> pd.DataFrame:
    """The schema's features (in model order, typed as training had them) and its target, from logged rows.

    ``table`` holds ``input.<feature>`` columns and a ``label`` column (rows without a label are the caller's to
    leave out). A feature no logged version had is all missing.
    """
    import pandas as pd

    rows = table.num_rows
    columns: dict[str, pd.Series] = {}
    for feature in schema.features:
        name = input_column(feature.name)
        values = table[name] if name in table.column_names else pa.nulls(rows, pa.float64())
        columns[feature.name] = feature_series(values, feature)
    if schema.target.name in columns:  # cannot be: infer_schema keeps the target out of the features
        raise ValueError(f"the target {schema.target.name!r} is also a feature")
    columns[schema.target.name] = target_series(table[LABEL], schema.target)
    return pd.DataFrame(columns)


def feature_series(values: pa.Array | pa.ChunkedArray, feature: FeatureSchema) -> pd.Series:
    """One logged feature column in its training dtype (see the module docstring)."""
    import pandas as pd

    if feature.kind == "categorical":
        text = values if pa.types.is_string(values.type) else values.cast(pa.string())
        series = pd.Series(text.to_pandas(), name=feature.name)
        return series.astype(object if _object_text(feature) else "str")
    numbers = np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return _typed_numbers(numbers, feature.dtype, feature.name, boolean=feature.kind == "boolean")


def target_series(labels: pa.Array | pa.ChunkedArray, target: TargetSchema) -> pd.Series:
    """Logged labels in the target's training dtype: class labels as the schema's labels (``1`` for ``"1"`` of an
    integer target, ``True`` for ``"true"``), regression values as numbers."""
    import pandas as pd

    if target.task == "regression":
        numbers = np.asarray(labels.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        return _typed_numbers(numbers, target.dtype, target.name, boolean=False)
    text: list[Any] = (
        labels.cast(pa.string()).to_pylist() if not pa.types.is_null(labels.type) else [None] * len(labels)
    )
    known = {category_text(label): label for label in target.labels or []}
    converted = [None if t is None else known.get(t, _label_of_type(t, target.dtype)) for t in text]
    kinds = {type(v) for v in converted if v is not None}
    if kinds <= {bool}:
        return pd.Series(converted, dtype="boolean" if None in converted else bool, name=target.name)
    if kinds <= {int}:
        return pd.Series(converted, dtype="Int64" if None in converted else np.int64, name=target.name)
    if kinds <= {int, float}:
        return pd.Series(converted, dtype=np.float64, name=target.name)
    # Mixed (a label the schema never had that does not read as its type) or text: text, as a file would give.
    return pd.Series([None if v is None else category_text(v) for v in converted], dtype="str", name=target.name)


# -------------------------------------------------------------------------------------------------- details
def _typed_numbers(numbers: np.ndarray[Any, Any], dtype: str, name: str, *, boolean: bool) -> pd.Series:
    import pandas as pd

    missing = np.isnan(numbers)
    present = numbers[~missing]
    if boolean or dtype in ("bool", "boolean"):
        if present.size and not np.isin(present, (0.0, 1.0)).all():
            return pd.Series(numbers, dtype=np.float64, name=name)
        if missing.any():
            return pd.Series(pd.array(numbers, dtype="boolean"), name=name)
        return pd.Series(numbers.astype(bool), name=name)
    if _is_integer_dtype(dtype) and bool(np.all(np.mod(present, 1) == 0)):
        if missing.any():
            return pd.Series(pd.array(numbers, dtype="Int64"), name=name)
        return pd.Series(numbers.astype(np.int64), name=name)
    return pd.Series(numbers, dtype=np.float64, name=name)


def _is_integer_dtype(dtype: str) -> bool:
    return dtype.lower().lstrip("u").startswith("int")


def _object_text(feature: FeatureSchema) -> bool:
    """Whether the training column held text as ``object`` (pandas 2) rather than pandas' string dtype."""
    return feature.dtype == "object"


def _label_of_type(text: str, dtype: str) -> Any:
    """A label the schema never had, read as its target's type when it reads as one; else its text."""
    if dtype in ("bool", "boolean"):
        return {"true": True, "false": False}.get(text.lower(), text)
    if _is_integer_dtype(dtype):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if dtype.lower().startswith("float"):
        try:
            return float(text)
        except ValueError:
            return text
    return text
