"""The Arrow driver: whole columns of Arrow batches (batch scoring; the pandas driver goes through it too).

:class:`ArrowDriver` turns each raw batch into the model's input by :mod:`fasttrack.features.rules`, with the
schema deciding each feature's kind rather than the batch at hand, so every batch of a file gets the same
types. Three paths, each giving exactly what :meth:`Rules.convert <fasttrack.features.rules.Rules.convert>`
gives value by value:

* numbers and booleans of numeric features, and booleans of boolean ones, are cast in one Arrow call (NaN
  missing, infinities refused);
* text of numeric features is cast in one call when it is clean numbers (the grammar of
  :data:`~fasttrack.features.rules.NUMBER` is the cast's own), after stripping and taking out the missing
  markers when it is not;
* everything else -- categories, boolean text, numbers of boolean features, any other type -- goes through the
  rule once per *distinct* value (a few, however many rows) and is mapped back to the rows by index.

Problems are collected per feature (``expected a number, got 'abc', 'x' (3 rows)``) and raised together as
:class:`~fasttrack.errors.SchemaValidationError`. Columns the model does not use pass through, text stripped
and missing markers made missing. pandas is never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fasttrack.data.arrays import Batch, Column, arrow_array, arrow_scalar, arrow_strings, float_values, int_values
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.errors import SchemaValidationError, Violation
from fasttrack.features.columns import CategoricalColumn, FeatureValues
from fasttrack.features.rules import EXPECTED, Invalid, Rules, quoted


@dataclass
class Counts:
    """What was unusual in the values, per feature: categories never seen in training, numbers outside the
    training range, missing values of features the training data always had."""

    unseen: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for mine, theirs in ((self.unseen, other.unseen), (self.out_of_range, other.out_of_range)):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        for name, count in other.missing.items():
            self.missing[name] = self.missing.get(name, 0) + count


@dataclass
class ConvertedColumn:
    """One feature's column as the model's input, the problems found, and the unusual values counted."""

    values: FeatureValues
    problems: list[str]
    unseen: int = 0
    out_of_range: int = 0
    missing: int = 0

    def count(self, counts: Counts, name: str) -> None:
        """Add this column's unusual values to ``counts`` under ``name``."""
        for kept, count in ((counts.unseen, self.unseen), (counts.out_of_range, self.out_of_range)):
            if count:
                kept[name] = count
        if self.missing:
            counts.missing[name] = self.missing


@dataclass
class ScoringBatch:
    """One normalised batch: the columns to write out and the model's feature values.

    ``table`` holds the input's columns (features typed by the schema: float64, booleans or dictionary text;
    other columns passed through). ``numeric`` maps numeric and boolean features to float64 arrays (NaN
    missing); ``categorical`` maps categorical features to :class:`CategoricalColumn`. Features absent from
    the input are in neither (all missing). ``counts`` are the batch's unusual values.
    """

    table: pa.Table
    numeric: dict[str, np.ndarray[Any, Any]]
    categorical: dict[str, CategoricalColumn]
    counts: Counts = field(default_factory=Counts)

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        return int(self.table.num_rows)

    def features(self) -> dict[str, FeatureValues]:
        """Every feature present, numeric and categorical together."""
        return {**self.numeric, **self.categorical}


