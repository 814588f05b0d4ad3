"""The training schema: what each feature is, what values it took, and a reference profile for drift.

A :class:`Schema` is inferred from cleaned training data by :func:`infer_schema`, saved as JSON with every
model, and used to validate new data (:func:`validate`) and to turn any frame into the exact columns and dtypes
the model pipeline was fitted on (:func:`prepare_features`).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fasttrack.errors import DataError, SchemaValidationError, Violation

if TYPE_CHECKING:
    import pandas as pd

FeatureKind = Literal["numeric", "categorical", "boolean"]
Label = str | int | float | bool

SCHEMA_VERSION = 1
#: Categories stored per feature; a feature with this many may have had more, so "unseen" is not checked.
MAX_STORED_CATEGORIES = 1000
#: Categories kept by name in a categorical profile; the rest are summed as ``other``.
PROFILE_TOP_CATEGORIES = 50
#: A whole-number target is a class label when it has at most this many distinct values (and see infer_task).
MAX_CLASSES = 20


class NumericProfile(BaseModel):
    """Reference distribution of a numeric feature: quantile bin edges and the share of rows in each bin.

    ``edges`` has one more element than ``proportions``; the first and last bins are open-ended when the
    profile is applied to new data. ``missing`` is the share of missing values (not included in the bins).
    """

    model_config = ConfigDict(extra="forbid")
    edges: list[float]
    proportions: list[float]
    missing: float = 0.0


class CategoricalProfile(BaseModel):
    """Reference distribution of a categorical or boolean feature: the share of each category.

    Categories beyond the most frequent ones are summed under ``other``; ``missing`` is the missing share.
    """

    model_config = ConfigDict(extra="forbid")
    frequencies: dict[str, float]
    other: float = 0.0
    missing: float = 0.0


class FeatureSchema(BaseModel):
    """One input feature as seen in the training data."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: FeatureKind
    dtype: str = Field(description="pandas dtype of the cleaned training column, e.g. int64, float64, str, bool.")
    nullable: bool
    missing_ratio: float
    min: float | None = None
    max: float | None = None
    integer: bool = Field(False, description="Numeric feature whose training values were all whole numbers.")
    categories: list[str] | None = Field(None, description="Categories seen in training, most frequent first.")
    frequent_categories: list[str] | None = Field(
        None, description="Categories the model encodes; others are grouped with unseen ones."
    )
    example: str | float | bool | None = Field(None, description="A typical value, for docs and examples.")
    profile: NumericProfile | CategoricalProfile | None = None


class TargetSchema(BaseModel):
    """The target column: its task and, for classification, its labels in their original values."""

    model_config = ConfigDict(extra="forbid")
    name: str
    task: Literal["classification", "regression"]
    dtype: str
    labels: list[Label] | None = None
    min: float | None = None
    max: float | None = None
    profile: NumericProfile | CategoricalProfile | None = None


class Schema(BaseModel):
    """The schema of a training data set: features in model input order, the target, and the row count."""

    model_config = ConfigDict(extra="forbid")
    version: int = SCHEMA_VERSION
    features: list[FeatureSchema]
    target: TargetSchema
    n_rows: int

    @property
    def feature_names(self) -> list[str]:
        """Feature names in the order the model pipeline expects them."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSchema:
        """The feature called ``name``; ``KeyError`` when there is none."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def example_record(self) -> dict[str, str | float | bool | None]:
        """One record of typical values, usable as a request example."""
        return {f.name: f.example for f in self.features}

    def save(self, path: str | Path) -> None:
        """Write the schema as JSON, atomically (a temporary file renamed into place)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read a schema written by :meth:`save`."""
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


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


