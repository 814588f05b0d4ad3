"""Describing cleaned data on a Dask cluster: :func:`infer_schema_dask`, the out-of-core twin of
:func:`fasttrack.data.describe.infer_schema` (docs/scale.md).

Every figure is exact, equal to the single-machine schema of the same rows, quantiles included: a numeric
profile's edges and a feature's typical value (its median) are order statistics, found without sorting the
data in one place. Each partition sends a sketch of its sorted values (every ``1/SKETCH_POINTS`` of its rows),
from which the client brackets each wanted rank between two values that provably hold it; a second pass counts
the values below each bracket and sends the few inside it, and the wanted value is picked from those. The
interpolation between two order statistics is numpy's own (``np.quantile`` on the pair), so the edges are the
same floats, not merely close. Categories are counted by a distributed ``value_counts``; only the most frequent
(``MAX_STORED_CATEGORIES``) of each column reach the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from fasttrack.data.dask_read import as_task, current_client, partitions, small_results
from fasttrack.data.describe import (
    _floats,
    as_text,
    categorical_facts,
    categorical_profile_of,
    check_finite,
    column_kind,
    numeric_facts,
    plain_label,
    profile_edges,
    profile_levels,
    rank_counts,
    target_schema,
    task_for,
)
from fasttrack.data.schema import (
    MAX_CLASSES,
    MAX_STORED_CATEGORIES,
    PROFILE_TOP_CATEGORIES,
    FeatureSchema,
    Label,
    NumericProfile,
    Schema,
)
from fasttrack.errors import DataError
from fasttrack.features.rules import DEFAULT_MISSING_MARKERS

if TYPE_CHECKING:
    import dask.dataframe as dd
    from dask.delayed import Delayed
    from distributed import Client

#: Points of each partition's sorted values sent to bracket ranks: a bracket then holds about
#: ``2 * rows / SKETCH_POINTS`` values, which is what the second pass sends per wanted rank.
SKETCH_POINTS = 1025


def infer_schema_dask(
    frame: dd.DataFrame,
    target: str,
    task: Literal["auto", "classification", "regression"] = "auto",
    *,
    max_categories: int = 50,
    min_category_count: int = 5,
    profile_bins: int = 10,
    dropped_columns: Mapping[str, str] | None = None,
    missing_markers: Sequence[str] = DEFAULT_MISSING_MARKERS,
    client: Client | None = None,
) -> Schema:
    """:func:`~fasttrack.data.describe.infer_schema` of a cleaned Dask frame, computed on the cluster, equal to it.

    Takes the same arguments and raises the same ``DataError`` s; ``client`` defaults to the current default
    client. Reads the frame three times (values and categories, ranks, bins); no process holds more than a
    partition, a sketch per partition, and the values inside the rank brackets.
    """
    client = current_client(client)
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise DataError(f"target column {target!r} not found; columns are: {', '.join(columns)}")
    names = [c for c in columns if c != target]
    if not names:
        raise DataError(f"no feature columns left besides the target {target!r}")
    dtypes = {str(col): dtype for col, dtype in frame.dtypes.items()}
    kinds = {col: column_kind(pd.Series([], dtype=dtypes[col])) for col in columns}
    parts = partitions(frame)

    target_numeric = kinds[target] == "numeric"
    # Labels matter for classification only; a numeric target of unknown task needs at most one more than a
    # classification target may have to be told apart.
    cap = 0 if task == "regression" else MAX_CLASSES + 1 if task == "auto" and target_numeric else None
    numeric = [c for c in names if kinds[c] == "numeric"]
    if task != "classification" and target_numeric:
        numeric.append(target)
    # Categories are counted in the same pass; the target's too unless it is surely a regression target.
    categorical = [c for c in names if kinds[c] != "numeric"] + ([target] if task != "regression" else [])
    top = max(MAX_STORED_CATEGORIES, max_categories, PROFILE_TOP_CATEGORIES)
    found, pieces = small_results(
        client,
        [[as_task(_values_of)(p, target, tuple(numeric), cap) for p in parts], _count_tasks(frame, categorical, top)],
    )
    counted = _category_counts(categorical, pieces, top)
    rows = sum(f.rows for f in found)
    missing = {col: sum(f.missing[col] for f in found) for col in columns}
    numbers = {col: _NumericFacts.merge([f.numeric[col] for f in found]) for col in numeric}

    # The target: its task, then its schema.
    present = rows - missing[target]
    if present == 0:
        raise DataError(f"target {target!r} has no values")
    labels: set[Label] = set().union(*(f.labels for f in found))
    if task == "auto":
        distinct = len({float(v) for v in labels}) if target_numeric else 0
        whole = numbers[target].whole if target_numeric else False
        resolved = task_for(kinds[target], distinct, whole, present)
    else:
        resolved = task

    for col in numeric:
        if col != target:
            check_finite(col, numbers[col].infinite)
    ranked = [c for c in numeric if c != target or (resolved == "regression" and not numbers[c].infinite)]
    order = _order_statistics(parts, {c: numbers[c] for c in ranked}, profile_bins, client)
    proportions = _bin_counts(parts, {c: order[c].edges for c in ranked}, client)

    def numeric_profile(col: str) -> NumericProfile:
        nan_share = (rows - numbers[col].finite - numbers[col].infinite) / rows if rows else 0.0
        count = numbers[col].finite + numbers[col].infinite
        edges = order[col].edges
        shares = (
            []
            if len(edges) < 2
            else (np.asarray(proportions[col]) / count if count else np.zeros(len(edges) - 1)).tolist()
        )
        return NumericProfile(edges=edges, proportions=shares, missing=nan_share)

    def categorical_profile(col: str) -> Any:
        counts, total = counted[col]
        return categorical_profile_of(counts, total, (rows - total) / rows if rows else 0.0)

    facts = numbers.get(target)
    target_result = target_schema(
        target,
        resolved,
        dtypes[target],
        labels=labels,
        profile=lambda: categorical_profile(target) if resolved == "classification" else numeric_profile(target),
        finite=None if facts is None or resolved != "regression" else not facts.infinite,
        bounds=None if facts is None or facts.low is None or facts.high is None else (facts.low, facts.high),
    )

    features = []
    for col in names:
        ratio = missing[col] / rows if rows else 0.0
        feature = FeatureSchema(
            name=col, kind=kinds[col], dtype=str(dtypes[col]), nullable=ratio > 0, missing_ratio=ratio
        )
        if kinds[col] == "numeric":
            feature.profile = numeric_profile(col)
            known = numbers[col]
            if known.low is not None and known.high is not None:
                numeric_facts(feature, known.low, known.high, known.whole, order[col].median)
        else:
            feature.profile = categorical_profile(col)
            categorical_facts(feature, counted[col][0], max_categories, min_category_count)
        features.append(feature)
    return Schema(
        features=features,
        target=target_result,
        n_rows=rows,
        dropped_columns=dict(dropped_columns or {}),
        missing_markers=list(missing_markers),
    )


# ------------------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class _NumericFacts:
    """A numeric column's figures, of one partition or merged: finite and infinite counts, range of the present
    values, whether all are whole, and the sketch ``(rows, positions, values)`` of each partition's sorted
    finite values."""

    finite: int
    infinite: int
    low: float | None
    high: float | None
    whole: bool
    sketches: tuple[tuple[int, np.ndarray, np.ndarray], ...]

    @staticmethod
    def merge(parts: list[_NumericFacts]) -> _NumericFacts:
        lows = [p.low for p in parts if p.low is not None]
        highs = [p.high for p in parts if p.high is not None]
        return _NumericFacts(
            finite=sum(p.finite for p in parts),
            infinite=sum(p.infinite for p in parts),
            low=min(lows) if lows else None,
            high=max(highs) if highs else None,
            whole=all(p.whole for p in parts),
            sketches=tuple(s for p in parts for s in p.sketches),
        )


@dataclass(frozen=True)
class _PartValues:
    rows: int
    missing: dict[str, int]
    numeric: dict[str, _NumericFacts]
    labels: set[Label]


def _values_of(frame: pd.DataFrame, target: str, numeric: tuple[str, ...], cap: int | None) -> _PartValues:
    """One partition's missing counts, numeric facts and target labels (at most ``cap`` when given)."""
    missing = {str(col): int(frame[col].isna().sum()) for col in frame.columns}
    facts: dict[str, _NumericFacts] = {}
    for col in numeric:
        numbers = _floats(frame[col])
        present = numbers[~np.isnan(numbers)]
        finite = np.sort(present[np.isfinite(present)])
        sketch: tuple[tuple[int, np.ndarray, np.ndarray], ...] = ()
        if finite.size:
            positions = np.unique(np.linspace(0, finite.size - 1, SKETCH_POINTS).round().astype("int64"))
            sketch = ((int(finite.size), positions, finite[positions]),)
        facts[col] = _NumericFacts(
            finite=int(finite.size),
            infinite=int(present.size - finite.size),
            low=float(present.min()) if present.size else None,
            high=float(present.max()) if present.size else None,
            whole=bool(np.all(np.mod(present, 1) == 0)),
            sketches=sketch,
        )
    labels: set[Label] = set()
    for value in frame[target].dropna().unique() if cap != 0 else ():
        labels.add(plain_label(value))
        if cap is not None and len(labels) >= cap:
            break
    return _PartValues(rows=len(frame), missing=missing, numeric=facts, labels=labels)


