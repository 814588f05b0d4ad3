"""Champion/challenger promotion: ``@champion`` moves only to a version that is surely better on rows neither saw.

The champion and the challenger may have been trained on different data, so their registered metrics are not
comparable. :func:`promote_challenger` scores both on one data set -- by default the challenger's held-out test
part, or a labelled data set the caller gives -- minus every row either version trained on (each version records
its training rows, :mod:`fasttrack.training.split`; a version registered before that has no record, and the reason
says so). With fewer rows left than ``FASTTRACK_PROMOTION_MIN_ROWS`` it refuses to decide. Each version predicts the
rows once, through the runtime it serves with (its checked ONNX graph when it has one, so promotion does not unpickle
a version it need not); :func:`fasttrack.training.compare.paired_bootstrap` gives the challenger's improvement on the
metric (the challenger's primary metric unless told otherwise) and its confidence interval, and the alias moves only
when the interval's lower bound is above the margin, in the metric's direction; ``force`` moves it regardless.
Either way :func:`fasttrack.registry.promotion.record_promotion` moves the alias and records the decision and its
evidence (scores, interval, rows used and left out) on both versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from fasttrack.config import (
    CLASSIFICATION_METRICS,
    CV_MARGIN,
    REGRESSION_METRICS,
    Margin,
    Settings,
    higher_is_better,
)
from fasttrack.data.schema import Schema
from fasttrack.errors import AliasError, AliasMovedError, ConfigError, DataError
from fasttrack.registry.history import ATTEMPTS
from fasttrack.registry.layout import CHAMPION
from fasttrack.registry.model_folder import LoadedModel, ModelMetadata, load_model_folder
from fasttrack.registry.promotion import (
    Contender,
    Decision,
    PromotionResult,
    held_out_rows,
    record_promotion,
    run_training_rows,
    standing,
)
from fasttrack.registry.resolve import resolve_model
from fasttrack.training.compare import Outputs, PairedInterval, paired_bootstrap
from fasttrack.training.evaluate import compute_metrics
from fasttrack.training.split import row_hashes


def check_margin(margin: Margin) -> None:
    """Refuse (:class:`~fasttrack.errors.ConfigError`) a margin that is not a finite number >= 0 or ``"cv"``."""
    if margin == CV_MARGIN:
        return
    if isinstance(margin, str) or margin < 0 or not math.isfinite(margin):
        raise ConfigError(f"the promotion margin must be a number >= 0 or {CV_MARGIN!r}, got {margin!r}")


def parse_margin(text: str) -> Margin:
    """A margin as given on a command line: ``cv`` or a number >= 0 (:class:`~fasttrack.errors.ConfigError`)."""
    if text.strip().lower() == CV_MARGIN:
        return CV_MARGIN
    try:
        margin = float(text)
    except ValueError:
        raise ConfigError(f"the promotion margin must be a number >= 0 or {CV_MARGIN!r}, got {text!r}") from None
    check_margin(margin)
    return margin


def resolve_margin(margin: Margin, challenger: ModelMetadata, metric: str) -> tuple[float, str]:
    """The margin in force and what it is: a number as given, or the challenger's cross-validation spread.

    ``cv`` is the standard deviation of ``metric`` over the challenger's cross-validation folds: how much the metric
    moves between equally good fits on other rows, so an improvement within it is not worth a deployment. On
    bank_additional.csv versions that differ only by their seed differ by up to 0.0014 ROC AUC and the spread is
    0.0017 (docs/promotion.md). A challenger trained without cross-validation (or on another metric) gives 0.
    """
    check_margin(margin)
    if margin != CV_MARGIN:
        return float(margin), f"margin {float(margin):g}"
    spread = challenger.cv.get(metric)
    if spread is None:
        return 0.0, f"margin 0 (the challenger has no cross-validation spread of {metric})"
    return float(spread[1]), f"margin {float(spread[1]):.4g} (the challenger's cross-validation spread of {metric})"


def decide(
    interval: PairedInterval, challenger: float, champion: float, *, margin: float, force: bool = False
) -> tuple[Decision, str]:
    """The gate: the challenger wins when the lower bound of its improvement's interval is above ``margin``.

    ``challenger`` and ``champion`` are the two scores on all the rows compared and ``interval`` the paired
    bootstrap interval of the improvement (in the metric's direction, :func:`~fasttrack.config.higher_is_better`),
    so with a margin of 0 the challenger must be better on nearly every resample, not merely on average. ``force``
    promotes a challenger that does not win, saying so. Returns the decision and one sentence quoting both scores
    and the interval.
    """
    check_margin(margin)
    metric = interval.metric
    higher = higher_is_better(metric)
    improvement = challenger - champion if higher else champion - challenger
    direction = "higher" if higher else "lower"
    scores = f"{metric} {challenger:.4f} vs {champion:.4f} ({direction} is better)"
    shown = f"{interval.confidence:.0%} interval {interval.low:+.4f} to {interval.high:+.4f}"
    if interval.low > margin:
        return (
            "promoted",
            f"the challenger is better by {improvement:.4f} ({shown}, above the margin {margin:g}): {scores}",
        )
    if improvement > 0:
        why = (
            f"the challenger is better by {improvement:.4f}, but its {shown} does not clear the margin {margin:g}: "
            f"{scores}"
        )
    elif improvement == 0:
        why = f"the challenger ties with the champion ({shown}): {scores}"
    else:
        why = f"the challenger is worse by {-improvement:.4f} ({shown}): {scores}"
    return ("forced", f"forced although {why}") if force else ("rejected", why)


@dataclass(frozen=True)
class FreshRows:
    """Which comparison rows neither version trained on (``used``), how many of the rows each version trained on,
    and the versions that kept no record of their training rows."""

    used: np.ndarray[Any, np.dtype[np.bool_]]
    trained_on: dict[str, int]
    unrecorded: tuple[str, ...]

    @property
    def rows(self) -> int:
        """Rows neither version trained on."""
        return int(self.used.sum())

    @property
    def excluded(self) -> int:
        """Rows left out because a version trained on them."""
        return int((~self.used).sum())


def trained_mask(
    settings: Settings, run_id: str | None, schema: Schema, frame: pd.DataFrame
) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    """Which rows of ``frame`` the model of training run ``run_id`` (whose schema is ``schema``) was fitted on, by
    the run's record of its training rows; ``None`` when there is no record to compare with (no run, a run from
    before FastTrack kept one, or a record of another hashing scheme or feature set).

    The one place a model's training rows are matched with other rows: promotion leaves them out, ``evaluate``
    warns about them. Raises :class:`~fasttrack.errors.DataError` when ``frame`` lacks a column the rows are
    identified by.
    """
    record = run_training_rows(settings, run_id) if run_id else None
    if record is None or not record.comparable(schema):
        return None
    return record.contains(row_hashes(frame, schema))


def fresh_rows(
    settings: Settings, name: str, frame: pd.DataFrame, source: str, versions: dict[str, LoadedModel]
) -> FreshRows:
    """The rows of ``frame`` that none of ``versions`` (version -> model) trained on (:func:`trained_mask`).

    A version with no record (registered before FastTrack kept one) excludes nothing and is named in
    ``unrecorded``. Raises :class:`~fasttrack.errors.DataError` when ``frame`` lacks a column a version's rows are
    identified by.
    """
    seen = np.zeros(len(frame), dtype=bool)
    trained_on: dict[str, int] = {}
    unrecorded: list[str] = []
    for version, model in versions.items():
        try:
            trained = trained_mask(settings, model.metadata.run_id, model.schema, frame)
        except DataError as exc:
            raise DataError(
                f"cannot tell which rows of {source} version {version} trained on: {exc}; compare on labelled data "
                "with both versions' columns (--data FILE)"
            ) from None
        if trained is None:
            unrecorded.append(version)
            continue
        trained_on[version] = int(trained.sum())
        seen |= trained
    return FreshRows(~seen, trained_on, tuple(unrecorded))


def promote_challenger(
    settings: Settings,
    name: str,
    challenger: str,
    *,
    alias: str = CHAMPION,
    margin: Margin | None = None,
    metric: str | None = None,
    force: bool = False,
    frame: pd.DataFrame | None = None,
    frame_source: str | None = None,
) -> PromotionResult:
    """Compare version ``challenger`` of ``name`` with the version holding ``alias`` and move the alias if it wins.

    ``frame`` is labelled comparison data (named ``frame_source`` in the record); by default the challenger's
    held-out test part is used. Rows either version trained on are left out; with fewer than
    ``settings.promotion_min_rows`` left, :class:`~fasttrack.errors.DataError` is raised and nothing is moved or
    recorded. ``margin`` defaults to the ``promotion_margin`` setting; ``metric`` to the challenger's primary metric;
    the interval's resamples and confidence come from ``settings``. With no version holding the alias, the
    challenger simply gets it. Nothing is compared or recorded when the challenger already holds the alias.
    """
    spec = settings.promotion_margin if margin is None else margin
    check_margin(spec)
    start = standing(settings, name, challenger, alias)
    challenger, holder = start.challenger, start.holder
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if holder == challenger:
        return PromotionResult(
            name, alias, "already-champion", f"version {challenger} already holds @{alias}", Contender(challenger)
        )
    if holder is None:
        result = PromotionResult(
            name,
            alias,
            "no-champion",
            f"no version held @{alias}: version {challenger} takes it without a comparison",
            Contender(challenger),
            margin=0.0 if spec == CV_MARGIN else float(spec),
            decided_at=now,
        )
        record_promotion(settings, result)
        return result

    new = _load(settings, name, challenger)
    old = _load(settings, name, holder)
    _check_comparable(new, old, challenger, holder)
    metric = metric or new.metadata.primary_metric
    _check_metric(metric, new.metadata.task)
    if frame is None:
        frame, frame_source = held_out_rows(settings, name, challenger), f"holdout of version {challenger}"
    source = frame_source or "the comparison data"
    data = _labelled(frame, new.metadata.target, source)
    # Each version predicts every row once (a missing column is named before anything else is read); the rows
    # either version trained on are then dropped from the truth and both predictions alike.
    new_outputs = _predict(new, data, challenger, source)
    old_outputs = _predict(old, data, holder, source)
    fresh = fresh_rows(settings, name, data, source, {challenger: new, holder: old})
    rows = fresh.rows
    if rows < settings.promotion_min_rows:
        raise DataError(_too_few(rows, len(data), source, fresh, settings.promotion_min_rows))
    truth = _truth(data, new.metadata.task, new.metadata.target)[fresh.used]
    new_outputs, old_outputs = new_outputs.rows(fresh.used), old_outputs.rows(fresh.used)
    task = new.metadata.task
    new_metrics = compute_metrics(task, truth, new_outputs.values, new_outputs.probabilities, new_outputs.labels)
    old_metrics = compute_metrics(task, truth, old_outputs.values, old_outputs.probabilities, old_outputs.labels)
    for version, scored in ((challenger, new_metrics), (holder, old_metrics)):
        if metric not in scored:
            raise DataError(
                f"{metric} cannot be computed for version {version} on {source} "
                f"(computed: {', '.join(scored) or 'nothing'}); choose another --metric or other data"
            )
    interval = paired_bootstrap(
        task,
        metric,
        truth,
        new_outputs,
        old_outputs,
        resamples=settings.promotion_resamples,
        confidence=settings.promotion_confidence,
    )
    threshold, margin_note = resolve_margin(spec, new.metadata, metric)
    decision, reason = decide(interval, new_metrics[metric], old_metrics[metric], margin=threshold, force=force)
    if spec == CV_MARGIN:
        reason += f"; {margin_note}"
    reason += f"; {rows} rows compared, {fresh.excluded} left out as training rows"
    for version in fresh.unrecorded:
        reason += (
            f"; version {version} has no record of the rows it trained on (registered before FastTrack kept one), "
            "so some rows compared may be its training rows"
        )
    result = PromotionResult(
        name=name,
        alias=alias,
        decision=decision,
        reason=reason,
        challenger=Contender(challenger, new_metrics[metric], new_metrics),
        champion=Contender(holder, old_metrics[metric], old_metrics),
        metric=metric,
        margin=threshold,
        data=source,
        rows=rows,
        decided_at=now,
        excluded=fresh.excluded,
        improvement=interval.improvement,
        interval=(interval.low, interval.high),
        confidence=interval.confidence,
        resamples=interval.resamples,
        unrecorded=fresh.unrecorded,
    )
    record_promotion(settings, result)
    return result


def _too_few(rows: int, total: int, source: str, fresh: FreshRows, needed: int) -> str:
    """The refusal: how many rows are left, why the others were left out, and what to do."""
    trained = ", ".join(f"version {version} trained on {count}" for version, count in fresh.trained_on.items())
    return (
        f"not enough rows to decide: {rows} of the {total} rows of {source} were trained on by neither version"
        f"{f' ({trained})' if trained else ''}, and the gate needs at least {needed} (FASTTRACK_PROMOTION_MIN_ROWS); "
        "compare on more labelled rows that neither version trained on (--data FILE)"
    )


def _load(settings: Settings, name: str, version: str) -> LoadedModel:
    return load_model_folder(resolve_model(f"models:/{name}/{version}", settings).path, settings)


def _check_comparable(new: LoadedModel, old: LoadedModel, new_version: str, old_version: str) -> None:
    a, b = new.metadata, old.metadata
    if (a.task, a.target) != (b.task, b.target):
        raise ConfigError(
            f"versions {new_version} and {old_version} cannot be compared: one is {a.task} of {a.target!r}, "
            f"the other {b.task} of {b.target!r}"
        )


def _check_metric(metric: str, task: str) -> None:
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in known:
        raise ConfigError(f"metric {metric!r} does not apply to {task}; use one of {', '.join(known)}")


def _labelled(frame: pd.DataFrame, target: str, source: str) -> pd.DataFrame:
    if target not in frame.columns:
        raise DataError(f"{source} has no target column {target!r}; columns are: {', '.join(map(str, frame.columns))}")
    rows = frame.loc[frame[target].notna()].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{source} has no rows with a value for {target!r}")
    return rows


def _truth(frame: pd.DataFrame, task: str, target: str) -> np.ndarray[Any, Any]:
    """The true values as the metrics compare them: float64 for a regression, plain Python labels otherwise
    (pandas' string and nullable dtypes would not compare with the models' labels)."""
    if task == "regression":
        return frame[target].astype("float64").to_numpy()
    return np.asarray(frame[target].astype(object).to_numpy(), dtype=object)


def _predict(model: LoadedModel, frame: pd.DataFrame, version: str, source: str) -> Outputs:
    """One version's predictions for the comparison rows, through the runtime it serves with."""
    from fasttrack.errors import SchemaValidationError
    from fasttrack.runtime.select import open_runtime
    from fasttrack.training.evaluate import predict_runtime

    runtime = open_runtime(model)
    try:
        prediction = predict_runtime(runtime, frame)
    except SchemaValidationError as exc:
        missing = [v.field for v in exc.violations if v.reason == "required column is missing"]
        if missing:
            # A held-out part holds the features of the version that logged it; another version may need others.
            raise DataError(
                f"version {version} needs columns that {source} lacks ({', '.join(missing)}): "
                "compare on labelled data with both versions' columns (--data FILE)"
            ) from None
        raise DataError(f"version {version} cannot be scored on {source}: {exc}") from None
    return Outputs(prediction.values, prediction.probabilities, runtime.labels)


def promote_until_settled(
    settings: Settings,
    name: str,
    challenger: str,
    *,
    on_moved: Callable[[AliasMovedError], None] | None = None,
    **options: Any,
) -> PromotionResult:
    """:func:`promote_challenger` (``options`` are its keywords), decided again when the alias moved meanwhile.

    A promotion compares against the version holding the alias when it starts; if another promotion or a rollback
    moves the alias before this one's move, :func:`~fasttrack.registry.promotion.record_promotion` refuses (nothing
    moved or recorded) and the comparison runs again against the new holder, up to :data:`ATTEMPTS` times;
    ``on_moved`` hears of each retry. Two racing promotions thus never both win silently: the later one sees the
    earlier one's result and decides against it (or finds its challenger already holds the alias).
    """
    attempt = 1
    while True:
        try:
            return promote_challenger(settings, name, challenger, **options)
        except AliasMovedError as moved:
            if attempt >= ATTEMPTS:
                raise AliasError(
                    f"{name}@{options.get('alias', CHAMPION)} kept moving while version {challenger} was compared "
                    f"({ATTEMPTS} attempts; last: {moved}): nothing was moved, try again"
                ) from None
            attempt += 1
            if on_moved is not None:
                on_moved(moved)