def infer_task(target: pd.Series) -> Literal["classification", "regression"]:
    """Guess the task from the target's values: classification for labels, regression for quantities.

    Text, categorical and boolean targets are classification. A numeric target is classification when its
    values are all whole numbers with at most ``MAX_CLASSES`` (20) distinct values, and either just two of them
    or few enough that each value appears on average at least 20 times (distinct values at most 5 % of rows):
    0/1 flags and class codes qualify, while counts and prices on small data stay regression. Pass the task
    explicitly where the guess is wrong.
    """
    values = target.dropna()
    if _kind(values) != "numeric":
        return "classification"
    numbers = values.to_numpy(dtype="float64")
    distinct = int(np.unique(numbers).size)
    whole = bool(np.all(np.mod(numbers, 1) == 0))
    if whole and distinct <= MAX_CLASSES and (distinct <= 2 or distinct * 20 <= numbers.size):
        return "classification"
    return "regression"


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    task: Literal["auto", "classification", "regression"] = "auto",
    *,
    max_categories: int = 50,
    min_category_count: int = 5,
    profile_bins: int = 10,
) -> Schema:
    """Describe cleaned training data: every feature (all columns but the target, in frame order) and the target.

    Numeric features get their range, whether they are whole numbers and a quantile profile; categorical and
    boolean features their categories, most frequent first (ties by value), and a frequency profile. A
    categorical feature's ``frequent_categories`` are the top ``max_categories`` seen at least
    ``min_category_count`` times. ``task="auto"`` resolves with :func:`infer_task`. Raises ``DataError`` for a
    missing or empty target, a classification target with one class, a non-numeric regression target,
    infinite feature values, or no feature columns.
    """
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not found; columns are: {', '.join(map(str, frame.columns))}")
    names = [c for c in frame.columns if c != target]
    if not names:
        raise DataError(f"no feature columns left besides the target {target!r}")
    target_schema = _target_schema(frame[target], target, task, profile_bins)
    features = [
        _feature_schema(frame[name], str(name), max_categories, min_category_count, profile_bins) for name in names
    ]
    return Schema(features=features, target=target_schema, n_rows=len(frame))


def numeric_profile(values: np.ndarray | pd.Series, bins: int) -> NumericProfile:
    """The reference distribution of numeric values: ``bins`` quantile bins and the share of values in each.

    Edges are the deduplicated quantiles, from the minimum to the maximum; when the minimum alone fills at least
    one quantile bin (e.g. a mostly-zero amount), it is repeated as the first two edges so that it keeps a bin
    of its own (``(-inf, min]``), which is what makes drift in such features visible. Proportions are over the
    non-missing values and sum to 1; ``missing`` is the share of missing values. No values: no bins.
    """
    numbers = _floats(values)
    missing = float(np.isnan(numbers).mean()) if numbers.size else 0.0
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        return NumericProfile(edges=[], proportions=[], missing=missing)
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, max(bins, 1) + 1))
    edges = np.unique(quantiles)
    if edges.size == 1 or quantiles[1] == quantiles[0]:
        edges = np.concatenate([quantiles[:1], edges])
    profile = NumericProfile(edges=edges.tolist(), proportions=[], missing=missing)
    profile.proportions = bin_proportions(profile, numbers)
    return profile


def bin_proportions(profile: NumericProfile, values: np.ndarray | pd.Series) -> list[float]:
    """The share of non-missing ``values`` in each bin of a reference profile, to compare against it.

    Bin ``i`` holds values in ``(edges[i], edges[i + 1]]``, except that the first bin is open below and the last
    open above, so new values outside the training range still land in a bin. All zeros when no value is present.
    """
    count = len(profile.edges) - 1
    if count < 1:
        return []
    numbers = _floats(values)
    numbers = numbers[~np.isnan(numbers)]
    if numbers.size == 0:
        return [0.0] * count
    index = np.searchsorted(np.asarray(profile.edges[1:-1], dtype="float64"), numbers, side="left")
    proportions: list[float] = (np.bincount(index, minlength=count) / numbers.size).tolist()
    return proportions