def _count_tasks(frame: dd.DataFrame, columns: list[str], top: int) -> list[list[Delayed]]:
    """Per column, tasks giving each part of a distributed count of its category texts: the part's ``top`` most
    frequent (ranked) and its number of values."""
    wanted = []
    for col in columns:
        text = frame[col].map_partitions(as_text, meta=(col, object))
        counts = text.value_counts(split_out=max(1, frame.npartitions // 8))
        wanted.append([as_task(_top_counts)(p, top) for p in counts.to_delayed()])
    return wanted


def _category_counts(
    columns: list[str], found: list[list[tuple[pd.Series, int]]], top: int
) -> dict[str, tuple[pd.Series, int]]:
    """Per column, its ``top`` most frequent category texts ranked (:func:`~fasttrack.data.describe.rank_counts`)
    and the number of non-missing values, from the parts of :func:`_count_tasks`' count (each text is in one)."""
    result: dict[str, tuple[pd.Series, int]] = {}
    for col, pieces in zip(columns, found, strict=True):
        total = sum(t for _, t in pieces)
        merged = pd.concat([s for s, _ in pieces if len(s)]) if any(len(s) for s, _ in pieces) else pd.Series()
        result[col] = (rank_counts(merged).iloc[:top], total)
    return result


def _top_counts(counts: pd.Series, top: int) -> tuple[pd.Series, int]:
    return rank_counts(counts).iloc[:top], int(counts.sum())


# ------------------------------------------------------------------------------------------------ order statistics
@dataclass(frozen=True)
class _Order:
    edges: list[float]
    median: float


def _order_statistics(
    parts: list[Delayed], numbers: dict[str, _NumericFacts], bins: int, client: Client
) -> dict[str, _Order]:
    """Each numeric column's profile edges and median, exact (see the module docstring)."""
    levels = profile_levels(bins)
    wanted: dict[str, np.ndarray] = {}
    brackets: dict[str, np.ndarray] = {}
    for col, facts in numbers.items():
        count = facts.finite
        if count == 0:
            continue
        positions = (count - 1) * levels
        below = np.floor(positions).astype("int64")
        ranks = np.unique(np.concatenate([below, np.minimum(below + 1, count - 1), [(count - 1) // 2, count // 2]]))
        wanted[col] = ranks
        brackets[col] = _brackets(facts.sketches, ranks)
    found = small_results(client, [as_task(_bands)(p, brackets) for p in parts])
    result: dict[str, _Order] = {}
    for col, facts in numbers.items():
        if col not in wanted:
            result[col] = _Order(edges=[], median=float("nan"))
            continue
        values: dict[int, float] = {}
        for i, rank in enumerate(wanted[col]):
            below_count = sum(f[col][i][0] for f in found)
            band = np.sort(np.concatenate([f[col][i][1] for f in found]))
            values[int(rank)] = float(band[int(rank) - below_count])
        count = facts.finite
        positions = (count - 1) * levels
        below = np.floor(positions).astype("int64")
        gamma = positions - below
        quantiles = np.array(
            [
                np.quantile(np.array([values[int(j)], values[int(min(j + 1, count - 1))]]), g)
                for j, g in zip(below, gamma, strict=True)
            ]
        )
        middle = (count - 1) // 2
        median = (
            values[middle] if count % 2 else float(np.median(np.array([values[count // 2 - 1], values[count // 2]])))
        )
        result[col] = _Order(edges=profile_edges(quantiles), median=median)
    return result


def _brackets(sketches: Sequence[tuple[int, np.ndarray, np.ndarray]], ranks: np.ndarray) -> np.ndarray:
    """For each rank (0-based, of the sorted finite values), a ``(low, high)`` pair that holds it for certain.

    From each partition's sketch, the count of values below a candidate ``x`` is at most the position of the
    first sketched value ``>= x``, and the count of values up to ``x`` at least one more than the position of the
    last sketched value ``<= x``. ``low`` is the largest candidate with at most ``rank`` values below it, ``high``
    the smallest with more than ``rank`` values up to it.
    """
    candidates = np.unique(np.concatenate([values for _, _, values in sketches]))
    at_most_below = np.zeros(candidates.size, dtype="int64")
    at_least_upto = np.zeros(candidates.size, dtype="int64")
    for rows, positions, values in sketches:
        first = np.searchsorted(values, candidates, side="left")
        at_most_below += np.where(first < values.size, positions[np.minimum(first, values.size - 1)], rows)
        last = np.searchsorted(values, candidates, side="right") - 1
        at_least_upto += np.where(last >= 0, positions[np.maximum(last, 0)] + 1, 0)
    low = candidates[np.searchsorted(at_most_below, ranks, side="right") - 1]
    high = candidates[np.minimum(np.searchsorted(at_least_upto, ranks + 1, side="left"), candidates.size - 1)]
    return np.stack([low, high], axis=1)


def _bands(frame: pd.DataFrame, brackets: dict[str, np.ndarray]) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per column and bracket: how many finite values lie below it, and the values inside it."""
    found: dict[str, list[tuple[int, np.ndarray]]] = {}
    for col, pairs in brackets.items():
        numbers = _floats(frame[col])
        finite = numbers[np.isfinite(numbers)]
        found[col] = [(int((finite < low).sum()), finite[(finite >= low) & (finite <= high)]) for low, high in pairs]
    return found


def _bin_counts(parts: list[Delayed], edges: dict[str, list[float]], client: Client) -> dict[str, np.ndarray]:
    """Per numeric column, the count of values in each profile bin (as
    :func:`~fasttrack.data.schema.bin_proportions` bins them), summed over the partitions."""
    found = small_results(client, [as_task(_part_bins)(p, edges) for p in parts])
    return {col: np.sum([f[col] for f in found], axis=0) for col in edges if len(edges[col]) > 1}


def _part_bins(frame: pd.DataFrame, edges: dict[str, list[float]]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for col, cut in edges.items():
        if len(cut) < 2:
            continue
        numbers = _floats(frame[col])
        numbers = numbers[~np.isnan(numbers)]
        index = np.searchsorted(np.asarray(cut[1:-1], dtype="float64"), numbers, side="left")
        found[col] = np.bincount(index, minlength=len(cut) - 1)
    return found
