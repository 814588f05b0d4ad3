"""Training on a Dask cluster (``fasttrack train --engine dask``): the same model folder from more data than one
machine holds.

:func:`train_dask` returns the :class:`~fasttrack.training.train.TrainResult` :func:`~fasttrack.training.train.train`
returns, so :mod:`fasttrack.training.publish` exports and registers it unchanged and serving cannot tell the two
apart. What runs where depends on the model:

**XGBoost** (``model: xgboost``) is fitted by ``xgboost.dask`` on the cluster, the training part never gathered into
one process:

* *Split.* Each partition's rows are split by content exactly as :mod:`fasttrack.training.split` splits them on one
  machine (a row's part depends on its own hash and the salt only), so the same data gives the same training and test
  parts under either engine.
* *Preprocessing.* The pipeline's ``ColumnTransformer`` learns one thing from data when the model is XGBoost: the
  median of each numeric or boolean feature over the training part (categories come from the schema, the
  categorical imputer fills a constant, and tree models are not scaled). The medians are found **exactly, out of
  core**: a radix selection over the order-preserving integer keys of the float64 values, 16 bits a pass, where
  each pass counts the next 16 bits of the values still in the running per partition (with the smallest and largest
  value of each count, so a run of equal values ends the search), and the values themselves are gathered once at
  most :data:`GATHER_VALUES` remain (at most four passes; usually the first counting pass rides on the split's pass
  and one gathering pass follows). The transformer is then fitted by scikit-learn itself on a two-row frame holding
  the middle value(s) of each column, which gives exactly the statistics ``SimpleImputer`` computes on the whole
  training part.
* *Fit.* Every partition's training rows are transformed by that fitted transformer on the worker and handed to
  ``DaskXGBClassifier``/``DaskXGBRegressor`` with the config's parameters (classes encoded as
  :class:`~fasttrack.training.estimators.LabelEncodedClassifier` encodes them). The booster is loaded into the plain
  ``XGBClassifier``/``XGBRegressor`` of the pipeline :func:`~fasttrack.training.pipeline.build_pipeline` builds,
  so the fitted pipeline has the single-machine shape and exports to ONNX the same way. The model is not
  bit-identical to a single-machine fit: each worker sketches histogram bins from its own rows (the tests bound the
  difference in the test metric).
* *Evaluation.* The held-out part is gathered to this process and scored by :mod:`fasttrack.training.evaluate` next
  to the prior/mean baseline, fitted from the training part's class counts or mean; the gate decides. A held-out part
  above ``max_test_rows`` is bounded by content: only the rows whose split place lies in the lowest
  ``max_test_rows / held-out rows`` share of the test range are gathered (the same rows in every run), with a note.
* *Cross-validation* is not run for XGBoost on the cluster: each fold would be another full distributed fit (``k +
  1`` times the cost on data that by premise outgrows one machine), and a held-out part of that size already pins the
  test metric down to a few thousandths. A note says so when ``cv_folds`` asks for folds.

**Every other model** is fitted on one machine as today: the frame is gathered (these models need all their rows in
one process anyway) and :func:`~fasttrack.training.train.train` fits it, with its cross-validation folds run on the
cluster through joblib's Dask backend.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.pipeline import Pipeline

from fasttrack.config import ResolvedTask, TrainConfig
from fasttrack.data.schema import Schema
from fasttrack.errors import ClusterError, ConfigError, DataError
from fasttrack.features.frames import prepare_features
from fasttrack.runtime.base import natives
from fasttrack.training.estimators import LabelEncodedClassifier
from fasttrack.training.pipeline import MODEL_STEP, NUMERIC_PART, PREPROCESS_STEP, build_pipeline
from fasttrack.training.split import TrainingRows, hashed_columns, row_hashes, split_fraction
from fasttrack.training.train import (
    EXAMPLE_ROWS,
    MIN_ROWS,
    TrainResult,
    _plain_target,
    evaluate_held_out,
    one_sided_note,
    train,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

#: Held-out rows gathered to this process for evaluation, at most (about; see the module docstring).
MAX_TEST_ROWS: Final = 500_000
#: A median's candidates are gathered to this process once at most this many values remain (8 bytes each).
GATHER_VALUES: Final = 1 << 20
#: Bits of the float keys resolved per counting pass of the median selection.
_DIGIT_BITS: Final = 16
_KEY_BITS: Final = 64
_SIGN: Final = np.uint64(1 << 63)
#: The label column of the distributed design matrix (the feature columns are ``f0``, ``f1``, ...).
_LABEL: Final = "label"


def train_dask(
    frame: dd.DataFrame,
    config: TrainConfig,
    schema: Schema,
    *,
    client: Client,
    on_step: Callable[[str], None] | None = None,
    max_test_rows: int = MAX_TEST_ROWS,
) -> TrainResult:
    """Train and evaluate a model on the Dask DataFrame ``frame`` (cleaned data including the target) on ``client``'s
    cluster, as :func:`~fasttrack.training.train.train` does on one machine.

    XGBoost trains on the cluster through ``xgboost.dask`` without gathering the training part; any other model
    gathers the frame, fits in this process and cross-validates on the cluster (module docstring). The result
    publishes through :func:`fasttrack.training.publish.publish` like a single-machine one. ``max_test_rows``
    bounds the held-out rows gathered for evaluation (XGBoost only).

    Raises
    ------
    ClusterError
        The distributed fit failed (a worker lost, most often to its memory limit).
    ConfigError
        The config does not match the schema, or a model parameter is invalid.
    DataError
        The target column is absent, too few rows have a target, or the target has labels the schema does not list.
    """
    report = on_step or _silent
    if config.model != "xgboost":
        report(f"gathering the data to fit {config.model} in this process (its folds run on the cluster)")
        local = frame.compute()  # type: ignore[no-untyped-call]
        return train(local, config, schema, on_step=on_step, cv_client=client)
    return _train_xgboost(frame, config, schema, client=client, report=report, max_test_rows=max_test_rows)


def _silent(_: str) -> None:
    return None


@dataclass(frozen=True)
class _Split:
    """How each partition's rows are split: ``test_size`` and ``salt`` as in :func:`train`, ``keep`` the share of
    the test range gathered for evaluation, and ``only`` the one row content that forms the test part (``"test"``)
    or the training part (``"train"``) when the threshold left a part empty."""

    schema: Schema
    test_size: float
    salt: str
    keep: float = 1.0
    only: tuple[str, int] | None = None


@dataclass
class _Part:
    """One partition's prepared rows with a target, split."""

    x: pd.DataFrame
    y: pd.Series[Any]
    hashes: np.ndarray[Any, np.dtype[np.uint64]]
    fraction: np.ndarray[Any, np.dtype[np.float64]]
    test: np.ndarray[Any, np.dtype[np.bool_]]