def categorical_profile(values: pd.Series, top: int = PROFILE_TOP_CATEGORIES) -> CategoricalProfile:
    """The reference distribution of categorical (or boolean) values: the share of each of the ``top`` categories.

    Categories are compared as text (booleans as ``"true"``/``"false"``); shares are over the non-missing values,
    with the categories beyond ``top`` summed as ``other``, so ``frequencies`` and ``other`` add up to 1.
    ``missing`` is the share of missing values.
    """
    text = _as_text(values)
    missing = float(text.isna().mean()) if len(text) else 0.0
    counts = _ranked_counts(text)
    total = int(counts.sum())
    if total == 0:
        return CategoricalProfile(frequencies={}, missing=missing)
    frequencies = {str(k): int(n) / total for k, n in counts.iloc[:top].items()}
    return CategoricalProfile(frequencies=frequencies, other=int(counts.iloc[top:].sum()) / total, missing=missing)


def prepare_features(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The exact model input: the schema's features, in order, with the dtypes the pipeline was fitted on.

    Numeric features become ``float64`` (numeric text accepted); boolean features ``float64`` 0/1 (from booleans,
    0/1 numbers or the text ``true``/``false``); categorical features ``object`` columns of Python ``str``
    (stripped; empty text is missing) with ``np.nan`` for missing, which is what scikit-learn's encoders and
    skl2onnx expect. Extra columns are ignored; an absent nullable feature is all missing. Every problem (absent
    required column, values of the wrong type, infinite numbers) is collected and raised at once as
    ``SchemaValidationError``. The result keeps the input's index.
    """
    import pandas as pd

    columns: dict[str, pd.Series] = {}
    violations: list[Violation] = []
    for feature in schema.features:
        if feature.name not in frame.columns:
            if not feature.nullable:
                violations.append(Violation(feature.name, "required column is missing"))
            columns[feature.name] = _all_missing(feature, frame.index)
            continue
        values, _, problems = _convert(frame[feature.name], feature)
        violations += [Violation(feature.name, p) for p in problems]
        columns[feature.name] = values
    if violations:
        raise SchemaValidationError(violations)
    return pd.DataFrame(columns, index=frame.index)


def validate(frame: pd.DataFrame, schema: Schema) -> ValidationResult:
    """Check new data against the training schema, sorting problems into errors and warnings.

    Errors (the data cannot be scored): an absent column the training data always had, values of the wrong
    type, infinite numbers. Warnings (it can, but look): unknown extra columns, an absent nullable column,
    categories never seen in training, numbers outside the training range, and missing values in a feature
    that had none in training (the model imputes them). Counts are per feature.
    """
    errors: list[Violation] = []
    warnings: list[Violation] = []
    for feature in schema.features:
        name = feature.name
        if name not in frame.columns:
            if feature.nullable:
                warnings.append(Violation(name, "column is missing; its values are treated as missing"))
            else:
                errors.append(Violation(name, "required column is missing"))
            continue
        values, bad, problems = _convert(frame[name], feature)
        errors += [Violation(name, p) for p in problems]
        if feature.kind == "numeric" and feature.min is not None and feature.max is not None:
            numbers = values.to_numpy(dtype="float64")
            outside = int((np.isfinite(numbers) & ((numbers < feature.min) | (numbers > feature.max))).sum())
            if outside:
                bounds = f"[{feature.min}, {feature.max}]"
                warnings.append(Violation(name, f"{outside} values outside the training range {bounds}"))
        if feature.kind == "categorical" and feature.categories and len(feature.categories) < MAX_STORED_CATEGORIES:
            unseen = values[values.notna() & ~values.isin(feature.categories)]
            if len(unseen):
                distinct = _ranked_counts(unseen).index.tolist()
                shown = ", ".join(repr(c) for c in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
                reason = f"{len(distinct)} categories never seen in training: {shown} ({len(unseen)} rows)"
                warnings.append(Violation(name, reason))
        missing = int((values.isna() & ~bad).sum())
        if missing and not feature.nullable:
            reason = f"{missing} missing values; the training data had none (the model imputes them)"
            warnings.append(Violation(name, reason))
    known = {*schema.feature_names, schema.target.name}
    warnings += [Violation(str(c), "unknown column, ignored") for c in frame.columns if c not in known]
    return ValidationResult(errors=errors, warnings=warnings)


def _kind(values: pd.Series) -> FeatureKind:
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "numeric"
    return "categorical"


def _floats(values: np.ndarray | pd.Series) -> np.ndarray:
    pandas = sys.modules.get("pandas")  # a Series means pandas is loaded: no need to import it to check
    if pandas is not None and isinstance(values, pandas.Series):
        floats: np.ndarray = values.to_numpy(dtype="float64", na_value=np.nan)
        return floats
    return np.asarray(values, dtype="float64")


def _as_text(values: pd.Series) -> pd.Series:
    """Values as pandas text with NaN for missing; booleans as ``"true"``/``"false"``."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):
        flags = values.fillna(value=False).to_numpy(dtype=bool)
        return pd.Series(np.where(flags, "true", "false"), index=values.index, dtype="str").where(values.notna())
    return values.astype("str")


def _ranked_counts(text: pd.Series) -> pd.Series:
    """Counts of each non-missing value, most frequent first, ties broken by value so the order is stable."""
    import pandas as pd

    counts = text.value_counts(dropna=True)
    table = pd.DataFrame({"value": counts.index.astype("str"), "count": counts.to_numpy()})
    table = table.sort_values(["count", "value"], ascending=[False, True], kind="mergesort")
    return pd.Series(table["count"].to_numpy(), index=table["value"].to_numpy())


def _plain(value: object) -> Label:
    """A value as the plain Python type JSON keeps as it is (numpy scalars unwrapped, other objects as text)."""
    item = value.item() if isinstance(value, np.generic) else value
    return item if isinstance(item, str | bool | int | float) else str(item)


def _typical(number: float, integer: bool) -> float:
    """A readable typical value: whole for whole-number features, else four significant digits."""
    if integer or number == 0 or not math.isfinite(number):
        return float(round(number))
    digits = max(0, 3 - math.floor(math.log10(abs(number))))
    return round(number, digits)


def _target_schema(values: pd.Series, name: str, task: str, bins: int) -> TargetSchema:
    present = values.dropna()
    if present.empty:
        raise DataError(f"target {name!r} has no values")
    resolved = infer_task(present) if task == "auto" else task
    dtype = str(values.dtype)
    if resolved == "classification":
        labels = sorted({_plain(v) for v in present.unique()}, key=lambda v: (type(v).__name__, v))
        if len(labels) < 2:
            raise DataError(f"target {name!r} has only one class: {labels[0]!r}")
        return TargetSchema(
            name=name, task="classification", dtype=dtype, labels=labels, profile=categorical_profile(values)
        )
    if _kind(present) != "numeric":
        raise DataError(f"target {name!r} is not numeric ({dtype}), so it cannot be a regression target")
    numbers = present.to_numpy(dtype="float64")
    if not np.isfinite(numbers).all():
        raise DataError(f"target {name!r} has infinite values")
    return TargetSchema(
        name=name,
        task="regression",
        dtype=dtype,
        min=float(numbers.min()),
        max=float(numbers.max()),
        profile=numeric_profile(values, bins),
    )


def _feature_schema(
    values: pd.Series, name: str, max_categories: int, min_category_count: int, bins: int
) -> FeatureSchema:
    kind = _kind(values)
    missing_ratio = float(values.isna().mean()) if len(values) else 0.0
    feature = FeatureSchema(
        name=name, kind=kind, dtype=str(values.dtype), nullable=missing_ratio > 0, missing_ratio=missing_ratio
    )
    if kind == "numeric":
        numbers = _floats(values)
        present = numbers[~np.isnan(numbers)]
        infinite = int(np.isinf(present).sum())
        if infinite:
            raise DataError(f"feature {name!r} has {infinite} infinite values; replace or drop them before training")
        feature.profile = numeric_profile(numbers, bins)
        if present.size:
            feature.min, feature.max = float(present.min()), float(present.max())
            feature.integer = bool(np.all(np.mod(present, 1) == 0))
            feature.example = _typical(float(np.median(present)), feature.integer)
        return feature
    feature.profile = categorical_profile(values)
    counts = _ranked_counts(_as_text(values))
    top = str(counts.index[0]) if len(counts) else None
    if kind == "boolean":
        feature.example = None if top is None else top == "true"
        return feature
    feature.categories = [str(c) for c in counts.index[:MAX_STORED_CATEGORIES]]
    feature.frequent_categories = [str(c) for c in counts[counts >= min_category_count].index[:max_categories]]
    feature.example = top
    return feature


def _all_missing(feature: FeatureSchema, index: pd.Index) -> pd.Series:
    import pandas as pd

    if feature.kind == "categorical":
        return pd.Series(np.nan, index=index, dtype=object)
    return pd.Series(np.nan, index=index, dtype="float64")


def _convert(values: pd.Series, feature: FeatureSchema) -> tuple[pd.Series, pd.Series, list[str]]:
    """One column as the model input dtype, the mask of rows that could not be converted, and what was wrong."""
    import pandas as pd

    if feature.kind == "categorical":
        return _categorical_input(values), pd.Series(False, index=values.index), []
    boolean = feature.kind == "boolean"
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        numbers = pd.Series(_floats(values), index=values.index)
        bad = numbers.notna() & ~numbers.isin([0.0, 1.0]) if boolean else pd.Series(False, index=values.index)
        expected = "expected true or false (or 0/1)"
    else:
        text = values.astype("str").str.strip()
        blank = text.isna() | (text == "")
        if boolean:
            lower = text.str.lower()
            numbers = pd.Series(np.where(lower == "true", 1.0, np.where(lower == "false", 0.0, np.nan)), values.index)
            expected = "expected true or false"
        else:
            numbers = pd.to_numeric(text.mask(blank), errors="coerce").astype("float64")
            expected = "expected a number"
        bad = numbers.isna() & ~blank
    problems = []
    if bad.any():
        raw = values[bad].astype("str").str.strip()
        shown = ", ".join(repr(v) for v in raw.unique()[:3]) + (", ..." if raw.nunique() > 3 else "")
        problems.append(f"{expected}, got {shown} ({int(bad.sum())} rows)")
    infinite = pd.Series(np.isinf(numbers.to_numpy(dtype="float64")), index=values.index)
    if infinite.any():
        problems.append(f"{int(infinite.sum())} infinite values")
    bad |= infinite
    return numbers.where(~bad, np.nan), bad, problems


def category_text(value: Any) -> str | None:
    """One raw categorical value as the category text the pipeline was trained on, or ``None`` for missing.

    The rules of :func:`prepare_features`, for one value at a time (the server's drift and feedback windows, the
    ONNX inputs): text is stripped and empty text is missing; booleans are ``"true"``/``"false"``; floats are
    written as Python writes them, without a trailing ``.0`` (``3.0`` from a JSON client is the category ``"3"``
    that integer training data had), NaN is missing; integers as they are.
    """
    if isinstance(value, str):
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else str(float(value)).removesuffix(".0")
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value).strip() or None


def _categorical_input(values: pd.Series) -> pd.Series:
    """Python ``str`` objects with ``np.nan`` for missing: what scikit-learn's encoders and skl2onnx handle."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values.dtype):
        # 3.0 from a JSON client means the category "3" that integer training data had.
        text = values.astype("str").str.removesuffix(".0")
    elif pd.api.types.is_bool_dtype(values.dtype):
        text = _as_text(values)
    else:
        text = values.astype("str").str.strip()
    blank = (text.isna() | (text == "")).to_numpy(dtype=bool)
    converted = text.to_numpy(dtype=object, na_value=np.nan)
    converted[blank] = np.nan
    return pd.Series(converted, index=values.index, dtype=object)
