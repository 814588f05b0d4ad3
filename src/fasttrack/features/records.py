"""The record driver: JSON bodies, CSV bodies, V2 tensors and query strings, one record at a time.

:meth:`RecordDriver.validate` checks a batch of records (mappings of field -> value) against the training
schema and builds the model's input, by :mod:`fasttrack.features.rules`. It is the server's hot path, so it is
one small loop over the schema's features per record, no pandas, with the commonest values (a finite float or
a whole number for a numeric feature, text that is not a missing marker for a categorical one) taken inline;
every other value goes through :meth:`Rules.convert <fasttrack.features.rules.Rules.convert>`, which the
property tests hold the inline checks to.

Fields are sorted three ways: the schema's features (converted), the other columns the training data had
(dropped by cleaning, or the target: ignored and counted, so a row copied from the training file is accepted),
and fields the model never saw (refused naming each, or with ``extra="ignore"`` ignored and counted, as MLflow's
scoring protocol does). A field whose name differs from a feature's only by surrounding spaces is that feature
(training stripped the column names).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import numpy as np

from fasttrack.config import ExtraFields
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.errors import SchemaValidationError, Violation
from fasttrack.features.rules import WHITESPACE, Invalid, Rules, ascii_lower, shown

#: The ``field`` label under which fields the model never saw are counted (their names are not bounded).
UNKNOWN_FIELD: Final = "__unknown__"
#: Problems reported per request; a batch with more stops there (fix these first).
MAX_DETAILS: Final = 100
_ABSENT: Final = object()
#: The inline path takes integers below this in size (exact as floats, never an overflow).
_EXACT_INT: Final = 2**53


@dataclass(frozen=True)
class ModelInput:
    """Validated records as the model's input, and what was unusual about them, per feature.

    ``values`` holds one list per feature (schema order) of converted values: floats for numeric and boolean
    features, category text for categorical ones, ``None`` for missing. :attr:`columns` are the arrays a
    runtime takes, built on first use: requests whose model call is shared join their lists, so the arrays
    are built once per call. ``unseen`` counts categories never seen in training, ``out_of_range`` numbers
    outside the training range, ``missing`` missing values of features the training data always had (the
    pipeline imputes them), ``ignored`` the fields left out (training columns by name, the others as
    :data:`UNKNOWN_FIELD`).
    """

    values: dict[str, list[Any]]
    rows: int
    unseen: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict, repr=False)

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """One array per feature: ``float64`` with NaN for missing, or ``object`` text with ``np.nan``."""
        return {name: model_column(self.kinds.get(name, "numeric"), values) for name, values in self.values.items()}


def model_column(kind: str, values: list[Any]) -> np.ndarray:
    """Converted values of one feature as the model's column (see :attr:`ModelInput.columns`)."""
    if kind == "categorical":
        column = np.empty(len(values), dtype=object)
        column[:] = [np.nan if v is None else v for v in values]
        return column
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Spec:
    """One feature, flattened for the validation loop."""

    name: str
    required: bool
    numeric: bool
    categorical: bool
    low: float | None
    high: float | None
    categories: frozenset[str] | None
    convert: Any  # the feature kind's rule (Rules.number, .flag or .category)


