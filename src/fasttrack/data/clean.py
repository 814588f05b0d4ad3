"""Cleaning raw tables into training data, with a report of every decision taken.

:func:`clean` applies fixed rules in a fixed order (names, values, missing markers, types, rows, columns) and
counts what each rule did in a :class:`CleanReport`, so a run can show and record why its data looks the way
it does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from fasttrack.errors import DataError
from fasttrack.features.frames import marker_mask
from fasttrack.features.rules import DEFAULT_MISSING_MARKERS, FALSE_TEXT, TRUE_TEXT, WHITESPACE, Rules

_REQUESTED, _NOT_KEPT, _CONSTANT, _IDENTIFIER = "requested", "not kept", "constant", "identifier (all values unique)"
#: Marker values a note shows by name.
_SHOWN_MARKERS = 5


class CleanOptions(BaseModel):
    """What :func:`clean` may do; the defaults suit most tabular data sets."""

    model_config = ConfigDict(extra="forbid")
    missing_markers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_MARKERS),
        description="Text values that mean 'missing', compared case-insensitively after stripping spaces.",
    )
    drop_duplicates: bool = Field(True, description="Drop rows that repeat an earlier row exactly.")
    drop_columns: list[str] = Field(default_factory=list, description="Columns to drop.")
    keep_columns: list[str] | None = Field(None, description="Feature columns to keep (the target always stays).")
    drop_constant: bool = Field(True, description="Drop columns with at most one distinct non-missing value.")
    drop_identifiers: bool = Field(True, description="Drop all-unique text columns and row-number columns.")


class CleanReport(BaseModel):
    """What :func:`clean` did: counts per rule and one human-readable note per decision."""

    model_config = ConfigDict(extra="forbid")
    rows_in: int
    rows_out: int = 0
    columns_in: int
    columns_out: int = 0
    renamed_columns: dict[str, str] = Field(default_factory=dict, description="Original name -> stripped name.")
    stripped_values: dict[str, int] = Field(default_factory=dict, description="Text values changed by stripping.")
    missing_markers: dict[str, int] = Field(default_factory=dict, description="Marker values turned missing.")
    duplicates_dropped: int = 0
    rows_without_target_dropped: int = 0
    converted_to_numeric: list[str] = Field(default_factory=list)
    converted_to_boolean: list[str] = Field(default_factory=list)
    dropped_columns: dict[str, str] = Field(default_factory=dict, description="Column -> reason it was dropped.")
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for a person: the row and column counts, then one line per cleaning decision."""
        return [
            f"rows: {self.rows_in} in, {self.rows_out} out",
            f"columns: {self.columns_in} in, {self.columns_out} out",
            *self.notes,
        ]


def clean(
    frame: pd.DataFrame, target: str | None, options: CleanOptions | None = None
) -> tuple[pd.DataFrame, CleanReport]:
    """Clean a raw table for training and report what changed; the input frame is left untouched.

    In order: strip column names (duplicate names are an error) and check the target exists; strip text values;
    turn missing markers into missing values; turn text columns of numbers into numbers (``int64`` when whole
    and complete, else ``float64``) and of ``true``/``false`` into booleans; drop rows without a target (none
    left is an error) and exact duplicate rows; drop requested, not kept, constant and identifier-like columns
    (all-unique text, or integers counting up by one), never the target. The result has a fresh index ``0..n-1``.
    """
    options = options or CleanOptions()
    report = CleanReport(rows_in=len(frame), columns_in=frame.shape[1])
    frame = _strip_names(frame, report)
    if target is not None:
        target = target if target in frame.columns else target.strip()
        if target not in frame.columns:
            raise DataError(f"target column {target!r} not found; columns are: {', '.join(frame.columns)}")
    frame = _normalize_values(frame, options, report)
    sequences = {col for col in frame.columns if is_row_number(frame[col])}

    if target is not None:
        without = frame[target].isna()
        report.rows_without_target_dropped = int(without.sum())
        if len(frame) and without.all():
            raise DataError(f"no rows left: every row is missing the target {target!r}")
        if report.rows_without_target_dropped:
            frame = frame[~without]
            report.notes.append(f"dropped {report.rows_without_target_dropped} rows without a target value")
    if options.drop_duplicates and len(frame):
        duplicated = frame.duplicated()
        report.duplicates_dropped = int(duplicated.sum())
        if report.duplicates_dropped:
            frame = frame[~duplicated]
            report.notes.append(f"dropped {report.duplicates_dropped} exact duplicate rows")

    def facts(col: str) -> ColumnFacts:
        values = frame[col].dropna()
        distinct = int(values.nunique())
        return ColumnFacts(
            distinct=min(distinct, 2),
            first=values.iloc[0] if len(values) else None,
            row_number=col in sequences,
            # Only asked of non-constant columns, as the rule below needs it for them alone.
            unique_text=is_unique_text(frame[col]) if distinct > 1 and options.drop_identifiers else False,
            present=len(values),
        )

    drop = column_drops(list(frame.columns), target, options, facts, report)
    frame = frame.drop(columns=list(drop)).reset_index(drop=True)
    report.rows_out, report.columns_out = frame.shape
    return frame, report