class ColumnConverter:
    """Converts columns of the given features by ``rules`` (see the module docstring for the paths)."""

    def __init__(self, rules: Rules, features: Sequence[FeatureSchema]) -> None:
        self.rules = rules
        self._markers = arrow_strings(sorted(rules.markers))
        self._categories = {f.name: known for f in features if (known := f.known_categories()) is not None}

    # -- one column --------------------------------------------------------------------------------------
    def convert(self, array: Column, feature: FeatureSchema) -> ConvertedColumn:
        """One column of ``feature`` as the model's input (see the module docstring for the paths)."""
        kind = array.type
        if pa.types.is_dictionary(kind) and feature.kind != "categorical":
            array, kind = _decoded(array), kind.value_type
        if pa.types.is_null(kind):
            return self.finish(feature, _missing_values(feature, len(array)), [])
        if feature.kind == "categorical":
            column, problems, refused = self._categories_of(array)
            return self.finish(feature, column, problems, refused)
        if feature.kind == "numeric" and _numeric_type(kind):
            return self._numbers(feature, _as_floats(array))
        if feature.kind == "boolean" and pa.types.is_boolean(kind):
            return self.finish(feature, float_values(array.cast(pa.float64())), [])
        if feature.kind == "numeric" and _text_type(kind):
            values = self._number_text(array)
            if values is not None:
                return self._numbers(feature, values)
        values, problems, refused = self._distinct(array, feature)
        return self.finish(feature, values, problems, refused)

    def passthrough(self, array: Column) -> Column:
        """A column the model does not use: text stripped, with empty text and missing markers made missing."""
        if _text_type(array.type):
            return self._text(array)
        return array

    def _text(self, array: Column) -> Column:
        stripped = pc.utf8_trim_whitespace(array)
        marker = pc.is_in(pc.ascii_lower(stripped), value_set=self._markers)
        return pc.if_else(marker, arrow_scalar(None, stripped.type), stripped)

    def _number_text(self, array: Column) -> np.ndarray[Any, Any] | None:
        """Numeric text as float64 (NaN missing) in one cast, or ``None`` when some value needs the rule."""
        if not self.rules.numeric_markers:
            # Clean numbers (the usual case) cast as they are: a value that casts matched NUMBER with no space
            # around it, so it is neither a marker nor text to strip (NaN is missing either way).
            try:
                return float_values(pc.cast(array, pa.float64()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        try:
            return float_values(pc.cast(self._text(array), pa.float64()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None

    def _numbers(self, feature: FeatureSchema, values: np.ndarray[Any, Any]) -> ConvertedColumn:
        """Numeric values: infinities refused, quoted as the rule quotes them."""
        infinite = np.isinf(values)
        problems = []
        if infinite.any():
            problems.append(problem_line(EXPECTED["finite"], np.unique(values[infinite]).tolist(), int(infinite.sum())))
        return self.finish(feature, values, problems)

    def _distinct(self, array: Column, feature: FeatureSchema) -> tuple[np.ndarray[Any, Any], list[str], int]:
        """A numeric or boolean feature's values by the rule, once per distinct value; the problems, and the
        rows refused."""
        dictionary, indices = _distinct_values(array)
        convert = self.rules.converter(feature.kind)
        table = np.full(len(dictionary) + 1, np.nan)  # the last entry: where missing rows point
        bad: list[tuple[int, Invalid]] = []
        for position, value in enumerate(dictionary):
            converted = convert(value)
            if isinstance(converted, Invalid):
                bad.append((position, converted))
            elif converted is not None:
                table[position] = converted
        codes = int_values(indices, len(dictionary))
        problems, refused = _problems(bad, codes)
        return table[codes], problems, refused

    def _categories_of(self, array: Column) -> tuple[CategoricalColumn, list[str], int]:
        """A categorical feature's values by the rule, once per distinct value, as codes into the categories."""
        dictionary, indices = _distinct_values(array)
        convert = self.rules.category
        # Distinct values that become the same category (" red" and "red") share one code.
        position: dict[str, int] = {}
        remap: list[int] = []
        bad: list[tuple[int, Invalid]] = []
        for index, value in enumerate(dictionary):
            converted = convert(value)
            if isinstance(converted, Invalid):
                bad.append((index, converted))
                remap.append(-1)
            elif converted is None:
                remap.append(-1)
            else:
                remap.append(position.setdefault(converted, len(position)))
        remap.append(-1)  # where nulls point
        raw = int_values(indices, len(remap) - 1)
        column = CategoricalColumn(codes=np.asarray(remap, dtype=np.intp)[raw], categories=list(position))
        problems, refused = _problems(bad, raw)
        return column, problems, refused

    def finish(
        self, feature: FeatureSchema, values: FeatureValues, problems: list[str], refused: int = 0
    ) -> ConvertedColumn:
        """The model's column with its problems, and its unusual values counted (``refused`` rows, left missing in
        ``values``, are not counted as missing values)."""
        converted = ConvertedColumn(values=values, problems=problems)
        if isinstance(values, CategoricalColumn):
            missing = int((values.codes < 0).sum())
            known = self._categories.get(feature.name)
            if known is not None and values.categories:
                unseen = np.asarray([category not in known for category in values.categories] + [False])
                converted.unseen = int(unseen[values.codes].sum())
        else:
            nan = np.isnan(values)
            missing = int(nan.sum())
            if feature.kind == "numeric" and feature.min is not None and feature.max is not None:
                with np.errstate(invalid="ignore"):
                    outside = (values < feature.min) | (values > feature.max)
                converted.out_of_range = int((outside & np.isfinite(values)).sum())
        if not feature.nullable:
            converted.missing = missing - refused
        return converted


class ArrowDriver:
    """Turns raw batches with the given ``columns`` into :class:`ScoringBatch` es for ``schema``.

    Raises :class:`~fasttrack.errors.SchemaValidationError` at once when a feature the training data always
    had is absent, and for each batch with values its features cannot take.
    """

    def __init__(self, schema: Schema, columns: Sequence[str], *, rules: Rules | None = None) -> None:
        self.schema = schema
        self.columns = list(columns)
        self.rules = rules if rules is not None else Rules(schema.missing_markers)
        self.converter = ColumnConverter(self.rules, schema.features)
        self._features = {f.name: f for f in schema.features}
        present = set(self.columns)
        absent = [f.name for f in schema.features if f.name not in present and not f.nullable]
        if absent:
            raise SchemaValidationError([Violation(name, "required column is missing") for name in absent])

    def normalize(self, batch: Batch) -> ScoringBatch:
        """One raw batch, normalised; every problem in it raised at once."""
        arrays: list[Column] = []
        numeric: dict[str, np.ndarray[Any, Any]] = {}
        categorical: dict[str, CategoricalColumn] = {}
        counts = Counts()
        violations: list[Violation] = []
        for name, array in zip(self.columns, batch.columns, strict=True):
            feature = self._features.get(name)
            if feature is None:
                arrays.append(self.converter.passthrough(array))
                continue
            converted = self.converter.convert(array, feature)
            violations += [Violation(name, problem) for problem in converted.problems]
            converted.count(counts, name)
            if isinstance(converted.values, CategoricalColumn):
                categorical[name] = converted.values
                arrays.append(converted.values.arrow())
            else:
                numeric[name] = converted.values
                nulls = np.isnan(converted.values)
                if feature.kind == "boolean":
                    arrays.append(arrow_array(converted.values == 1.0, missing=nulls))
                else:
                    arrays.append(arrow_array(converted.values, missing=nulls))
        if violations:
            raise SchemaValidationError(violations)
        table = pa.Table.from_arrays(arrays, names=self.columns)
        return ScoringBatch(table=table, numeric=numeric, categorical=categorical, counts=counts)


def _missing_values(feature: FeatureSchema, rows: int) -> FeatureValues:
    if feature.kind == "categorical":
        return CategoricalColumn(codes=np.full(rows, -1, dtype=np.intp), categories=[])
    return np.full(rows, np.nan)


def _numeric_type(kind: pa.DataType) -> bool:
    return bool(pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _text_type(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _as_floats(array: Column) -> np.ndarray[Any, Any]:
    """Numbers or booleans as float64: integers rounded to the nearest float, as Python's ``float()`` does."""
    if not pa.types.is_floating(array.type) or array.type != pa.float64():
        array = pc.cast(array, pa.float64(), safe=False)
    return float_values(array)


def _decoded(array: Column) -> Column:
    """A dictionary column as the plain column of its values."""
    return pc.cast(array, array.type.value_type)


def _distinct_values(array: Column) -> tuple[list[Any], Column]:
    """A column's distinct values (as Python values) and, per row, the index of its value among them (null:
    missing). Types Arrow cannot hash (lists, structs) are taken value by value."""
    try:
        dictionary, indices = _dictionary_encoded(array)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        values = array.to_pylist()
        return values, arrow_array(np.arange(len(values), dtype=np.int32))
    return dictionary.to_pylist(), indices


def _dictionary_encoded(array: Column) -> tuple[pa.Array, Column]:
    """A column's distinct values and, per row, the index of its value among them (null: missing)."""
    if isinstance(array, pa.ChunkedArray):
        if pa.types.is_dictionary(array.type):  # chunks may have dictionaries of their own
            array = _decoded(array)
        encoded = pc.dictionary_encode(array)
        if encoded.num_chunks == 0:
            return pa.nulls(0, array.type), pa.chunked_array([], pa.int32())
        dictionary = encoded.chunk(0).dictionary
        if all(chunk.dictionary.equals(dictionary) for chunk in encoded.chunks[1:]):  # pyarrow shares one
            return dictionary, pa.chunked_array([chunk.indices for chunk in encoded.chunks])
        array = array.combine_chunks()
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    return encoded.dictionary, encoded.indices


def _problems(bad: list[tuple[int, Invalid]], codes: np.ndarray[Any, Any]) -> tuple[list[str], int]:
    """One problem per kind of refusal (the distinct values quoted, up to three, and the rows counted), and the
    rows refused in all."""
    if not bad:
        return [], 0
    rows = np.bincount(codes, minlength=int(codes.max(initial=0)) + 1)
    grouped: dict[str, tuple[list[Any], int]] = {}
    for position, invalid in bad:
        quoted, count = grouped.get(invalid.expected, ([], 0))
        grouped[invalid.expected] = ([*quoted, invalid.value], count + int(rows[position]))
    problems = [problem_line(expected, quoted, count) for expected, (quoted, count) in grouped.items() if count]
    return problems, sum(count for _, count in grouped.values())


def problem_line(expected: str, values: list[Any], rows: int) -> str:
    """A column's problem: what was expected, up to three of the distinct values refused, and the rows."""
    return f"expected {expected}, got {quoted(values)} ({rows} rows)"
