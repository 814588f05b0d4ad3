"""Champion/challenger promotion: ``@champion`` moves only to a version that beats it on the same rows.

The champion and the challenger may have been trained on different data, so their registered metrics are not
comparable. :func:`promote_challenger` scores both on one data set -- by default the challenger's held-out test
part, or a labelled data set the caller gives -- with :func:`fasttrack.training.evaluate.evaluate_runtime`,
through the runtime each version serves with (its checked ONNX graph when it has one, so promotion does not
unpickle a version it need not). The alias moves only when the challenger is better on the metric (the
challenger's primary metric unless told otherwise) by at least the margin, in the metric's direction; ``force``
moves it regardless. Either way :func:`fasttrack.registry.promotion.record_promotion` moves the alias and records
the decision and its evidence on both versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from fasttrack.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, Settings, higher_is_better
from fasttrack.errors import AliasError, AliasMovedError, ConfigError, DataError
from fasttrack.registry.layout import CHAMPION
from fasttrack.registry.model_folder import LoadedModel, load_model_folder
from fasttrack.registry.promotion import Contender, Decision, PromotionResult, held_out_rows, record_promotion, standing
from fasttrack.registry.resolve import resolve_model


def decide(
    challenger: float, champion: float, *, metric: str, margin: float, force: bool = False
) -> tuple[Decision, str]:
    """The gate: the challenger wins when it is better than the champion on ``metric`` by at least ``margin``.

    "Better" follows :func:`~fasttrack.config.higher_is_better`; with a margin of 0 the challenger must still be
    strictly better (a tie keeps the champion). ``force`` promotes a challenger that loses, saying so. Returns the
    decision and one sentence quoting both scores.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError(f"the promotion margin must be a number >= 0, got {margin}")
    higher = higher_is_better(metric)
    improvement = challenger - champion if higher else champion - challenger
    direction = "higher" if higher else "lower"
    scores = f"{metric} {challenger:.4f} vs {champion:.4f} ({direction} is better)"
    if improvement > 0 and improvement >= margin:
        return "promoted", f"the challenger is better by {improvement:.4f} (margin {margin:g}): {scores}"
    if improvement > 0:
        why = f"the challenger is better by only {improvement:.4f}, less than the margin {margin:g}: {scores}"
    elif improvement == 0:
        why = f"the challenger ties with the champion: {scores}"
    else:
        why = f"the challenger is worse by {-improvement:.4f}: {scores}"
    return ("forced", f"forced although {why}") if force else ("rejected", why)


def promote_challenger(
    settings: Settings,
    name: str,
    challenger: str,
    *,
    alias: str = CHAMPION,
    margin: float | None = None,
    metric: str | None = None,
    force: bool = False,
    frame: pd.DataFrame | None = None,
    frame_source: str | None = None,
) -> PromotionResult:
    """Compare version ``challenger`` of ``name`` with the version holding ``alias`` and move the alias if it wins.

    ``frame`` is labelled comparison data (named ``frame_source`` in the record); by default the challenger's
    held-out test part is used. ``margin`` defaults to the ``promotion_margin`` setting; ``metric`` to the
    challenger's primary metric. With no version holding the alias, the challenger simply gets it. Nothing is
    compared or recorded when the challenger already holds the alias.
    """
    margin = settings.promotion_margin if margin is None else margin
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
            margin=margin,
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
    data, rows = _labelled(frame, new.metadata.target, frame_source or "the comparison data")
    new_metrics = _score(new, data, challenger, frame_source)
    old_metrics = _score(old, data, holder, frame_source)
    for version, scored in ((challenger, new_metrics), (holder, old_metrics)):
        if metric not in scored:
            raise DataError(
                f"{metric} cannot be computed for version {version} on {frame_source} "
                f"(computed: {', '.join(scored) or 'nothing'}); choose another --metric or other data"
            )
    decision, reason = decide(new_metrics[metric], old_metrics[metric], metric=metric, margin=margin, force=force)
    result = PromotionResult(
        name=name,
        alias=alias,
        decision=decision,
        reason=reason,
        challenger=Contender(challenger, new_metrics[metric], new_metrics),
        champion=Contender(holder, old_metrics[metric], old_metrics),
        metric=metric,
        margin=margin,
        data=frame_source,
        rows=rows,
        decided_at=now,
    )
    record_promotion(settings, result)
    return result


def _load(settings: Settings, name: str, version: str) -> LoadedModel:
    return load_model_folder(resolve_model(f"models:/{name}/{version}", settings).path)


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


def _labelled(frame: pd.DataFrame, target: str, source: str) -> tuple[pd.DataFrame, int]:
    if target not in frame.columns:
        raise DataError(f"{source} has no target column {target!r}; columns are: {', '.join(map(str, frame.columns))}")
    rows = frame.loc[frame[target].notna()].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{source} has no rows with a value for {target!r}")
    return rows, len(rows)


def _score(model: LoadedModel, frame: pd.DataFrame, version: str, source: str | None) -> dict[str, float]:
    from fasttrack.errors import SchemaValidationError
    from fasttrack.runtime.select import open_runtime
    from fasttrack.training.evaluate import evaluate_runtime

    meta = model.metadata
    truth = frame[meta.target]
    if meta.task == "regression":
        truth = truth.astype("float64")
    else:
        # Plain Python values, as the model's labels are: pandas' string and nullable dtypes would not compare.
        truth = pd.Series(truth.astype(object).to_numpy(), name=meta.target)
    try:
        return evaluate_runtime(open_runtime(model), frame, truth)
    except SchemaValidationError as exc:
        missing = [v.field for v in exc.violations if v.reason == "required column is missing"]
        if missing:
            # A held-out part holds the features of the version that logged it; another version may need others.
            raise DataError(
                f"version {version} needs columns that {source} lacks ({', '.join(missing)}): "
                "compare on labelled data with both versions' columns (--data FILE)"
            ) from None
        raise DataError(f"version {version} cannot be scored on {source}: {exc}") from None


#: How many times a promotion decides when the alias keeps moving between its comparison and its move.
ATTEMPTS = 3


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