@dataclass(frozen=True)
class ColumnFacts:
    """What the column rules ask of a cleaned column: its non-missing values (``present``), their distinct count
    up to 2, the first of them, whether it counts rows (:func:`is_row_number`, on the data before rows were
    dropped) and whether it is text with every value different."""

    present: int
    distinct: int
    first: object
    row_number: bool
    unique_text: bool


def column_drops(
    columns: list[str],
    target: str | None,
    options: CleanOptions,
    facts: Callable[[str], ColumnFacts],
    report: CleanReport,
) -> dict[str, tuple[str, str]]:
    """The columns to drop (requested, not kept, constant, identifier-like; never the target) with their reasons,
    each recorded in ``report``. ``facts`` is asked only about columns the rules still need to look at."""
    drop = _requested_drops(columns, target, options)
    for col in columns:
        if col == target or col in drop:
            continue
        known = facts(col)
        if options.drop_constant and known.distinct <= 1:
            only = "all values missing" if not known.present else f"every value is {_plain(known.first)!r}"
            drop[col] = (_CONSTANT, f"constant, {only}")
        elif options.drop_identifiers and known.row_number:
            drop[col] = (_IDENTIFIER, "an identifier, integers counting up by one like a row number")
        elif options.drop_identifiers and known.unique_text:
            drop[col] = (_IDENTIFIER, f"an identifier, {known.present} text values all different")
    for col, (reason, why) in drop.items():
        report.dropped_columns[col] = reason
        report.notes.append(f"dropped column {col!r}: {why}")
    return drop


def _normalize_values(frame: pd.DataFrame, options: CleanOptions, report: CleanReport) -> pd.DataFrame:
    rules = Rules(options.missing_markers)
    return pd.DataFrame({col: _clean_values(frame[col], col, rules, report) for col in frame.columns})


