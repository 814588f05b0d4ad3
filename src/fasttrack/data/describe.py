"""Describing cleaned training data: the task, the schema of every feature, and reference profiles for drift.

:func:`infer_schema` gives the :class:`~fasttrack.data.schema.Schema` saved with every model: each feature's
kind, range or categories (as :mod:`fasttrack.features` reads them), a typical value, and a reference profile
(quantile bins, category shares) that live drift is measured against
(:func:`~fasttrack.data.schema.bin_proportions`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
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
    return task_for("numeric", int(np.unique(numbers).size), bool(np.all(np.mod(numbers, 1) == 0)), int(numbers.size))


def task_for(kind: FeatureKind, distinct: int, whole: bool, present: int) -> Literal["classification", "regression"]:
    """:func:`infer_task`'s rule from a target's kind, its distinct values (counting beyond ``MAX_CLASSES`` is not
    needed), whether they are all whole numbers, and how many there are."""
    if kind != "numeric":
        return "classification"
    if whole and distinct <= MAX_CLASSES and (distinct <= 2 or distinct * 20 <= present):
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
    quantiles = np.quantile(finite, profile_levels(bins))
    profile = NumericProfile(edges=profile_edges(quantiles), proportions=[], missing=missing)
    profile.proportions = bin_proportions(profile, numbers)
    return profile


def profile_levels(bins: int) -> np.ndarray:
    """The quantile levels a numeric profile's edges are taken at: ``bins + 1`` evenly spaced from 0 to 1."""
    levels: np.ndarray = np.linspace(0.0, 1.0, max(bins, 1) + 1)
    return levels


def profile_edges(quantiles: np.ndarray) -> list[float]:
    """A numeric profile's bin edges from its quantiles (see :func:`numeric_profile`)."""
    edges = np.unique(quantiles)
    if edges.size == 1 or quantiles[1] == quantiles[0]:
        edges = np.concatenate([quantiles[:1], edges])
    result: list[float] = edges.tolist()
    return result


def categorical_profile(values: pd.Series, top: int = PROFILE_TOP_CATEGORIES) -> CategoricalProfile:
    """The reference distribution of categorical (or boolean) values: the share of each of the ``top`` categories.

    Categories are compared as text (booleans as ``"true"``/``"false"``); shares are over the non-missing values,
    with the categories beyond ``top`` summed as ``other``, so ``frequencies`` and ``other`` add up to 1.
    ``missing`` is the share of missing values.
    """
    text = as_text(values)
    missing = float(text.isna().mean()) if len(text) else 0.0
    counts = ranked_counts(text)
    return categorical_profile_of(counts, int(counts.sum()), missing, top)


def categorical_profile_of(
    counts: pd.Series, total: int, missing: float, top: int = PROFILE_TOP_CATEGORIES
) -> CategoricalProfile:
    """:func:`categorical_profile` from ranked counts (:func:`ranked_counts`; at least the ``top`` first), the
    number of non-missing values and the missing share."""
    if total == 0:
        return CategoricalProfile(frequencies={}, missing=missing)
    shown = counts.iloc[:top]
    frequencies = {str(k): int(n) / total for k, n in shown.items()}
    return CategoricalProfile(frequencies=frequencies, other=(total - int(shown.sum())) / total, missing=missing)


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


def as_text(values: pd.Series) -> pd.Series:
    """Values as the category text the model reads (:mod:`fasttrack.features.rules`), ``None`` for missing."""
    import pandas as pd

    return pd.Series(category_column(values).values(None), index=values.index, dtype=object)


def ranked_counts(text: pd.Series) -> pd.Series:
    """Counts of each non-missing value, most frequent first, ties broken by value so the order is stable."""
    return rank_counts(text.value_counts(dropna=True))