class RecordDriver:
    """Validates records against ``schema`` (see the module docstring); build once per model, reuse per request."""

    def __init__(self, schema: Schema, rules: Rules | None = None) -> None:
        self.schema = schema
        self.rules = rules if rules is not None else Rules(schema.missing_markers)
        self._specs = [_spec(f, self.rules) for f in schema.features]
        self._names = frozenset(f.name for f in schema.features)
        self._training_columns = frozenset(schema.training_columns)
        self._kinds = {f.name: f.kind for f in schema.features}
        self._markers = self.rules.markers
        self._longest_marker = self.rules.longest_marker

    def validate(self, records: Sequence[Any], *, extra: ExtraFields = "refuse") -> ModelInput:
        """Check every record and build the model's input; raises :class:`SchemaValidationError` naming every
        problem (up to :data:`MAX_DETAILS`).

        Problems: not an object, a field the model never saw (with ``extra="refuse"``), a feature the training
        data always had that is absent, a value its feature cannot take, an empty batch.
        """
        count = len(records)
        if count == 0:
            raise SchemaValidationError([Violation("body", "empty batch: send at least one record")])
        specs = self._specs
        names = self._names
        markers, longest = self._markers, self._longest_marker
        values: list[list[Any]] = [[None] * count for _ in specs]
        # Counts are made when a first value needs one: most requests have none.
        unseen: dict[str, int] = {}
        outside: dict[str, int] = {}
        missing: dict[str, int] = {}
        ignored: dict[str, int] = {}
        violations: list[Violation] = []
        single = count == 1
        for row, sent in enumerate(records):
            where = "" if single else f"[{row}]."
            if not isinstance(sent, Mapping):
                violations.append(Violation(where.rstrip(".") or "body", f"expected an object, got {shown(sent)}"))
                continue
            record = sent if sent.keys() <= names else self._sort_fields(sent, where, extra, ignored, violations)
            for column, spec in enumerate(specs):
                value = record.get(spec.name, _ABSENT)
                # Inline, what clients send most (the rules' answers for these values, without the call): a
                # finite float or a whole number for a number, text that is not a marker for a category.
                kind = type(value)
                if spec.numeric and (kind is float or (kind is int and -_EXACT_INT < value < _EXACT_INT)):
                    number = float(value)
                    if number - number == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
                        values[column][row] = number
                        if spec.low is not None and spec.high is not None and not spec.low <= number <= spec.high:
                            outside[spec.name] = outside.get(spec.name, 0) + 1
                        continue
                elif spec.categorical and kind is str:
                    category = value.strip()  # the same characters as WHITESPACE, on C's fast path
                    if len(category) > longest or ascii_lower(category) not in markers:
                        values[column][row] = category
                        if spec.categories is not None and category not in spec.categories:
                            unseen[spec.name] = unseen.get(spec.name, 0) + 1
                        continue
                if value is _ABSENT:
                    if spec.required:
                        violations.append(Violation(f"{where}{spec.name}", "field required"))
                    continue
                converted = spec.convert(value)
                if converted is None:
                    if spec.required:
                        missing[spec.name] = missing.get(spec.name, 0) + 1
                    continue
                if type(converted) is Invalid:
                    violations.append(Violation(f"{where}{spec.name}", converted.reason))
                    continue
                values[column][row] = converted
                if spec.categories is not None and converted not in spec.categories:
                    unseen[spec.name] = unseen.get(spec.name, 0) + 1
                elif spec.low is not None and spec.high is not None and not spec.low <= converted <= spec.high:
                    outside[spec.name] = outside.get(spec.name, 0) + 1
            if len(violations) >= MAX_DETAILS:
                violations = [*violations[:MAX_DETAILS], Violation("body", "more problems not shown; fix these first")]
                break
        if violations:
            raise SchemaValidationError(violations)
        return ModelInput(
            values={spec.name: column for spec, column in zip(specs, values, strict=True)},
            rows=count,
            unseen=unseen,
            out_of_range=outside,
            missing=missing,
            ignored=ignored,
            kinds=self._kinds,
        )

    def _sort_fields(
        self,
        record: Mapping[str, Any],
        where: str,
        extra: ExtraFields,
        ignored: dict[str, int],
        violations: list[Violation],
    ) -> Mapping[str, Any]:
        """The record's features (names stripped where that finds one), after counting or refusing the rest."""
        features: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in record.items():
            name = key if key in self._names else key.strip(WHITESPACE) if isinstance(key, str) else key
            if name in self._names:
                if name == key or name not in record:
                    features[name] = value
            elif name in self._training_columns:
                ignored[name] = ignored.get(name, 0) + 1
            elif extra == "ignore":
                ignored[UNKNOWN_FIELD] = ignored.get(UNKNOWN_FIELD, 0) + 1
            else:
                unknown.append(str(key))
        violations.extend(Violation(f"{where}{key}", "unknown field") for key in unknown[:MAX_DETAILS])
        return features


def _spec(feature: FeatureSchema, rules: Rules) -> _Spec:
    numeric = feature.kind == "numeric"
    return _Spec(
        name=feature.name,
        required=not feature.nullable,
        numeric=numeric,
        categorical=feature.kind == "categorical",
        low=feature.min if numeric else None,
        high=feature.max if numeric else None,
        categories=feature.known_categories(),
        convert=rules.converter(feature.kind),
    )