def _strip_names(frame: pd.DataFrame, report: CleanReport) -> pd.DataFrame:
    names = []
    for position, original in enumerate(frame.columns):
        name = str(original).strip() or f"unnamed_{position}"
        if name != str(original):
            report.renamed_columns[str(original)] = name
            report.notes.append(f"renamed column {str(original)!r} to {name!r}")
        names.append(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        shown = ", ".join(repr(n) for n in duplicates)
        raise DataError(f"duplicate column names (after stripping spaces): {shown}; column names must be unique")
    return frame.set_axis(names, axis=1).reset_index(drop=True)


def _clean_values(s: pd.Series, col: str, rules: Rules, report: CleanReport) -> pd.Series:
    """One column's values: text stripped, markers made missing, then numbers or booleans found.

    What is text, a marker, a number or a boolean is decided by :mod:`fasttrack.features.rules`, so that a column
    is cleaned the way a value of it is read when the model serves. The three steps (:func:`value_stats`,
    :func:`value_plan`, :func:`apply_value_plan`) are also what the Dask engine runs per partition and once
    globally, so both engines clean a column by one implementation.
    """
    stats, prepared = _value_stats(s, rules, full=False)
    plan = value_plan(stats)
    record_values(col, stats, plan, report)
    return apply_value_plan(s, plan, rules, prepared)


@dataclass
class ValueStats:
    """What a column (or one part of it) holds, before any value is converted; parts merge with :meth:`merge`.

    ``mode`` is ``keep`` (already numbers or booleans), ``object`` (Python objects, maybe booleans) or ``text``.
    ``bool_objects`` is whether every non-missing object is a boolean and one is (``None`` when not checked), the
    rest describes the values as text after stripping and taking out the missing markers.
    """

    mode: Literal["keep", "object", "text"]
    rows: int = 0
    not_null: int = 0
    bool_objects: bool | None = None
    any_bool_object: bool = False
    stripped: int = 0
    markers: int = 0
    marker_values: list[str] = field(default_factory=list)
    present: int = 0
    numeric: bool = True
    whole: bool = True
    flags: bool = True

    def merge(self, other: ValueStats) -> ValueStats:
        """The statistics of this part followed by ``other``."""
        return ValueStats(
            mode=self.mode,
            rows=self.rows + other.rows,
            not_null=self.not_null + other.not_null,
            bool_objects=None
            if self.bool_objects is None or other.bool_objects is None
            else self.bool_objects and other.bool_objects,
            any_bool_object=self.any_bool_object or other.any_bool_object,
            stripped=self.stripped + other.stripped,
            markers=self.markers + other.markers,
            marker_values=sorted({*self.marker_values, *other.marker_values})[:_SHOWN_MARKERS],
            present=self.present + other.present,
            numeric=self.numeric and other.numeric,
            whole=self.whole and other.whole,
            flags=self.flags and other.flags,
        )


@dataclass(frozen=True)
class ValuePlan:
    """How a column's values are converted, decided once from the whole column's :class:`ValueStats`.

    ``kind``: ``keep``, ``object_boolean`` (Python booleans stored as booleans), ``numeric``, ``boolean`` (text
    true/false) or ``text``; ``dtype`` the numbers' dtype; ``complete`` whether no value is missing (booleans
    then need no nullable dtype).
    """

    kind: Literal["keep", "object_boolean", "numeric", "boolean", "text"]
    dtype: str | None = None
    complete: bool = True


def value_stats(s: pd.Series, rules: Rules) -> ValueStats:
    """The :class:`ValueStats` of a column or of one partition of it (every figure, for merging)."""
    return _value_stats(s, rules, full=True)[0]


def value_plan(stats: ValueStats) -> ValuePlan:
    """The conversion the rules give a column with these statistics (see :func:`clean`)."""
    if stats.mode == "keep":
        return ValuePlan("keep")
    if stats.mode == "object" and stats.bool_objects and stats.any_bool_object:
        return ValuePlan("object_boolean", complete=stats.not_null == stats.rows)
    if stats.present == 0:
        return ValuePlan("text")
    complete = stats.present == stats.rows
    if stats.numeric:
        return ValuePlan("numeric", dtype="int64" if complete and stats.whole else "float64")
    if stats.flags:
        return ValuePlan("boolean", complete=complete)
    return ValuePlan("text")


def record_values(col: str, stats: ValueStats, plan: ValuePlan, report: CleanReport) -> None:
    """Count and note in ``report`` what cleaning did to a column's values."""
    if plan.kind == "keep":
        return
    if plan.kind == "object_boolean":
        # JSON and Parquet booleans with nulls arrive as Python objects.
        report.converted_to_boolean.append(col)
        report.notes.append(f"column {col!r}: true/false values stored as booleans")
        return
    if stats.stripped:
        report.stripped_values[col] = stats.stripped
        report.notes.append(f"column {col!r}: stripped surrounding spaces from {stats.stripped} values")
    if stats.markers:
        seen = ", ".join(repr(v) for v in stats.marker_values)
        report.missing_markers[col] = stats.markers
        report.notes.append(f"column {col!r}: {stats.markers} values marked missing ({seen})")
    if plan.kind == "numeric":
        report.converted_to_numeric.append(col)
        report.notes.append(f"column {col!r}: text converted to numbers ({plan.dtype})")
    elif plan.kind == "boolean":
        report.converted_to_boolean.append(col)
        report.notes.append(f"column {col!r}: text true/false converted to booleans")


def apply_value_plan(
    s: pd.Series, plan: ValuePlan, rules: Rules, prepared: tuple[pd.Series, np.ndarray | None] | None = None
) -> pd.Series:
    """A column (or one partition of it) converted as ``plan`` says; ``prepared`` reuses the text and numbers
    :func:`value_stats` already computed."""
    if plan.kind == "keep":
        return s
    if plan.kind == "object_boolean":
        return _as_boolean(s.eq(True), s.notna(), plan.complete)
    stripped, numbers = prepared if prepared is not None else _prepare_text(s, rules)
    if plan.kind == "numeric":
        numbers = numbers if numbers is not None else _numbers(stripped)
        if numbers is None:  # the plan was made from other data than this; refuse rather than guess
            raise DataError(f"column {s.name!r}: values that are not numbers where the column was numeric")
        converted: pd.Series = pd.Series(numbers, index=s.index).astype("int64" if plan.dtype == "int64" else "float64")
        return converted
    if plan.kind == "boolean":
        return _as_boolean(stripped.str.lower() == TRUE_TEXT, stripped.notna(), plan.complete)
    return stripped


def _value_stats(
    s: pd.Series, rules: Rules, *, full: bool
) -> tuple[ValueStats, tuple[pd.Series, np.ndarray | None] | None]:
    """:func:`value_stats`, with the text and numbers found; ``full=False`` stops as soon as the plan of a whole
    column is known (the single-machine path), ``full=True`` computes every figure a merge may need."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return ValueStats(mode="keep", rows=len(s)), None
    stats = ValueStats(mode="object" if s.dtype == object else "text", rows=len(s), not_null=int(s.notna().sum()))
    if stats.mode == "object":
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        stats.bool_objects = inferred in ("boolean", "empty")
        stats.any_bool_object = inferred == "boolean"
        if stats.any_bool_object and not full:
            return stats, None
    stripped, is_marker, changed = _strip_and_mark(s, rules)
    stats.stripped = changed
    stats.markers = int(is_marker.sum())
    if stats.markers:
        stats.marker_values = sorted(stripped[is_marker].unique())[:_SHOWN_MARKERS]
        stripped = stripped.mask(is_marker)
    present = stripped.notna()
    stats.present = int(present.sum())
    if not stats.present:
        return stats, (stripped, None)
    numbers = _numbers(stripped)
    stats.numeric = numbers is not None
    if numbers is not None:
        stats.whole = bool(np.all(np.mod(numbers, 1) == 0)) and bool(np.all(np.abs(numbers) < 2**63))
        if not full:
            return stats, (stripped, numbers)
    stats.flags = bool(stripped[present].str.lower().isin([TRUE_TEXT, FALSE_TEXT]).all())
    return stats, (stripped, numbers)


def _prepare_text(s: pd.Series, rules: Rules) -> tuple[pd.Series, np.ndarray | None]:
    stripped, is_marker, _ = _strip_and_mark(s, rules)
    return (stripped.mask(is_marker) if is_marker.any() else stripped), None


def _strip_and_mark(s: pd.Series, rules: Rules) -> tuple[pd.Series, pd.Series, int]:
    """Values as stripped text, which of them are missing markers, and how many stripping changed."""
    if not pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        # Dates, categoricals and mixed objects become their text, so one set of rules applies to all text.
        s = s.astype("str")
    stripped = s.str.strip(WHITESPACE)
    changed = int(((stripped != s) & s.notna()).sum())
    return stripped, marker_mask(stripped, rules), changed


def _numbers(text: pd.Series) -> np.ndarray | None:
    """Text (stripped, missing as missing) as float64 when every present value is a number as the feature rules
    read numbers (``inf`` included: training then refuses it by name), else ``None``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        numbers: np.ndarray = pc.cast(pa.array(text, from_pandas=True), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return numbers


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so notes read ``5`` rather than ``np.int64(5)``."""
    return value.item() if isinstance(value, np.generic) else value


def _as_boolean(is_true: pd.Series, present: pd.Series, complete: bool) -> pd.Series:
    """``bool`` when no value of the column is missing, else pandas' nullable ``boolean`` (numpy bools cannot be
    missing)."""
    if complete:
        return is_true.astype(bool)
    return is_true.astype("boolean").mask(~present)


def is_row_number(s: pd.Series) -> bool:
    """Integers counting up by one (1, 2, 3, ...): a row number or generated id, not a measurement."""
    if not pd.api.types.is_integer_dtype(s.dtype) or len(s) < 2 or s.isna().any():
        return False
    return bool((np.diff(s.to_numpy(dtype="int64")) == 1).all())


def is_unique_text(s: pd.Series) -> bool:
    """Text (not numbers or booleans) with at least two values, all different: an identifier-like column."""
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return False
    values = s.dropna()
    return len(values) >= 2 and values.nunique() == len(values)


def _requested_drops(columns: list[str], target: str | None, options: CleanOptions) -> dict[str, tuple[str, str]]:
    """Columns dropped on request (``drop_columns``) or left out of ``keep_columns``, with their reasons."""
    known = ", ".join(columns)
    requested = [c.strip() for c in options.drop_columns]
    keep = None if options.keep_columns is None else [c.strip() for c in options.keep_columns]
    for option, names in (("drop_columns", requested), ("keep_columns", keep or [])):
        unknown = [n for n in names if n not in columns]
        if unknown:
            shown = ", ".join(repr(n) for n in unknown)
            raise DataError(f"unknown columns in {option}: {shown}; columns are: {known}")
    if target is not None and target in requested:
        raise DataError(f"cannot drop the target column {target!r}")
    drops = dict.fromkeys(requested, (_REQUESTED, "requested in drop_columns"))
    if keep is not None:
        left_out = [c for c in columns if c not in keep and c != target and c not in drops]
        drops.update(dict.fromkeys(left_out, (_NOT_KEPT, "not in keep_columns")))
    return drops
