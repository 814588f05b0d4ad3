"""The model pipeline: preprocessing fitted together with the estimator, in one sklearn ``Pipeline``.

The pipeline takes the frame :func:`fasttrack.data.schema.prepare_features` returns (the schema's features in
order; numeric and boolean columns as float64 with NaN, categorical columns as ``object`` with ``np.nan``) and
has two steps, ``preprocess`` (a ``ColumnTransformer``) and ``model`` (the estimator).

Its shape is chosen so that skl2onnx can convert it and agree with sklearn, which rules out a few otherwise
natural choices:

* Every model gets the same preprocessing: numeric and boolean features are median-imputed, categorical ones
  are one-hot encoded; linear models also standardise the numeric block. Tree models could take NaN natively,
  but the ONNX tree converters do not all reproduce sklearn's missing-value routing, so missing numbers are
  imputed for every model and the structure stays one and the same.
* No missing-value indicator columns: skl2onnx's imputer converter ignores ``add_indicator`` (its output
  would have fewer columns than sklearn's), and it has no ``MissingIndicator`` converter.
* Categories the model encodes are the schema's ``frequent_categories`` (plus :data:`MISSING_CATEGORY` for
  nullable features), given explicitly to ``OneHotEncoder`` with ``handle_unknown="ignore"``: rare and unseen
  categories both encode as all zeros, so they share one learned effect, without ``min_frequency`` or
  ``infrequent_if_exist`` (which skl2onnx does not implement).
* Missing categories are filled with the string :data:`MISSING_CATEGORY`. skl2onnx's imputer converter needs
  the *missing value* itself to be a string for string inputs (ONNX string tensors cannot hold NaN), so
  convert :func:`with_string_missing_categories` of the fitted pipeline and feed ``MISSING_CATEGORY`` for
  missing categorical values at ONNX inference; it predicts exactly what the original does on NaN.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fasttrack.config import ModelKind
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.errors import ConfigError
from fasttrack.training.estimators import LabelEncodedClassifier

#: The category that stands for a missing value of a categorical feature inside the pipeline.
MISSING_CATEGORY = "__missing__"

#: Names of the pipeline's steps and of the ColumnTransformer's parts, for code that reaches inside.
PREPROCESS_STEP = "preprocess"
MODEL_STEP = "model"
NUMERIC_PART = "numeric"
CATEGORICAL_PART = "categorical"

MODEL_KINDS: tuple[ModelKind, ...] = ("linear", "random_forest", "hist_gradient_boosting", "xgboost")

#: The random forest's default bounds on its size (``params`` override them). scikit-learn grows every tree until
#: its leaves are pure: on bank_additional.csv 657 k nodes, a 53 MB pickle, and 1.0 GB at the peak of training,
#: set by the ONNX conversion; on adult.csv 910 k nodes and 73 MB. Leaves of at least 5 rows cut the nodes 3 to
#: 7.5 times, halve the peak, and scored better on the held-out rows of both (ROC AUC 0.9457 against 0.9410 and
#: 0.9142 against 0.9019: fully grown trees overfit the probabilities); docs/performance.md has the figures.
FOREST_BOUNDS: dict[str, Any] = {"min_samples_leaf": 5}
_SCALED_MODELS: frozenset[ModelKind] = frozenset({"linear"})


def build_pipeline(
    schema: Schema,
    model: ModelKind,
    *,
    task: Literal["classification", "regression"],
    params: dict[str, Any] | None = None,
    seed: int = 42,
) -> Pipeline:
    """An unfitted ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])`` for ``schema``.

    ``model`` picks the estimator family and ``task`` its classifier or regressor; ``params`` override or
    extend the estimator's default keyword arguments (for XGBoost classification they apply to the inner
    ``XGBClassifier``). An unknown parameter name raises :class:`~fasttrack.errors.ConfigError` naming it and
    the valid ones. ``seed`` fixes every source of randomness, so the same data and seed give the same model.
    Classifiers predict the original labels; see the module docstring for why preprocessing looks as it does.
    """
    if model not in MODEL_KINDS:
        raise ConfigError(f"unknown model {model!r}; use one of {', '.join(MODEL_KINDS)}")
    if task not in ("classification", "regression"):
        raise ConfigError(f"task must be classification or regression to build a pipeline, not {task!r}")
    if not schema.features:
        raise ConfigError("the schema has no features: nothing to train on")
    preprocess = _preprocessor(schema.features, scale=model in _SCALED_MODELS)
    estimator = build_estimator(model, task=task, params=params, seed=seed)
    return Pipeline([(PREPROCESS_STEP, preprocess), (MODEL_STEP, estimator)])


def build_estimator(
    model: ModelKind,
    *,
    task: Literal["classification", "regression"],
    params: dict[str, Any] | None = None,
    seed: int = 42,
) -> Any:
    """The unfitted estimator of ``build_pipeline``'s ``model`` step, with defaults, ``params`` and ``seed``.

    Unknown parameter names, and values sklearn would reject, raise :class:`~fasttrack.errors.ConfigError`.
    XGBoost's classifier comes wrapped in :class:`~fasttrack.training.estimators.LabelEncodedClassifier` so
    that it predicts the original labels.
    """
    factory, defaults = _estimator_defaults(model, task, seed)
    overrides = dict(params or {})
    valid = sorted(factory().get_params(deep=False))
    unknown = [name for name in overrides if name not in valid]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise ConfigError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {names} for the {model} {task} model; "
            f"valid parameters: {', '.join(valid)}"
        )
    estimator = factory(**{**defaults, **overrides})
    _check_values(estimator, model, task)
    if model == "xgboost" and task == "classification":
        return LabelEncodedClassifier(estimator)
    return estimator


def _check_values(estimator: Any, model: str, task: str) -> None:
    """Refuse parameter values sklearn would reject, now rather than minutes later at ``fit``."""
    # sklearn's own validation, driven by `_parameter_constraints` (private, hence the guards). XGBoost's
    # estimators inherit the method without the constraints and check their values only when they train.
    validate = getattr(estimator, "_validate_params", None)
    if validate is None or not hasattr(estimator, "_parameter_constraints"):
        return
    try:
        validate()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid parameter for the {model} {task} model: {exc}") from None


def with_string_missing_categories(pipeline: Pipeline) -> Pipeline:
    """A copy of a fitted pipeline whose categorical imputer treats :data:`MISSING_CATEGORY` as missing.

    This is the variant to hand to skl2onnx: its imputer converter only handles string missing values for
    string inputs. Fed ``MISSING_CATEGORY`` wherever the original is fed NaN, the copy predicts the same.
    """
    converted = copy.deepcopy(pipeline)
    parts = converted.named_steps[PREPROCESS_STEP].named_transformers_
    if CATEGORICAL_PART in parts:
        parts[CATEGORICAL_PART].named_steps["impute"].set_params(missing_values=MISSING_CATEGORY)
    return converted


def encoded_categories(feature: FeatureSchema) -> list[str]:
    """The categories the one-hot encoder keeps for a categorical feature, in encoding order.

    The schema's frequent categories, plus :data:`MISSING_CATEGORY` when the feature had missing values (or
    when nothing else is left, since an encoder cannot have an empty category list). Sorted, so the column
    order does not depend on frequency ranks.
    """
    categories = {str(c) for c in feature.frequent_categories or []}
    if feature.nullable or not categories:
        categories.add(MISSING_CATEGORY)
    return sorted(categories)


def _preprocessor(features: list[FeatureSchema], *, scale: bool) -> ColumnTransformer:
    numeric = [f.name for f in features if f.kind in ("numeric", "boolean")]
    categorical = [f for f in features if f.kind == "categorical"]
    parts: list[tuple[str, Pipeline, list[str]]] = []
    if numeric:
        # keep_empty_features: a column with no value in a training part (possible in a CV fold) keeps
        # its place, so the output layout never depends on the sample.
        steps: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ]
        if scale:
            steps.append(("scale", StandardScaler()))
        parts.append((NUMERIC_PART, Pipeline(steps), numeric))
    if categorical:
        encoder = OneHotEncoder(
            categories=[encoded_categories(f) for f in categorical],
            handle_unknown="ignore",
            sparse_output=False,
            dtype=np.float64,
        )
        imputer = SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True)
        parts.append(
            (CATEGORICAL_PART, Pipeline([("impute", imputer), ("encode", encoder)]), [f.name for f in categorical])
        )
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _estimator_defaults(model: ModelKind, task: str, seed: int) -> tuple[Any, dict[str, Any]]:
    classification = task == "classification"
    if model == "linear":
        if classification:
            return LogisticRegression, {"max_iter": 1000}
        return LinearRegression, {}
    if model == "random_forest":
        # n_jobs stays 1: a parallel forest also predicts in parallel, and spinning up workers for every
        # served request costs more than it saves; set params.n_jobs for big training sets.
        factory = RandomForestClassifier if classification else RandomForestRegressor
        return factory, {"n_estimators": 100, **FOREST_BOUNDS, "random_state": seed}
    if model == "hist_gradient_boosting":
        factory = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return factory, {"random_state": seed}
    # Imported here: xgboost takes a noticeable time to import and most runs never need it.
    from xgboost import XGBClassifier, XGBRegressor

    factory = XGBClassifier if classification else XGBRegressor
    return factory, {
        "n_estimators": 300,
        "learning_rate": 0.1,
        "tree_method": "hist",
        "random_state": seed,
        # A fixed thread count, not "all cores": the same seed then gives the same model on any machine,
        # and a served model does not fight the web workers for every core.
        "n_jobs": 2,
    }