def _split_part(part: pd.DataFrame, split: _Split) -> _Part:
    """A partition's rows with a target, prepared by the feature contract and split by content, as ``train`` does."""
    schema = split.schema
    target = schema.target.name
    rows = part.loc[part[target].notna()]
    x = prepare_features(rows, schema).reset_index(drop=True)
    y = _plain_target(rows[target], schema.target.task)
    hashes = row_hashes(x.assign(**{target: y.to_numpy()}), schema)
    fraction = split_fraction(hashes, split.salt)
    if split.only is None:
        test = fraction < split.test_size
    elif split.only[0] == "test":
        test = hashes == np.uint64(split.only[1])
    else:
        test = hashes != np.uint64(split.only[1])
    return _Part(x, y, hashes, fraction, np.asarray(test, dtype=bool))


@dataclass
class _Survey:
    """What one pass over the data learns (per partition, then summed): row and class counts, the training part's row
    hashes, the extremes of the split places, and the first digit counts of every numeric feature's training values."""

    rows: int = 0
    target_dtype: str = "object"
    train_rows: int = 0
    test_rows: int = 0
    train_counts: dict[Any, int] = field(default_factory=dict)
    test_counts: dict[Any, int] = field(default_factory=dict)
    target_sum: float = 0.0
    hashes: list[np.ndarray[Any, np.dtype[np.uint64]]] = field(default_factory=list)
    lowest: tuple[float, int] = (np.inf, 0)
    highest: tuple[float, int] = (-np.inf, 0)
    digits: dict[str, _Counts] = field(default_factory=dict)


