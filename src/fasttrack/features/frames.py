"""The pandas driver: whole frames (training, evaluation, promotion, ``fasttrack evaluate``).

:func:`frame_input` turns a frame into the model's input by :mod:`fasttrack.features.rules`. Each column
becomes an Arrow array and takes the Arrow driver's paths (:class:`~fasttrack.features.arrow.ArrowDriver`), so
frames and batch files are converted by the same code; a column of mixed Python objects, which Arrow cannot
hold, takes the rule value by value. :func:`prepare_features` gives the frame the pipeline is fitted on and
predicts from (the schema's features in order; ``float64`` numbers with NaN missing, ``object`` text with
``np.nan`` missing), and :func:`validate` sorts what is wrong with new data into errors and warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from fasttrack.data.arrays import python_values
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.errors import SchemaValidationError, Violation
from fasttrack.features.arrow import ColumnConverter, ConvertedColumn, Counts, problem_line
from fasttrack.features.columns import CategoricalColumn, FeatureValues
from fasttrack.features.rules import Invalid, Rules, ascii_lower, quoted

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class FrameInput:
    """A frame's features as the model's input (absent nullable features all missing), what was wrong with
    them, and the unusual values counted. ``absent`` lists the features the frame lacks."""

    columns: dict[str, FeatureValues]
    rows: int
    violations: list[Violation]
    counts: Counts = field(default_factory=Counts)
    absent: list[str] = field(default_factory=list)
    unseen: dict[str, list[str]] = field(default_factory=dict)

    def raise_for_violations(self) -> None:
        """Raise :class:`SchemaValidationError` carrying every violation, if there is any."""
        if self.violations:
            raise SchemaValidationError(self.violations)


def frame_input(frame: pd.DataFrame, schema: Schema, rules: Rules | None = None) -> FrameInput:
    """The schema's features of ``frame`` as the model's input; problems collected, not raised.

    A feature the training data always had and the frame lacks is a violation; an absent nullable feature is
    all missing. Columns that are not features are ignored.
    """
    rules = rules if rules is not None else Rules(schema.missing_markers)
    converter = ColumnConverter(rules, schema.features)
    rows = len(frame)
    result = FrameInput(columns={}, rows=rows, violations=[])
    for feature in schema.features:
        name = feature.name
        if name not in frame.columns:
            result.absent.append(name)
            if not feature.nullable:
                result.violations.append(Violation(name, "required column is missing"))
            result.columns[name] = _all_missing(feature, rows)
            continue
        converted = _convert(converter, frame[name], feature)
        result.violations += [Violation(name, problem) for problem in converted.problems]
        result.columns[name] = converted.values
        if converted.unseen:
            result.counts.unseen[name] = converted.unseen
            result.unseen[name] = _unseen(converted.values, feature)
        if converted.out_of_range:
            result.counts.out_of_range[name] = converted.out_of_range
        if converted.missing:
            result.counts.missing[name] = converted.missing
    return result


def prepare_features(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The exact model input: the schema's features, in order, with the dtypes the pipeline was fitted on.

    Numeric and boolean features become ``float64`` (booleans 0/1), categorical features ``object`` columns of
    Python ``str`` with ``np.nan`` for missing, which is what scikit-learn's encoders and skl2onnx expect.
    Values follow :mod:`fasttrack.features.rules`. Extra columns are ignored; an absent nullable feature is all
    missing. Every problem is collected and raised at once as ``SchemaValidationError``. The result keeps the
    input's index.
    """
    import pandas as pd

    prepared = frame_input(frame, schema)
    prepared.raise_for_violations()
    # object dtype kept explicitly: pandas would make a column of text its own ``str`` dtype.
    columns = {
        name: pd.Series(values, index=frame.index, dtype=object if values.dtype == object else None, copy=False)
        for name, values in model_columns(prepared.columns).items()
    }
    return pd.DataFrame(columns, index=frame.index)


def model_columns(columns: dict[str, FeatureValues]) -> dict[str, np.ndarray[Any, Any]]:
    """Feature columns as plain arrays: float64, or ``object`` text with ``np.nan`` for missing."""
    return {
        name: values.values(np.nan) if isinstance(values, CategoricalColumn) else values
        for name, values in columns.items()
    }


@dataclass(frozen=True)
class ValidationResult:
    """Problems found by :func:`validate`: errors stop scoring, warnings are worth a look but do not."""

    errors: list[Violation]
    warnings: list[Violation]

    @property
    def ok(self) -> bool:
        """Whether there are no errors (warnings allowed)."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`SchemaValidationError` carrying every error, if there is any."""
        if self.errors:
            raise SchemaValidationError(self.errors)


