"""Cleaning raw tables into training data, with a report of every decision taken.

:func:`clean` applies fixed rules in a fixed order (names, values, missing markers, types, rows, columns) and
counts what each rule did in a :class:`CleanReport`, so a run can show and record why its data looks the way
it does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from fasttrack.errors import DataError
from fasttrack.features.frames import marker_mask
from fasttrack.features.rules import DEFAULT_MISSING_MARKERS, FALSE_TEXT, TRUE_TEXT, WHITESPACE, Rules

_REQUESTED, _NOT_KEPT, _CONSTANT, _IDENTIFIER = "requested", "not kept", "constant", "identifier (all values unique)"


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
    sequences = {col for col in frame.columns if _is_row_number(frame[col])}

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

    drop = _requested_drops(list(frame.columns), target, options)
    for col in frame.columns:
        if col == target or col in drop:
            continue
        values = frame[col].dropna()
        if options.drop_constant and values.nunique() <= 1:
            only = "all values missing" if values.empty else f"every value is {_plain(values.iloc[0])!r}"
            drop[col] = (_CONSTANT, f"constant, {only}")
        elif options.drop_identifiers and col in sequences:
            drop[col] = (_IDENTIFIER, "an identifier, integers counting up by one like a row number")
        elif options.drop_identifiers and _is_unique_text(frame[col]):
            drop[col] = (_IDENTIFIER, f"an identifier, {len(values)} text values all different")
    for col, (reason, why) in drop.items():
        report.dropped_columns[col] = reason
        report.notes.append(f"dropped column {col!r}: {why}")

    frame = frame.drop(columns=list(drop)).reset_index(drop=True)
    report.rows_out, report.columns_out = frame.shape
    return frame, report


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
    is cleaned the way a value of it is read when the model serves.
    """
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return s
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) == "boolean":
        # JSON and Parquet booleans with nulls arrive as Python objects.
        report.converted_to_boolean.append(col)
        report.notes.append(f"column {col!r}: true/false values stored as booleans")
        return _as_boolean(s.eq(True), s.notna())
    if not pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
        # Dates, categoricals and mixed objects become their text, so one set of rules applies to all text.
        s = s.astype("str")

    stripped = s.str.strip(WHITESPACE)
    changed = int(((stripped != s) & s.notna()).sum())
    if changed:
        report.stripped_values[col] = changed
        report.notes.append(f"column {col!r}: stripped surrounding spaces from {changed} values")
    is_marker = marker_mask(stripped, rules)
    found = int(is_marker.sum())
    if found:
        seen = ", ".join(repr(v) for v in sorted(stripped[is_marker].unique())[:5])
        report.missing_markers[col] = found
        report.notes.append(f"column {col!r}: {found} values marked missing ({seen})")
        stripped = stripped.mask(is_marker)
    present = stripped.notna()
    if not present.any():
        return stripped

    numbers = _numbers(stripped)
    if numbers is not None:
        whole = bool(present.all()) and bool(np.all(np.mod(numbers, 1) == 0)) and bool(np.all(np.abs(numbers) < 2**63))
        converted = pd.Series(numbers, index=s.index).astype("int64" if whole else "float64")
        report.converted_to_numeric.append(col)
        report.notes.append(f"column {col!r}: text converted to numbers ({converted.dtype})")
        return converted
    lower = stripped[present].str.lower()
    if lower.isin([TRUE_TEXT, FALSE_TEXT]).all():
        report.converted_to_boolean.append(col)
        report.notes.append(f"column {col!r}: text true/false converted to booleans")
        return _as_boolean(stripped.str.lower() == TRUE_TEXT, present)
    return stripped


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


def _as_boolean(is_true: pd.Series, present: pd.Series) -> pd.Series:
    """``bool`` when no value is missing, else pandas' nullable ``boolean`` (numpy bools cannot be missing)."""
    if present.all():
        return is_true.astype(bool)
    return is_true.astype("boolean").mask(~present)


def _is_row_number(s: pd.Series) -> bool:
    """Integers counting up by one (1, 2, 3, ...): a row number or generated id, not a measurement."""
    if not pd.api.types.is_integer_dtype(s.dtype) or len(s) < 2 or s.isna().any():
        return False
    return bool((np.diff(s.to_numpy(dtype="int64")) == 1).all())


def _is_unique_text(s: pd.Series) -> bool:
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