@dataclass
class _Counts:
    """How many of a column's values have each digit (a sparse histogram): sorted distinct digits, their counts, and
    the smallest and largest key with each digit (so a digit whose values are all one value settles a search at once:
    ties, booleans, whole numbers)."""

    digits: np.ndarray[Any, np.dtype[np.uint64]]
    counts: np.ndarray[Any, np.dtype[np.int64]]
    low: np.ndarray[Any, np.dtype[np.uint64]]
    high: np.ndarray[Any, np.dtype[np.uint64]]

    @classmethod
    def of(cls, keys: np.ndarray[Any, np.dtype[np.uint64]], shift: int, mask: int | None = None) -> _Counts:
        """The counts of the digit ``(key >> shift) & mask`` over ``keys``."""
        ordered = np.sort(keys)
        digits = ordered >> np.uint64(shift)
        if mask is not None:
            digits &= np.uint64(mask)
        distinct, first, counts = np.unique(digits, return_index=True, return_counts=True)
        return cls(distinct, counts.astype(np.int64), ordered[first], ordered[first + counts - 1])

    @classmethod
    def merged(cls, parts: Sequence[_Counts]) -> _Counts:
        def joined(name: str, dtype: Any) -> np.ndarray[Any, Any]:
            return np.concatenate([getattr(p, name) for p in parts]) if parts else np.empty(0, dtype)

        distinct, inverse = np.unique(joined("digits", np.uint64), return_inverse=True)
        counts = np.bincount(inverse, weights=joined("counts", np.int64), minlength=len(distinct)).astype(np.int64)
        low = np.full(len(distinct), np.iinfo(np.uint64).max, dtype=np.uint64)
        high = np.zeros(len(distinct), dtype=np.uint64)
        np.minimum.at(low, inverse, joined("low", np.uint64))
        np.maximum.at(high, inverse, joined("high", np.uint64))
        return cls(distinct, counts, low, high)


def _survey_part(part: pd.DataFrame, split: _Split, numeric: tuple[str, ...]) -> _Survey:
    rows = _split_part(part, split)
    train = ~rows.test
    survey = _Survey(
        rows=len(rows.y), target_dtype=str(rows.y.dtype), train_rows=int(train.sum()), test_rows=int(rows.test.sum())
    )
    if split.schema.target.task == "classification":
        survey.train_counts = _value_counts(rows.y[train])
        survey.test_counts = _value_counts(rows.y[rows.test])
    else:
        survey.target_sum = float(rows.y[train].sum())
    survey.hashes = [np.unique(rows.hashes[train])]
    if len(rows.fraction):
        low, high = int(np.argmin(rows.fraction)), int(np.argmax(rows.fraction))
        survey.lowest = (float(rows.fraction[low]), int(rows.hashes[low]))
        survey.highest = (float(rows.fraction[high]), int(rows.hashes[high]))
    for name in numeric:
        keys = _keys(rows.x[name].to_numpy()[train])
        survey.digits[name] = _Counts.of(keys, _KEY_BITS - _DIGIT_BITS)
    return survey


def _value_counts(values: pd.Series[Any]) -> dict[Any, int]:
    labels, counts = np.unique(np.asarray(values), return_counts=True)
    return {label: int(count) for label, count in zip(labels.tolist(), counts.tolist(), strict=True)}


def _merge(surveys: Sequence[_Survey], numeric: tuple[str, ...]) -> _Survey:
    total = _Survey()
    for survey in surveys:
        total.target_dtype = survey.target_dtype
        total.rows += survey.rows
        total.train_rows += survey.train_rows
        total.test_rows += survey.test_rows
        for counts, more in ((total.train_counts, survey.train_counts), (total.test_counts, survey.test_counts)):
            for label, count in more.items():
                counts[label] = counts.get(label, 0) + count
        total.target_sum += survey.target_sum
        total.hashes += survey.hashes
        total.lowest = min(total.lowest, survey.lowest)
        total.highest = max(total.highest, survey.highest)
    for name in numeric:
        total.digits[name] = _Counts.merged([s.digits[name] for s in surveys])
    return total


