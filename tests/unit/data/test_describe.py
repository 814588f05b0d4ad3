"""Describing training data: task and schema inference, reference profiles, the real data sets' schemas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.clean import clean
from fasttrack.data.describe import categorical_profile, infer_schema, infer_task, numeric_profile
from fasttrack.data.ingest import read_table
from fasttrack.data.schema import CategoricalProfile, NumericProfile, Schema, bin_proportions
from fasttrack.errors import DataError
from fasttrack.features.frames import prepare_features, validate


@pytest.fixture
def schema(training: pd.DataFrame) -> Schema:
    return infer_schema(training, "y")


# --- infer_task -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (pd.Series(["a", "b", "a"]), "classification"),
        (pd.Series([True, False, True]), "classification"),
        (pd.Series([0, 1, 1, 0, 1]), "classification"),
        (pd.Series([0.0, 1.0, np.nan, 1.0]), "classification"),
        (pd.Series([1, 2, 3] * 20), "classification"),
        (pd.Series([1, 2, 3] * 6), "regression"),
        (pd.Series(np.arange(1000) % 25), "regression"),
        (pd.Series([0.5, 1.5, 0.5, 1.5]), "regression"),
        (pd.Series(np.linspace(0, 1, 100)), "regression"),
        (pd.Series(["3", "1"], dtype="category"), "classification"),
    ],
    ids=[
        "text",
        "bool",
        "binary-int",
        "binary-float",
        "3-classes-60-rows",
        "3-values-18-rows",
        "25-values",
        "halves",
        "continuous",
        "categorical",
    ],
)
def test_infer_task(values: pd.Series, task: str) -> None:
    assert infer_task(values) == task


# --- infer_schema: features -----------------------------------------------------------------------------------


def test_features_in_frame_order_without_the_target(schema: Schema, training: pd.DataFrame) -> None:
    assert schema.feature_names == ["age", "rooms", "income", "colour", "member"]
    assert schema.n_rows == len(training)
    assert [f.kind for f in schema.features] == ["numeric", "numeric", "numeric", "categorical", "boolean"]
    assert [f.dtype for f in schema.features] == ["float64", "int64", "float64", "str", "bool"]


def test_numeric_feature(schema: Schema, training: pd.DataFrame) -> None:
    age = schema.feature("age")
    assert age.nullable
    assert age.missing_ratio == pytest.approx(0.05)
    assert age.min == training["age"].min()
    assert age.max == training["age"].max()
    assert age.integer
    assert age.example == float(round(training["age"].median()))
    income = schema.feature("income")
    assert not income.nullable
    assert not income.integer
    assert income.missing_ratio == 0.0
    assert income.categories is None
    assert income.example == pytest.approx(training["income"].median(), rel=1e-3)


def test_categorical_feature(schema: Schema) -> None:
    colour = schema.feature("colour")
    assert colour.categories == ["red", "blue", "green", "pink"]
    assert colour.frequent_categories == ["red", "blue", "green"]  # pink is seen 4 < 5 times
    assert colour.example == "red"
    assert colour.min is None
    assert colour.max is None


def test_frequent_categories_respect_both_thresholds(training: pd.DataFrame) -> None:
    colour = infer_schema(training, "y", max_categories=2, min_category_count=1).feature("colour")
    assert colour.frequent_categories == ["red", "blue"]
    colour = infer_schema(training, "y", min_category_count=61).feature("colour")
    assert colour.frequent_categories == ["red"]


def test_category_ties_are_ordered_by_value() -> None:
    frame = pd.DataFrame({"c": ["b", "c", "a", "c", "b", "a", "d"], "y": [0, 1] * 3 + [0]})
    assert infer_schema(frame, "y").feature("c").categories == ["a", "b", "c", "d"]


def test_stored_categories_are_capped() -> None:
    frame = pd.DataFrame({"c": [f"v{i:04d}" for i in range(1200)] * 2, "y": [0, 1] * 1200})
    feature = infer_schema(frame, "y").feature("c")
    assert feature.categories is not None
    assert len(feature.categories) == 1000
    assert feature.frequent_categories == []


def test_boolean_feature(schema: Schema) -> None:
    member = schema.feature("member")
    assert member.example is False
    assert member.min is None
    assert isinstance(member.profile, CategoricalProfile)
    assert set(member.profile.frequencies) == {"true", "false"}
    assert member.profile.frequencies["true"] == pytest.approx(67 / 200)


def test_numeric_profiles_are_quantile_bins_summing_to_one(schema: Schema, training: pd.DataFrame) -> None:
    for name in ["age", "rooms", "income"]:
        profile = schema.feature(name).profile
        assert isinstance(profile, NumericProfile)
        assert len(profile.edges) == len(profile.proportions) + 1
        assert sum(profile.proportions) == pytest.approx(1.0)
        assert profile.edges[0] == training[name].min()
        assert profile.edges[-1] == training[name].max()
    income = schema.feature("income").profile
    assert isinstance(income, NumericProfile)
    assert len(income.proportions) == 10
    assert income.proportions == pytest.approx([0.1] * 10)
    age = schema.feature("age").profile
    assert isinstance(age, NumericProfile)
    assert age.missing == pytest.approx(0.05)


def test_profile_bins_argument(training: pd.DataFrame) -> None:
    profile = infer_schema(training, "y", profile_bins=4).feature("income").profile
    assert isinstance(profile, NumericProfile)
    assert profile.proportions == pytest.approx([0.25] * 4)


def test_categorical_profile_keeps_the_top_categories_and_sums_the_rest() -> None:
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c", "d"] + [None] * 2)
    profile = categorical_profile(values, top=2)
    assert list(profile.frequencies) == ["a", "b"]
    assert profile.frequencies["a"] == pytest.approx(0.5)
    assert profile.other == pytest.approx(0.2)
    assert profile.missing == pytest.approx(2 / 12)
    assert sum(profile.frequencies.values()) + profile.other == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("values", "bins", "edges", "proportions"),
    [
        ([5.0, 5.0, 5.0], 10, [5.0, 5.0], [1.0]),
        ([0, 0, 0, 0, 0, 0, 0, 0, 10, 20], 2, [0.0, 0.0, 20.0], [0.8, 0.2]),
        ([0, 0, 0, 0, 0, 0, 0, 0, 10, 20], 10, [0.0, 0.0, 2.0, 11.0, 20.0], [0.8, 0.0, 0.1, 0.1]),
        ([1, 2, 3, 4], 2, [1.0, 2.5, 4.0], [0.5, 0.5]),
        ([np.nan, np.nan], 10, [], []),
    ],
    ids=["constant", "mostly-zero", "mostly-zero-10-bins", "two-bins", "all-missing"],
)
def test_numeric_profile_edge_cases(
    values: list[float], bins: int, edges: list[float], proportions: list[float]
) -> None:
    profile = numeric_profile(np.array(values, dtype="float64"), bins=bins)
    assert profile.edges == pytest.approx(edges)
    assert profile.proportions == pytest.approx(proportions)


def test_bin_proportions_apply_reference_edges_with_open_outer_bins() -> None:
    profile = NumericProfile(edges=[0.0, 10.0, 20.0, 30.0], proportions=[0.3, 0.3, 0.4])
    values = pd.Series([-100.0, 0.0, 10.0, 10.5, 20.0, 25.0, 1000.0, np.nan])
    assert bin_proportions(profile, values) == pytest.approx([3 / 7, 2 / 7, 2 / 7])
    assert bin_proportions(profile, np.array([np.nan])) == [0.0, 0.0, 0.0]
    assert bin_proportions(NumericProfile(edges=[], proportions=[]), np.array([1.0])) == []


def test_bin_proportions_reproduce_the_reference_on_the_training_data(training: pd.DataFrame) -> None:
    profile = numeric_profile(training["age"], bins=10)
    assert bin_proportions(profile, training["age"]) == profile.proportions


# --- infer_schema: target -------------------------------------------------------------------------------------


def test_classification_target(schema: Schema) -> None:
    target = schema.target
    assert target.name == "y"
    assert target.task == "classification"
    assert target.labels == ["no", "yes"]
    assert target.dtype == "str"
    assert isinstance(target.profile, CategoricalProfile)
    assert target.profile.frequencies == {"no": 0.5, "yes": 0.5}


def test_regression_target(training: pd.DataFrame) -> None:
    schema = infer_schema(training, "income")
    assert schema.target.task == "regression"
    assert schema.target.labels is None
    assert schema.target.min == training["income"].min()
    assert schema.target.max == training["income"].max()
    assert isinstance(schema.target.profile, NumericProfile)
    assert "y" in schema.feature_names


def test_explicit_task_overrides_the_guess(training: pd.DataFrame) -> None:
    assert infer_schema(training, "rooms").target.task == "classification"
    assert infer_schema(training, "rooms", task="regression").target.task == "regression"


@pytest.mark.parametrize(
    ("labels", "kind"),
    [
        (["b", "a", "b"], str),
        ([2, 0, 1, 2], int),
        ([1.0, 0.0, 1.0], float),
        ([True, False, True], bool),
    ],
)
def test_labels_keep_their_type_through_json(tmp_path: Path, labels: list[object], kind: type) -> None:
    frame = pd.DataFrame({"x": np.arange(len(labels)) * 1.5, "y": labels})
    schema = infer_schema(frame, "y", task="classification")
    assert schema.target.labels == sorted(set(labels))  # type: ignore[type-var]
    path = tmp_path / "schema.json"
    schema.save(path)
    loaded = Schema.load(path)
    assert loaded == schema
    assert loaded.target.labels is not None
    assert all(type(label) is kind for label in loaded.target.labels)


def test_schema_json_round_trip(tmp_path: Path, schema: Schema) -> None:
    path = tmp_path / "schema.json"
    schema.save(path)
    assert Schema.load(path) == schema
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("frame", "task", "message"),
    [
        (pd.DataFrame({"x": [1, 2, 3], "y": ["a", "a", None]}), "auto", r"target 'y' has only one class: 'a'"),
        (pd.DataFrame({"x": [1, 2], "y": [None, None]}), "auto", r"target 'y' has no values"),
        (pd.DataFrame({"y": [0, 1]}), "auto", r"no feature columns left besides the target 'y'"),
        (pd.DataFrame({"x": [1, 2]}), "auto", r"target column 'y' not found; columns are: x"),
        (pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}), "regression", r"target 'y' is not numeric \(str\)"),
        (pd.DataFrame({"x": [1.0, np.inf], "y": [0, 1]}), "auto", r"feature 'x' has 1 infinite values"),
    ],
    ids=["one-class", "no-rows", "no-features", "no-target", "text-regression", "infinite"],
)
def test_infer_schema_errors(frame: pd.DataFrame, task: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        infer_schema(frame, "y", task=task)  # type: ignore[arg-type]


# --- the real data sets ---------------------------------------------------------------------------------------


@pytest.mark.datasets
def test_titanic_schema(datasets_dir: Path) -> None:
    frame, _ = clean(read_table(datasets_dir / "titanic.csv"), "Survived")
    schema = infer_schema(frame, "Survived")
    assert schema.target.task == "classification"
    assert schema.target.labels == [0, 1]
    assert "Name" not in schema.feature_names
    assert schema.feature("Age").missing_ratio == pytest.approx(0.199, abs=0.001)
    assert schema.feature("Sex").categories == ["male", "female"]
    assert schema.feature("Pclass").integer
    assert validate(frame, schema).ok
    assert prepare_features(frame, schema).shape == (891, len(schema.features))


@pytest.mark.datasets
def test_housing_schema(datasets_dir: Path) -> None:
    frame, _ = clean(read_table(datasets_dir / "housing.csv"), "median_house_value")
    schema = infer_schema(frame, "median_house_value")
    assert schema.target.task == "regression"
    assert schema.target.max == 500001.0
    assert schema.feature("total_bedrooms").missing_ratio == pytest.approx(207 / 20640)
    assert schema.feature("ocean_proximity").frequent_categories == [
        "<1H OCEAN",
        "INLAND",
        "NEAR OCEAN",
        "NEAR BAY",
        "ISLAND",
    ]


@pytest.mark.datasets
def test_penguins_schema(datasets_dir: Path) -> None:
    frame, _ = clean(read_table(datasets_dir / "penguins.json"), "Species")
    schema = infer_schema(frame, "Species")
    assert schema.target.labels == ["Adelie", "Chinstrap", "Gentoo"]
    sex = schema.feature("Sex")
    assert sex.categories == ["MALE", "FEMALE", "."]
    assert sex.frequent_categories == ["MALE", "FEMALE"]
    assert schema.feature("Body Mass (g)").kind == "numeric"