def validate(frame: pd.DataFrame, schema: Schema) -> ValidationResult:
    """Check new data against the training schema, sorting problems into errors and warnings.

    Errors (the data cannot be scored): an absent column the training data always had, values a feature cannot
    take. Warnings (it can, but look): an absent nullable column, categories never seen in training, numbers
    outside the training range, missing values in a feature that had none in training (the model imputes
    them), and columns the training data never had. Counts are per feature.
    """
    prepared = frame_input(frame, schema)
    warnings: list[Violation] = []
    for feature in schema.features:
        name = feature.name
        if name in prepared.absent:
            if feature.nullable:
                warnings.append(Violation(name, "column is missing; its values are treated as missing"))
            continue
        outside = prepared.counts.out_of_range.get(name)
        if outside:
            warnings.append(
                Violation(name, f"{outside} values outside the training range [{feature.min}, {feature.max}]")
            )
        missing = prepared.counts.missing.get(name)
        if missing:
            warnings.append(
                Violation(name, f"{missing} missing values; the training data had none (the model imputes them)")
            )
        if name in prepared.unseen:
            distinct = prepared.unseen[name]
            count = prepared.counts.unseen[name]
            listed = quoted(distinct, limit=5)
            warnings.append(
                Violation(name, f"{len(distinct)} categories never seen in training: {listed} ({count} rows)")
            )
    known = set(schema.feature_names) | set(schema.training_columns)
    warnings += [Violation(str(c), "unknown column, ignored") for c in frame.columns if c not in known]
    return ValidationResult(errors=prepared.violations, warnings=warnings)


def category_column(values: pd.Series, rules: Rules | None = None) -> CategoricalColumn:
    """A column's values as categories by the rules (text stripped, markers missing, numbers as their text);
    values that cannot be categories are missing. For describing training data (:mod:`fasttrack.data.describe`)."""
    feature = FeatureSchema(
        name=str(values.name), kind="categorical", dtype=str(values.dtype), nullable=True, missing_ratio=0.0
    )
    converted = _convert(ColumnConverter(rules or Rules(), []), values, feature)
    assert isinstance(converted.values, CategoricalColumn)
    return converted.values


def marker_mask(stripped: pd.Series, rules: Rules) -> pd.Series:
    """Whether each value of stripped text is a missing marker (missing values are not)."""
    present = stripped.notna()
    lowered = stripped.str.lower()  # ASCII text lowers as ascii_lower does; the rest is lowered by the rule
    other = present & ~stripped.str.isascii().fillna(value=True).astype(bool)
    if other.any():
        lowered = lowered.astype(object)
        lowered[other] = stripped[other].map(ascii_lower)
    return lowered.isin(rules.markers) & present


# ---------------------------------------------------------------------------------------------------- details
def _convert(converter: ColumnConverter, values: pd.Series, feature: FeatureSchema) -> ConvertedColumn:
    """One column through the Arrow paths, or value by value when Arrow cannot hold it (mixed objects)."""
    array = _arrow(values)
    if array is not None:
        return converter.convert(array, feature)
    return _by_value(converter, values.tolist(), feature)


def _arrow(values: pd.Series) -> pa.Array | None:
    """A pandas column as an Arrow array (NaN missing), or ``None`` for Python objects Arrow cannot hold as
    they are (see :func:`~fasttrack.data.arrays.python_values`)."""
    if values.dtype == object:
        array = python_values([None if _is_nan(v) else v for v in values.tolist()])
        return None if array is None or pa.types.is_nested(array.type) else array
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError):
        return None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value  # noqa: PLR0124 - NaN is the one float unequal to itself


def _by_value(converter: ColumnConverter, values: list[Any], feature: FeatureSchema) -> ConvertedColumn:
    """A column of mixed Python objects through the rule value by value (what the Arrow paths reproduce)."""
    convert = converter.rules.converter(feature.kind)
    refused: dict[str, list[Any]] = {}
    model: FeatureValues
    if feature.kind == "categorical":
        position: dict[str, int] = {}
        codes = np.full(len(values), -1, dtype=np.intp)
        for row, value in enumerate(values):
            converted = convert(value)
            if isinstance(converted, Invalid):
                refused.setdefault(converted.expected, []).append(converted.value)
            elif isinstance(converted, str):
                codes[row] = position.setdefault(converted, len(position))
        model = CategoricalColumn(codes=codes, categories=list(position))
    else:
        numbers = np.full(len(values), np.nan)
        for row, value in enumerate(values):
            converted = convert(value)
            if isinstance(converted, Invalid):
                refused.setdefault(converted.expected, []).append(converted.value)
            elif isinstance(converted, float):
                numbers[row] = converted
        model = numbers
    problems = [problem_line(expected, _distinct(bad), len(bad)) for expected, bad in refused.items()]
    return converter.finish(feature, model, problems, sum(len(bad) for bad in refused.values()))


def _distinct(values: list[Any]) -> list[Any]:
    """Values without repeats, in order (they need not be hashable)."""
    seen: list[Any] = []
    for value in values:
        if not any(type(value) is type(other) and value == other for other in seen):
            seen.append(value)
    return seen


def _all_missing(feature: FeatureSchema, rows: int) -> FeatureValues:
    if feature.kind == "categorical":
        return CategoricalColumn(codes=np.full(rows, -1, dtype=np.intp), categories=[])
    return np.full(rows, np.nan)


def _unseen(values: FeatureValues, feature: FeatureSchema) -> list[str]:
    """The categories of ``values`` never seen in training, most frequent first (ties by text)."""
    known = feature.known_categories()
    if not isinstance(values, CategoricalColumn) or known is None:
        return []
    counts = np.bincount(values.codes[values.codes >= 0], minlength=len(values.categories))
    unseen = [(int(-counts[i]), c) for i, c in enumerate(values.categories) if c not in known and counts[i]]
    return [c for _, c in sorted(unseen)]