def _keys(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """The non-missing float64 ``values`` as unsigned integers in the same order (negative floats reversed)."""
    floats = np.asarray(values, dtype=np.float64)
    bits = floats[~np.isnan(floats)].view(np.uint64)
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def _floats(keys: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The inverse of :func:`_keys`."""
    keys = np.asarray(keys, dtype=np.uint64)
    positive = (keys & _SIGN) != 0
    return np.where(positive, keys & ~_SIGN, ~keys).view(np.float64)


@dataclass
class _Rank:
    """The search for the value of one rank of a column's sorted training values: the ``bits`` leading bits of its
    key are ``prefix``, and ``below`` values have a smaller prefix (``value`` once found)."""

    column: str
    rank: int
    prefix: int = 0
    bits: int = 0
    below: int = 0
    remaining: int = 0
    value: float | None = None

    @property
    def request(self) -> tuple[str, int, int, bool]:
        """What a partition reports for this search: (column, prefix, bits, gather the values instead of counting)."""
        return (self.column, self.prefix, self.bits, self.remaining <= GATHER_VALUES)

    def narrow(self, counts: _Counts) -> None:
        """Take the next digit from the counts of the values under the current prefix."""
        cumulative = np.cumsum(counts.counts)
        at = int(np.searchsorted(cumulative, self.rank - self.below, side="right"))
        self.below += int(cumulative[at - 1]) if at else 0
        self.prefix = (self.prefix << _DIGIT_BITS) | int(counts.digits[at])
        self.bits += _DIGIT_BITS
        self.remaining = int(counts.counts[at])
        if counts.low[at] == counts.high[at]:  # every value left is this one (at the latest when all 64 bits are)
            self.value = float(_floats(counts.low[at : at + 1])[0])

    def pick(self, keys: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
        """Take the value from every key under the current prefix."""
        self.value = float(_floats(np.sort(keys)[self.rank - self.below : self.rank - self.below + 1])[0])


def _report_part(
    part: pd.DataFrame, split: _Split, requests: tuple[tuple[str, int, int, bool], ...]
) -> dict[tuple[str, int, int, bool], Any]:
    """One partition's answer to each median search: digit counts, or the keys themselves, under a prefix."""
    rows = _split_part(part, split)
    train = ~rows.test
    keys_of = {name: _keys(rows.x[name].to_numpy()[train]) for name in {r[0] for r in requests}}
    answers: dict[tuple[str, int, int, bool], Any] = {}
    for request in requests:
        name, prefix, bits, gather = request
        keys = keys_of[name]
        if bits:
            keys = keys[(keys >> np.uint64(_KEY_BITS - bits)) == np.uint64(prefix)]
        if gather:
            answers[request] = keys
        else:
            answers[request] = _Counts.of(keys, _KEY_BITS - bits - _DIGIT_BITS, (1 << _DIGIT_BITS) - 1)
    return answers


def _middle_values(
    frame: dd.DataFrame, split: _Split, survey: _Survey, numeric: tuple[str, ...], client: Client
) -> dict[str, list[float]]:
    """Each numeric column's middle value(s) over the training part (one for an odd count, two for an even one, none
    when it has no value), found exactly by radix selection (module docstring)."""
    searches: list[_Rank] = []
    for name in numeric:
        counts = survey.digits[name]
        total = int(counts.counts.sum())
        for rank in sorted({(total - 1) // 2, total // 2}) if total else []:
            search = _Rank(name, rank)
            search.narrow(counts)
            searches.append(search)
    pending = [s for s in searches if s.value is None]
    while pending:
        requests = tuple(sorted({s.request for s in pending}))
        answers = _each_partition(frame, client, _report_part, split, requests)
        for search in pending:
            request = search.request
            found = [answer[request] for answer in answers]
            if request[3]:
                search.pick(np.concatenate(found) if found else np.empty(0, np.uint64))
            else:
                search.narrow(_Counts.merged(found))
        pending = [s for s in searches if s.value is None]
    middle: dict[str, list[float]] = {name: [] for name in numeric}
    for search in searches:
        middle[search.column].append(float(search.value))  # type: ignore[arg-type]
    return middle


def _fitted_preprocess(pipeline: Pipeline, schema: Schema, middle: dict[str, list[float]]) -> Any:
    """The pipeline's transformer fitted by scikit-learn on a two-row frame holding each numeric column's middle
    value(s): its median imputer then holds the training part's exact medians, and nothing else it learns depends
    on the rows (categories come from the schema, the categorical imputer fills a constant)."""
    numeric_steps = {name: step for name, step, _ in pipeline.named_steps[PREPROCESS_STEP].transformers}
    if NUMERIC_PART in numeric_steps and len(numeric_steps[NUMERIC_PART].steps) != 1:
        raise ConfigError("distributed training supports only an unscaled numeric preprocessing (tree models)")
    columns: dict[str, Any] = {}
    for feature in schema.features:
        if feature.name in middle:
            values = middle[feature.name]
            columns[feature.name] = np.array((values * 2)[:2] if values else [np.nan, np.nan], dtype=np.float64)
        else:
            columns[feature.name] = pd.Series([np.nan, np.nan], dtype=object)
    return clone(pipeline.named_steps[PREPROCESS_STEP]).fit(pd.DataFrame(columns))


def _design_part(
    part: pd.DataFrame, split: _Split, preprocess: Any, classes: np.ndarray[Any, Any] | None
) -> pd.DataFrame:
    """A partition's training rows as the model sees them (the transformed features ``f0, f1, ...``) and the label
    (a class's index in ``classes`` for a classifier), for ``xgboost.dask``."""
    rows = _split_part(part, split)
    train = ~rows.test
    # float32: XGBoost converts its input to float32 anyway (on one machine too), and half the size is what the
    # workers keep in memory until the fit has built its quantised matrix.
    design = np.asarray(preprocess.transform(rows.x.loc[train]), dtype=np.float32)
    frame = pd.DataFrame(design, columns=[f"f{i}" for i in range(design.shape[1])])
    labels = rows.y.to_numpy()[train]
    if classes is not None:
        frame[_LABEL] = pd.Index(classes).get_indexer(labels).astype(np.int64)
    else:
        frame[_LABEL] = labels.astype(np.float64)
    return frame


def _held_out_part(part: pd.DataFrame, split: _Split) -> tuple[pd.DataFrame, pd.Series[Any]]:
    """A partition's held-out rows gathered for evaluation (those within the kept share of the test range)."""
    rows = _split_part(part, split)
    keep = rows.test if split.only is not None else rows.fraction < split.test_size * split.keep
    chosen = np.flatnonzero(keep)
    return rows.x.iloc[chosen], rows.y.iloc[chosen]


def _train_xgboost(
    frame: dd.DataFrame,
    config: TrainConfig,
    schema: Schema,
    *,
    client: Client,
    report: Callable[[str], None],
    max_test_rows: int,
) -> TrainResult:
    task = _checked_task(config, schema)
    config.primary_metric_for(task)  # a primary metric the task has not fails here, before any work
    pipeline = build_pipeline(schema, config.model, task=task, params=config.params, seed=config.seed)
    if schema.target.name not in frame.columns:
        raise DataError(f"the target column {schema.target.name!r} is not in the data")
    numeric = tuple(f.name for f in schema.features if f.kind in ("numeric", "boolean"))
    notes: list[str] = []

    report(f"splitting {frame.npartitions} partitions by row content")
    split = _Split(schema, config.test_size, config.split_salt)
    survey = _survey(frame, split, numeric, client)
    if survey.rows < MIN_ROWS:
        raise DataError(
            f"only {survey.rows} rows have a value for {schema.target.name!r}; training needs at least {MIN_ROWS}"
        )
    if survey.test_rows in (0, survey.rows):
        split, survey = _resplit(frame, split, survey, numeric, client, notes)
    labels = _labels(survey, schema) if task == "classification" else None
    if labels is not None:
        _note_one_sided(survey, notes)

    report(f"finding the medians of {len(numeric)} numeric features out of core")
    preprocess = _fitted_preprocess(pipeline, schema, _middle_values(frame, split, survey, numeric, client))
    # The classes the model is fitted on are those of the training part, as LabelEncodedClassifier finds them.
    classes = np.unique(np.array(list(survey.train_counts), dtype=survey.target_dtype)) if labels is not None else None

    report(f"fitting xgboost on {survey.train_rows} rows on the cluster")
    started = time.perf_counter()
    estimator = _fit_distributed(frame, split, pipeline, preprocess, classes, client)
    fit_seconds = time.perf_counter() - started
    fitted = Pipeline([(PREPROCESS_STEP, preprocess), (MODEL_STEP, estimator)])

    keep = 1.0
    if split.only is None and survey.test_rows > max_test_rows:
        keep = max_test_rows / survey.test_rows
        notes.append(
            f"evaluated on about {max_test_rows} of the {survey.test_rows} held-out rows: those with the lowest split "
            "places, the same rows in every run with this salt"
        )
    split = _Split(split.schema, split.test_size, split.salt, keep=keep, only=split.only)
    report(f"gathering {'about ' if keep < 1 else ''}{min(survey.test_rows, max_test_rows)} held-out rows")
    gathered = _each_partition(frame, client, _held_out_part, split)
    x_test = pd.concat([x for x, _ in gathered], ignore_index=True)
    y_test = pd.concat([y for _, y in gathered], ignore_index=True)
    if not len(x_test):
        raise DataError("no held-out row was gathered for evaluation: raise max_test_rows")

    if config.cv_folds:
        notes.append(
            "cross-validation skipped: XGBoost trained on the Dask cluster is scored on the held-out part only (each "
            "fold would be another distributed fit)"
        )
    evaluation, predicted, proba = evaluate_held_out(
        fitted,
        _baseline(task, survey),
        x_test,
        y_test,
        config=config,
        task=task,
        labels=labels,
        notes=notes,
        report=report,
    )
    hashes = np.unique(np.concatenate(survey.hashes)) if survey.hashes else np.empty(0, np.uint64)
    return TrainResult(
        pipeline=fitted,
        schema=schema,
        config=config,
        task=task,
        labels=labels,
        evaluation=evaluation,
        train_rows=survey.train_rows,
        test_rows=len(x_test),
        fit_seconds=fit_seconds,
        X_test=x_test,
        y_test=y_test,
        input_example=x_test.head(EXAMPLE_ROWS).copy(),
        test_predictions=predicted,
        test_proba=proba,
        training_rows=TrainingRows(hashes, survey.train_rows, hashed_columns(schema), split.salt),
    )


def _xgboost_reason(exc: BaseException) -> str:
    """XGBoost's error message without its source locations and C++ stack, on one line (at most 300 characters)."""
    text = str(exc).split("Stack trace:")[0]
    located = r"\[[^\]]*\]:?|\S+\.(?:cc|h|cu|cuh):\d+:|^\s*-\s"
    parts = [re.sub(located, "", line).strip() for line in text.splitlines()]
    reason = " ".join(part for part in parts if part) or type(exc).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _checked_task(config: TrainConfig, schema: Schema) -> ResolvedTask:
    """The schema's task, once the config agrees with the schema (the checks :func:`train` makes)."""
    task = schema.target.task
    if config.task not in ("auto", task):
        raise ConfigError(f"the config asks for {config.task} but the schema's target is for {task}")
    if config.target != schema.target.name:
        raise ConfigError(f"the config's target is {config.target!r} but the schema's is {schema.target.name!r}")
    return task


def _survey(frame: dd.DataFrame, split: _Split, numeric: tuple[str, ...], client: Client) -> _Survey:
    return _merge(_each_partition(frame, client, _survey_part, split, numeric), numeric)


def _each_partition(frame: dd.DataFrame, client: Client, function: Callable[..., Any], *args: Any) -> list[Any]:
    """``function(partition, *args)`` for every partition of ``frame``, run on the cluster; the results, in partition
    order, come back to this process (so they are small: counts, keys, the bounded held-out rows). Delayed calls
    rather than ``map_partitions``: their results are any Python objects, and text columns keep the ``object`` dtype
    the pipeline is fitted on, where Dask would convert them to its string type."""
    from dask.delayed import delayed

    tasks = [delayed(function)(part, *args) for part in frame.to_delayed()]  # type: ignore[no-untyped-call]
    return list(client.compute(tasks, sync=True))  # type: ignore[no-untyped-call]


def _resplit(
    frame: dd.DataFrame, split: _Split, survey: _Survey, numeric: tuple[str, ...], client: Client, notes: list[str]
) -> tuple[_Split, _Survey]:
    """The split when the threshold left a part empty: the row nearest it changes sides, as in :func:`train`."""
    size = f"{split.test_size:g}"
    if survey.test_rows == 0:
        only = ("test", survey.lowest[1])
        note = f"no row fell in the test part at test_size {size}: it holds the row nearest the threshold"
    else:
        only = ("train", survey.highest[1])
        note = f"every row fell in the test part at test_size {size}: the row nearest the threshold trains"
    notes.append(note)
    split = _Split(split.schema, split.test_size, split.salt, only=only)
    survey = _survey(frame, split, numeric, client)
    if survey.test_rows in (0, survey.rows):
        raise DataError("every row has the same features and target: there is nothing to hold out for testing")
    return split, survey


def _labels(survey: _Survey, schema: Schema) -> list[Any]:
    """The classification labels, as :func:`train` decides them: the schema's, or the sorted values seen."""
    seen = natives([*survey.train_counts, *(k for k in survey.test_counts if k not in survey.train_counts)])
    if not schema.target.labels:
        return sorted(seen)
    labels = list(schema.target.labels)
    known = set(labels)
    unexpected = [label for label in seen if label not in known]
    if unexpected:
        shown = ", ".join(repr(v) for v in unexpected[:5])
        raise DataError(f"the target {schema.target.name!r} has labels the schema does not list: {shown}")
    return labels


def _note_one_sided(survey: _Survey, notes: list[str]) -> None:
    classes = [*survey.train_counts, *(k for k in survey.test_counts if k not in survey.train_counts)]
    held_out = [float(survey.test_counts.get(label, 0)) for label in classes]
    rows = [survey.train_counts.get(label, 0) + survey.test_counts.get(label, 0) for label in classes]
    note = one_sided_note(natives(classes), rows, held_out)
    if note:
        notes.append(note)


def _baseline(task: ResolvedTask, survey: _Survey) -> Any:
    """The prior/mean baseline :func:`train` fits on the training part, fitted from its class counts or mean."""
    if task == "classification":
        classes = np.array(list(survey.train_counts), dtype=survey.target_dtype)
        weights = np.array(list(survey.train_counts.values()), dtype=np.float64)
        return DummyClassifier(strategy="prior").fit(np.zeros((len(classes), 1)), classes, sample_weight=weights)
    mean = survey.target_sum / survey.train_rows
    return DummyRegressor(strategy="mean").fit(np.zeros((1, 1)), np.array([mean]))


def _fit_distributed(
    frame: dd.DataFrame,
    split: _Split,
    pipeline: Pipeline,
    preprocess: Any,
    classes: np.ndarray[Any, Any] | None,
    client: Client,
) -> Any:
    """The pipeline's model step fitted by ``xgboost.dask`` on every partition's transformed training rows."""
    from xgboost.dask import DaskXGBClassifier, DaskXGBRegressor

    template = pipeline.named_steps[MODEL_STEP]
    inner = template.estimator if isinstance(template, LabelEncodedClassifier) else template
    width = len(preprocess.get_feature_names_out())
    meta = pd.DataFrame({f"f{i}": np.empty(0, np.float32) for i in range(width)})
    meta[_LABEL] = np.empty(0, np.int64 if classes is not None else np.float64)
    design = frame.map_partitions(  # type: ignore[no-untyped-call]
        _design_part, split, preprocess, classes, meta=meta, align_dataframes=False
    )
    # The workers' own thread counts decide the fit's threads; the estimator's n_jobs is how the served model predicts.
    params = {name: value for name, value in inner.get_params().items() if name != "n_jobs"}
    distributed = (DaskXGBClassifier if classes is not None else DaskXGBRegressor)(**params)
    distributed.client = client
    from distributed import KilledWorker
    from xgboost.core import XGBoostError

    try:
        distributed.fit(design.drop(columns=[_LABEL]), design[_LABEL], verbose=False)
    except (XGBoostError, KilledWorker) as exc:
        # XGBoost's workers train in lockstep: one worker lost (most often to its memory limit) fails the fit on every
        # other, and xgboost.dask does not restart it. Its message is a C++ stack; the reason users can act on is this.
        raise ClusterError(
            f"XGBoost training on the Dask cluster failed: {_xgboost_reason(exc)} (a lost worker, most often one out "
            "of memory, shows as a closed connection: give the workers more memory or add workers)"
        ) from None
    booster = distributed.get_booster()
    # Trained on columns named f0, f1, ...; the pipeline hands its estimator an unnamed array, as on one machine.
    booster.feature_names = None
    booster.feature_types = None
    fitted = clone(inner)
    fitted.load_model(bytearray(booster.save_raw("ubj")))
    # load_model also sets the hyper-parameters it reads back; keep those the config gave, as a local fit does.
    fitted.set_params(**{name: getattr(inner, name) for name in ("base_score", "booster", "feature_types")})
    if classes is None:
        return fitted
    wrapper = clone(template)
    wrapper.classes_ = classes
    wrapper.estimator_ = fitted
    wrapper.n_features_in_ = fitted.n_features_in_
    return wrapper
