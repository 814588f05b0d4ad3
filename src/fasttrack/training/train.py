"""Training: split the cleaned data, cross-validate, fit the pipeline, and evaluate it against a baseline.

:func:`train` is pure with respect to the outside world: it logs nothing to MLflow (``fasttrack.registry``
does), writes no files, and does not raise when the model fails its quality gate; the decision is in
``result.evaluation.gate`` for the caller to act on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from fasttrack.config import ResolvedTask, TrainConfig
from fasttrack.data.schema import Schema
from fasttrack.errors import ConfigError, DataError
from fasttrack.features.frames import prepare_features
from fasttrack.monitoring.performance import Calibration, calibration
from fasttrack.runtime.base import natives
from fasttrack.training.evaluate import (
    Evaluation,
    compute_metrics,
    confusion,
    evaluate_model,
    predict_outputs,
    quality_gate,
)
from fasttrack.training.pipeline import build_pipeline
from fasttrack.training.split import TrainingRows, row_hashes, split_fraction
from fasttrack.training.threads import prediction_threads

if TYPE_CHECKING:
    from distributed import Client

#: Fewest rows (with a target value) :func:`train` accepts: enough for a training and a test part.
MIN_ROWS = 5
#: Rows of the test part kept as ``input_example``.
EXAMPLE_ROWS = 5


@dataclass
class TrainResult:
    """Everything a training run produced, for the registry, the CLI and later checks.

    ``pipeline`` is fitted on the training part only; ``X_test``/``y_test`` are the prepared held-out rows it
    was evaluated on (kept for ONNX agreement checks and champion/challenger comparisons) and
    ``input_example`` their first rows. ``labels`` are the classification labels in their original values and
    in the order of every probability column FastTrack reports (``None`` for regression).

    ``test_predictions`` and ``test_proba`` are what the pipeline predicted for ``X_test`` when it was scored
    (:func:`~fasttrack.training.evaluate.predict_outputs`: probabilities aligned to ``labels``, ``None`` for a
    regressor), kept so that the plots and the ONNX agreement check do not predict the same rows again.

    ``training_rows`` records which rows the pipeline was fitted on (their content hashes,
    :class:`~fasttrack.training.split.TrainingRows`), so that later comparisons can leave them out.
    """

    pipeline: Pipeline
    schema: Schema
    config: TrainConfig
    task: ResolvedTask
    labels: list[Any] | None
    evaluation: Evaluation
    train_rows: int
    test_rows: int
    fit_seconds: float
    X_test: pd.DataFrame
    y_test: pd.Series[Any]
    input_example: pd.DataFrame
    test_predictions: np.ndarray[Any, Any] | None = None
    test_proba: np.ndarray[Any, Any] | None = None
    training_rows: TrainingRows | None = None


def train(
    frame: pd.DataFrame,
    config: TrainConfig,
    schema: Schema,
    *,
    on_step: Callable[[str], None] | None = None,
    cv_client: Client | None = None,
) -> TrainResult:
    """Train and evaluate a model on ``frame`` (cleaned data including the target column) as ``config`` says.

    The task and features come from ``schema``. Rows are split into a training and a test part by their content
    and ``config.split_salt`` (:mod:`fasttrack.training.split`: a row held out once is held out in every run with
    that salt, about ``config.test_size`` of the rows); the training part is cross-validated
    (``config.cv_folds`` folds, fewer when the rarest class is smaller, none with a note when impossible),
    then the pipeline is fitted on it and scored on the test part next to a prior/mean baseline, and the
    quality gate decides. Rows without a target value are left out. ``on_step`` receives a short description
    before each long step, for progress display. With ``cv_client`` (a Dask ``distributed.Client``) the
    cross-validation folds run on that cluster through joblib's Dask backend, with the same results to rounding.
    The same frame, config and seed give identical results; the split does not depend on the seed or on the rows'
    order.
    """
    report = on_step or _silent
    task = schema.target.task
    if config.task not in ("auto", task):
        raise ConfigError(f"the config asks for {config.task} but the schema's target is for {task}")
    if config.target != schema.target.name:
        raise ConfigError(f"the config's target is {config.target!r} but the schema's is {schema.target.name!r}")
    config.primary_metric_for(task)  # a primary metric the task has not fails here, before any work
    # Built before touching the data so that a bad model parameter fails at once.
    pipeline = build_pipeline(schema, config.model, task=task, params=config.params, seed=config.seed)
    x, y, labels = _features_and_target(frame, schema)
    notes: list[str] = []
    x_train, x_test, y_train, y_test, training_rows = _split(
        x, y, schema=schema, test_size=config.test_size, salt=config.split_salt, notes=notes
    )
    cv, cv_folds = _cross_validate(
        pipeline,
        x_train,
        y_train,
        task=task,
        labels=labels,
        folds=config.cv_folds,
        seed=config.seed,
        report=report,
        notes=notes,
        client=cv_client,
    )

    report(f"fitting {config.model} on {len(x_train)} rows")
    started = time.perf_counter()
    pipeline.fit(x_train, y_train)
    fit_seconds = time.perf_counter() - started

    dummy = DummyClassifier(strategy="prior") if task == "classification" else DummyRegressor(strategy="mean")
    evaluation, predicted, proba = evaluate_held_out(
        pipeline,
        dummy.fit(x_train, y_train),
        x_test,
        y_test,
        config=config,
        task=task,
        labels=labels,
        cv=(cv, cv_folds),
        notes=notes,
        report=report,
    )
    return TrainResult(
        pipeline=pipeline,
        schema=schema,
        config=config,
        task=task,
        labels=labels,
        evaluation=evaluation,
        train_rows=len(x_train),
        test_rows=len(x_test),
        fit_seconds=fit_seconds,
        X_test=x_test,
        y_test=y_test,
        input_example=x_test.head(EXAMPLE_ROWS).copy(),
        test_predictions=predicted,
        test_proba=proba,
        training_rows=training_rows,
    )


def evaluate_held_out(
    pipeline: Pipeline,
    baseline: Any,
    x_test: pd.DataFrame,
    y_test: pd.Series[Any],
    *,
    config: TrainConfig,
    task: ResolvedTask,
    labels: list[Any] | None,
    cv: tuple[dict[str, tuple[float, float]], int] = ({}, 0),
    notes: list[str],
    report: Callable[[str], None],
) -> tuple[Evaluation, np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """The fitted ``pipeline`` scored on the held-out rows beside the fitted ``baseline`` (prior or mean), the
    quality gate's decision and the calibration, as an :class:`Evaluation`; with the predictions and probabilities
    (kept for the plots and the ONNX check). Both engines evaluate here (``training.dask_train`` too)."""
    primary_metric = config.primary_metric_for(task)
    report(f"evaluating on {len(x_test)} held-out rows")
    with prediction_threads(len(x_test)):
        predicted, proba = predict_outputs(pipeline, x_test, task=task, labels=labels)
    metrics = compute_metrics(task, y_test, predicted, proba, labels)
    baseline_metrics = evaluate_model(baseline, x_test, y_test, task=task, labels=labels)
    evaluation = Evaluation(
        task=task,
        primary_metric=primary_metric,
        metrics=metrics,
        baseline=baseline_metrics,
        gate=quality_gate(metrics, baseline_metrics, primary_metric=primary_metric, thresholds=config.thresholds),
        cv=cv[0],
        cv_folds=cv[1],
        labels=labels,
        confusion_matrix=confusion(y_test, predicted, labels) if labels is not None else None,
        notes=notes,
        calibration=_calibration(predicted, proba, y_test),
    )
    return evaluation, predicted, proba


def _silent(_: str) -> None:
    return None


def _calibration(
    predicted: np.ndarray[Any, Any], proba: np.ndarray[Any, Any] | None, truth: pd.Series[Any]
) -> Calibration | None:
    """A classifier's calibration on the held-out rows (its top-label confidence against whether it was right,
    any number of classes); ``None`` for a regressor, which has no probabilities."""
    if proba is None:
        return None
    return calibration(proba, np.asarray(predicted) == truth.to_numpy())


def _features_and_target(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, pd.Series[Any], list[Any] | None]:
    """Prepared features, the target as a plain numpy-backed series, and the classification labels."""
    target = schema.target.name
    if target not in frame.columns:
        raise DataError(f"the target column {target!r} is not in the data")
    rows = frame.loc[frame[target].notna()].reset_index(drop=True)
    if len(rows) < MIN_ROWS:
        raise DataError(f"only {len(rows)} rows have a value for {target!r}; training needs at least {MIN_ROWS}")
    x = prepare_features(rows, schema).reset_index(drop=True)
    task = schema.target.task
    y = _plain_target(rows[target], task)
    if task == "regression":
        return x, y, None
    seen = natives(pd.unique(y.to_numpy()))
    if schema.target.labels:
        labels = list(schema.target.labels)
        known = set(labels)
        unexpected = [label for label in seen if label not in known]
        if unexpected:
            shown = ", ".join(repr(v) for v in unexpected[:5])
            raise DataError(f"the target {target!r} has labels the schema does not list: {shown}")
    else:
        labels = sorted(seen)
    return x, y, labels


def _plain_target(values: pd.Series[Any], task: ResolvedTask) -> pd.Series[Any]:
    """The target with a plain numpy dtype, so sklearn's ``classes_`` and predictions are native labels.

    pandas extension dtypes (``str``, ``Int64``, ``boolean``, ``category``) would otherwise leak into label
    arrays and compare or serialise differently from the values people wrote.
    """
    name = values.name
    if task == "regression":
        return pd.Series(values.astype("float64").to_numpy(), name=name)
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return pd.Series(values.astype(bool).to_numpy(), name=name, dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return pd.Series(values.astype("int64").to_numpy(), name=name, dtype="int64")
    if pd.api.types.is_float_dtype(dtype):
        return pd.Series(values.astype("float64").to_numpy(), name=name, dtype="float64")
    objects = np.asarray(values.astype(object).to_numpy(), dtype=object)
    return pd.Series(objects, name=name, dtype=object)


def _split(
    x: pd.DataFrame,
    y: pd.Series[Any],
    *,
    schema: Schema,
    test_size: float,
    salt: str,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series[Any], pd.Series[Any], TrainingRows]:
    """Split rows into training and test parts by their content (:mod:`fasttrack.training.split`), and record the
    training part's rows.

    Rows of equal content share a part. Should the threshold leave a part empty (a handful of rows), the rows
    nearest it change sides, with a note; a class found in one part only gets a note too, as the split is
    stratified only on average.
    """
    hashes = row_hashes(x.assign(**{schema.target.name: y.to_numpy()}), schema)
    fraction = split_fraction(hashes, salt)
    test = fraction < test_size
    if not test.any():
        test = hashes == hashes[np.argmin(fraction)]
        notes.append(f"no row fell in the test part at test_size {test_size:g}: it holds the row nearest the threshold")
    elif test.all():
        test = hashes != hashes[np.argmax(fraction)]
        notes.append(
            f"every row fell in the test part at test_size {test_size:g}: the row nearest the threshold trains"
        )
    if test.all() or not test.any():
        raise DataError("every row has the same features and target: there is nothing to hold out for testing")
    if schema.target.task == "classification":
        _note_one_sided_classes(y, test, notes)
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    return (
        x.iloc[train_rows].reset_index(drop=True),
        x.iloc[test_rows].reset_index(drop=True),
        y.iloc[train_rows].reset_index(drop=True),
        y.iloc[test_rows].reset_index(drop=True),
        TrainingRows.of(hashes[train_rows], schema, salt),
    )


def _note_one_sided_classes(y: pd.Series[Any], test: np.ndarray[Any, Any], notes: list[str]) -> None:
    """Note the classes whose rows all fell in one part (the content split keeps class shares only on average)."""
    codes, labels = pd.factorize(y.to_numpy())
    rows = np.bincount(codes, minlength=len(labels))
    held_out = np.bincount(codes, weights=test, minlength=len(labels))
    note = one_sided_note(natives(list(labels)), rows.tolist(), held_out.tolist())
    if note:
        notes.append(note)


def one_sided_note(labels: list[Any], rows: list[int], held_out: list[float]) -> str | None:
    """The note on the classes whose rows all fell in one part, from each class's rows and held-out rows (``None``
    when every class is in both parts); shared with the Dask engine, which counts the rows per partition."""
    one_sided = [code for code in range(len(labels)) if held_out[code] in (0, rows[code])]
    if not one_sided:
        return None
    one_sided.sort(key=lambda code: (rows[code], repr(labels[code])))
    shown = ", ".join(
        f"{labels[code]!r} ({rows[code]} row{'s' if rows[code] != 1 else ''}, "
        f"{'test' if held_out[code] else 'training'} part)"
        for code in one_sided[:5]
    )
    return (
        f"the train/test split (by row content) is not stratified: {len(one_sided)} class(es) fall in one part only: "
        f"{shown}"
    )


def _cross_validate(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: pd.Series[Any],
    *,
    task: ResolvedTask,
    labels: list[Any] | None,
    folds: int,
    seed: int,
    report: Callable[[str], None],
    notes: list[str],
    client: Client | None = None,
) -> tuple[dict[str, tuple[float, float]], int]:
    """k-fold cross-validation of an unfitted pipeline on the training part: metric -> (mean, std), and k.

    The folds run through ``joblib.Parallel``: in this process one after the other, or on ``client``'s Dask
    cluster (joblib's Dask backend); the folds and their order are the same either way, and so are their metrics, to
    rounding (a worker's thread count can change the order a model sums in).
    """
    if folds == 0:
        return {}, 0
    k = min(folds, len(y))
    reason = f"the training part has {len(y)} rows"
    if task == "classification":
        smallest = int(y.value_counts().min())
        if smallest < k:
            k = smallest
            reason = f"the rarest class has {smallest} training row{'s' if smallest != 1 else ''}"
    if k < 2:
        notes.append(f"cross-validation skipped: {reason}, too few for 2 folds")
        return {}, 0
    if k < folds:
        notes.append(f"cross-validation used {k} folds instead of {folds}: {reason}")
    report(f"cross-validating ({k} folds)")
    splitter = (
        StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        if task == "classification"
        else KFold(n_splits=k, shuffle=True, random_state=seed)
    )
    # n_jobs unset: the folds run one after the other in this process (module threads.py says why), unless a
    # Dask client is given; joblib returns the folds' results in fold order either way. x and y are passed
    # whole, by the same objects, so the Dask backend ships each to the cluster once, not once per fold.
    with _fold_backend(client):
        folds_scored = Parallel()(
            delayed(_score_fold)(pipeline, x, y, fit_rows, score_rows, task, labels)
            for fit_rows, score_rows in splitter.split(x, y)
        )
    scores: dict[str, list[float]] = {}
    for fold in folds_scored:
        for metric, value in fold.items():
            scores.setdefault(metric, []).append(value)
    summary = {metric: (float(np.mean(values)), float(np.std(values))) for metric, values in scores.items()}
    partial = sorted(metric for metric, values in scores.items() if len(values) < k)
    if partial:
        notes.append(f"cross-validation could not compute {', '.join(partial)} on every fold (a class was absent)")
    return summary, k


def _fold_backend(client: Client | None) -> AbstractContextManager[Any]:
    """Where :func:`_cross_validate` runs its folds: joblib's Dask backend on ``client``'s cluster, or joblib's
    default (sequential, as ``Parallel`` is given no ``n_jobs``)."""
    if client is None:
        return nullcontext()
    backend: AbstractContextManager[Any] = parallel_config(backend="dask", client=client)
    return backend


def _score_fold(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: pd.Series[Any],
    fit_rows: np.ndarray[Any, Any],
    score_rows: np.ndarray[Any, Any],
    task: ResolvedTask,
    labels: list[Any] | None,
) -> dict[str, float]:
    """One fold's metrics: a clone of ``pipeline`` fitted on ``fit_rows`` and scored on ``score_rows``."""
    model = clone(pipeline).fit(x.iloc[fit_rows], y.iloc[fit_rows])
    with prediction_threads(len(score_rows)):
        return evaluate_model(model, x.iloc[score_rows], y.iloc[score_rows], task=task, labels=labels)
