"""Describing cleaned training data: the task, the schema of every feature, and reference profiles for drift.

:func:`infer_schema` gives the :class:`~fasttrack.data.schema.Schema` saved with every model: each feature's
kind, range or categories (as :mod:`fasttrack.features` reads them), a typical value, and a reference profile
(quantile bins, category shares) that live drift is measured against
(:func:`~fasttrack.data.schema.bin_proportions`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from fasttrack.data.schema import (
    MAX_CLASSES,
    MAX_STORED_CATEGORIES,
    PROFILE_TOP_CATEGORIES,
    CategoricalProfile,
    FeatureSchema,
    Label,
    NumericProfile,
    Schema,
    TargetSchema,
    bin_proportions,
)
from fasttrack.errors import DataError
from fasttrack.features.frames import category_column
from fasttrack.features.rules import DEFAULT_MISSING_MARKERS, FeatureKind

if TYPE_CHECKING:
    import pandas as pd


def infer_task(target: pd.Series) -> Literal["classification", "regression"]:
    """Guess the task from the target's values: classification for labels, regression for quantities.

    Text, categorical and boolean targets are classification. A numeric target is classification when its
    values are all whole numbers with at most ``MAX_CLASSES`` (20) distinct values, and either just two of them
    or few enough that each value appears on average at least 20 times (distinct values at most 5 % of rows):
    0/1 flags and class codes qualify, while counts and prices on small data stay regression. Pass the task
    explicitly where the guess is wrong.
    """
    values = target.dropna()
    if column_kind(values) != "numeric":
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
    dropped_columns: Mapping[str, str] | None = None,
    missing_markers: Sequence[str] = DEFAULT_MISSING_MARKERS,
) -> Schema:
    """Describe cleaned training data: every feature (all columns but the target, in frame order) and the target.

    Numeric features get their range, whether they are whole numbers and a quantile profile; categorical and
    boolean features their categories, most frequent first (ties by value), and a frequency profile. A
    categorical feature's ``frequent_categories`` are the top ``max_categories`` seen at least
    ``min_category_count`` times. ``task="auto"`` resolves with :func:`infer_task`. ``dropped_columns`` (column
    -> why, :attr:`CleanReport.dropped_columns <fasttrack.data.clean.CleanReport.dropped_columns>`) and the
    ``missing_markers`` cleaning used are recorded, so that new data is read the way this data was. Raises
    ``DataError`` for a
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
    return Schema(
        features=features,
        target=target_schema,
        n_rows=len(frame),
        dropped_columns=dict(dropped_columns or {}),
        missing_markers=list(missing_markers),
    )


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


def column_kind(values: pd.Series) -> FeatureKind:
    """The kind of feature a cleaned column becomes: ``boolean`` for booleans, ``numeric`` for numbers,
    ``categorical`` for everything else (text). Training describes its columns by this rule, and the check of new
    data (:mod:`fasttrack.data.compat`) tells a changed kind by it."""
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
    """Values as the category text the model reads (:mod:`fasttrack.features.rules`), ``None`` for missing."""
    import pandas as pd

    return pd.Series(category_column(values).values(None), index=values.index, dtype=object)


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
    if column_kind(present) != "numeric":
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
    kind = column_kind(values)
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