def rank_counts(counts: pd.Series) -> pd.Series:
    """Counts (indexed by value) in :func:`ranked_counts`' order: most frequent first, ties by value as text."""
    import pandas as pd

    table = pd.DataFrame({"value": counts.index.astype("str"), "count": counts.to_numpy()})
    table = table.sort_values(["count", "value"], ascending=[False, True], kind="mergesort")
    return pd.Series(table["count"].to_numpy(), index=table["value"].to_numpy())


def plain_label(value: object) -> Label:
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
    labels = {plain_label(v) for v in present.unique()} if resolved == "classification" else set()
    numbers = (
        present.to_numpy(dtype="float64") if resolved == "regression" and column_kind(present) == "numeric" else None
    )
    return target_schema(
        name,
        resolved,
        values.dtype,
        labels=labels,
        profile=lambda: categorical_profile(values) if resolved == "classification" else numeric_profile(values, bins),
        finite=None if numbers is None else bool(np.isfinite(numbers).all()),
        bounds=None if numbers is None or numbers.size == 0 else (float(numbers.min()), float(numbers.max())),
    )


def target_schema(
    name: str,
    task: str,
    dtype: object,
    *,
    labels: set[Label],
    profile: Callable[[], NumericProfile | CategoricalProfile],
    finite: bool | None,
    bounds: tuple[float, float] | None,
) -> TargetSchema:
    """The target's schema from what its values gave: its classes (``labels``, for classification), whether its
    numbers are all finite and their range (regression; ``finite=None`` when it is not numeric), and its profile
    (called only when the target passes the checks)."""
    import pandas as pd

    text = str(dtype)
    if task == "classification":
        ordered = sorted(labels, key=lambda v: (type(v).__name__, v))
        if len(ordered) < 2:
            raise DataError(f"target {name!r} has only one class: {ordered[0]!r}")
        return TargetSchema(name=name, task="classification", dtype=text, labels=ordered, profile=profile())
    numeric = not pd.api.types.is_bool_dtype(dtype) and pd.api.types.is_numeric_dtype(dtype)  # type: ignore[arg-type]
    if not numeric or finite is None or bounds is None:
        raise DataError(f"target {name!r} is not numeric ({text}), so it cannot be a regression target")
    if not finite:
        raise DataError(f"target {name!r} has infinite values")
    return TargetSchema(name=name, task="regression", dtype=text, min=bounds[0], max=bounds[1], profile=profile())


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
        check_finite(name, int(np.isinf(present).sum()))
        feature.profile = numeric_profile(numbers, bins)
        if present.size:
            numeric_facts(
                feature,
                float(present.min()),
                float(present.max()),
                bool(np.all(np.mod(present, 1) == 0)),
                float(np.median(present)),
            )
        return feature
    feature.profile = categorical_profile(values)
    categorical_facts(feature, ranked_counts(as_text(values)), max_categories, min_category_count)
    return feature


def check_finite(name: str, infinite: int) -> None:
    """Refuse a numeric feature with ``infinite`` values (training cannot use them)."""
    if infinite:
        raise DataError(f"feature {name!r} has {infinite} infinite values; replace or drop them before training")


def numeric_facts(feature: FeatureSchema, low: float, high: float, integer: bool, median: float) -> None:
    """Fill a numeric feature's range, whole-number flag and typical value (from the median)."""
    feature.min, feature.max = low, high
    feature.integer = integer
    feature.example = _typical(median, integer)


def categorical_facts(feature: FeatureSchema, counts: pd.Series, max_categories: int, min_category_count: int) -> None:
    """Fill a categorical or boolean feature's categories and example from its ranked counts
    (:func:`ranked_counts`; the first ``MAX_STORED_CATEGORIES`` and ``max_categories`` suffice)."""
    top = str(counts.index[0]) if len(counts) else None
    if feature.kind == "boolean":
        feature.example = None if top is None else top == "true"
        return
    feature.categories = [str(c) for c in counts.index[:MAX_STORED_CATEGORIES]]
    feature.frequent_categories = [str(c) for c in counts[counts >= min_category_count].index[:max_categories]]
    feature.example = top
