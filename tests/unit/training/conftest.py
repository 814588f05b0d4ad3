"""Training fixtures: small synthetic data already in ``prepare_features`` form, with a hand-built schema.

The frames follow the contract of :func:`fasttrack.data.schema.prepare_features` (numeric and boolean features
as float64 with NaN, categorical ones as ``object`` holding ``str`` with ``np.nan``), so the training tests do
not depend on the schema module's inference and preparation code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from fasttrack.config import TrainConfig
from fasttrack.data.schema import FeatureSchema, Schema, TargetSchema

FEATURES = ["age", "income", "member", "colour"]
FREQUENT_COLOURS = ["red", "green", "blue"]
RARE_COLOUR = "purple"
BINARY_STR = ("negative", "positive")
BINARY_INT = (0, 1)
PENGUINS = ("Adelie", "Chinstrap", "Gentoo")

#: Small estimators so the whole suite stays fast.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "linear": {},
    "random_forest": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 20},
    "xgboost": {"n_estimators": 20, "n_jobs": 1},
}


@dataclass
class Dataset:
    """A prepared frame (features + ``target``), its schema, and the features and target on their own."""

    frame: pd.DataFrame
    schema: Schema

    @property
    def x(self) -> pd.DataFrame:
        """The feature columns, in schema order."""
        return self.frame[self.schema.feature_names]

    @property
    def y(self) -> pd.Series[Any]:
        """The target column."""
        return self.frame["target"]


def make_dataset(
    task: Literal["classification", "regression"] = "classification",
    *,
    labels: Sequence[Any] = BINARY_STR,
    rows: int = 240,
    seed: int = 0,
    noise: bool = False,
) -> Dataset:
    """Numeric, boolean and categorical features with missing values and a rare category; a learnable target.

    ``noise`` makes the target independent of every feature.
    """
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, rows)
    age[rng.random(rows) < 0.1] = np.nan
    income = rng.lognormal(10, 0.5, rows)
    member = (rng.random(rows) < 0.4).astype(np.float64)
    member[rng.random(rows) < 0.05] = np.nan
    colour = rng.choice(np.array(FREQUENT_COLOURS, dtype=object), rows).astype(object)
    colour[:3] = RARE_COLOUR
    colour[rng.random(rows) < 0.06] = np.nan
    effect = {"red": 1.0, "green": 0.0, "blue": -1.0}
    signal = (
        np.nan_to_num((age - 40) / 12)
        + (np.log(income) - 10) / 0.5
        + 0.8 * np.nan_to_num(member)
        + np.array([effect.get(c, 0.0) if isinstance(c, str) else 0.0 for c in colour])
        + rng.normal(0, 0.4, rows)
    )
    if noise:
        signal = rng.normal(0, 1, rows)
    frame = pd.DataFrame(
        {
            "age": age,
            "income": income,
            "member": member,
            "colour": pd.Series(colour, dtype=object),
        }
    )
    if task == "regression":
        frame["target"] = 50.0 + 10.0 * signal
        target = TargetSchema(name="target", task="regression", dtype="float64")
    else:
        cuts = np.quantile(signal, np.linspace(0, 1, len(labels) + 1)[1:-1])
        codes = np.searchsorted(cuts, signal)
        values = np.array(list(labels), dtype=object)[codes]
        is_int = all(isinstance(v, int) for v in labels)
        frame["target"] = pd.Series(values.astype(np.int64) if is_int else values, dtype=np.int64 if is_int else object)
        target = TargetSchema(
            name="target", task="classification", dtype="int64" if is_int else "str", labels=list(labels)
        )
    return Dataset(frame=frame, schema=make_schema(frame, target))


def make_schema(frame: pd.DataFrame, target: TargetSchema) -> Schema:
    """The schema of ``make_dataset``'s features (colour's rare category is not a frequent one)."""
    colour = frame["colour"]
    features = [
        FeatureSchema(
            name="age",
            kind="numeric",
            dtype="float64",
            nullable=bool(frame["age"].isna().any()),
            missing_ratio=float(frame["age"].isna().mean()),
        ),
        FeatureSchema(name="income", kind="numeric", dtype="float64", nullable=False, missing_ratio=0.0),
        FeatureSchema(
            name="member",
            kind="boolean",
            dtype="bool",
            nullable=bool(frame["member"].isna().any()),
            missing_ratio=float(frame["member"].isna().mean()),
        ),
        FeatureSchema(
            name="colour",
            kind="categorical",
            dtype="str",
            nullable=bool(colour.isna().any()),
            missing_ratio=float(colour.isna().mean()),
            categories=[*FREQUENT_COLOURS, RARE_COLOUR],
            frequent_categories=list(FREQUENT_COLOURS),
        ),
    ]
    return Schema(features=features, target=target, n_rows=len(frame))


def make_config(model: str = "hist_gradient_boosting", **overrides: Any) -> TrainConfig:
    """A training config for the synthetic data, with small estimators unless ``params`` says otherwise."""
    values: dict[str, Any] = {
        "data": "memory://synthetic.csv",
        "target": "target",
        "model": model,
        "params": FAST_PARAMS[model],
        "cv_folds": 3,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _identity_prepare(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    return frame[schema.feature_names].copy()


@pytest.fixture
def prepared_input(monkeypatch: pytest.MonkeyPatch) -> Callable[[pd.DataFrame, Schema], pd.DataFrame]:
    """Make ``prepare_features`` select the schema's columns: the synthetic frames are already prepared."""
    # By module path: the package may one day export a function called ``train`` too.
    train_module = importlib.import_module("fasttrack.training.train")
    monkeypatch.setattr(train_module, "prepare_features", _identity_prepare)
    return _identity_prepare


@pytest.fixture
def make_data() -> Callable[..., Dataset]:
    """The ``make_dataset`` factory (tests cannot import from a conftest reliably)."""
    return make_dataset


@pytest.fixture
def train_config() -> Callable[..., TrainConfig]:
    """The ``make_config`` factory."""
    return make_config


@pytest.fixture(autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """Run OpenMP code (HistGradientBoosting) on one thread: on a busy machine, spinning threads that wait
    for a core make these tiny fits many times slower, and one thread is plenty for a few hundred rows."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield
