"""Live drift: PSI, KS and Jensen-Shannon against the training profile, over bounded windows of recent values."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import CategoricalProfile, Schema
from fasttrack.serving.drift import (
    DEFAULT_PSI_THRESHOLD,
    PREDICTION,
    DriftMonitor,
    DriftValue,
    js_distance,
    population_stability_index,
)

COLOURS = ["red", "blue", "green", "pink"]
COLOUR_SHARES = [0.5, 0.3, 0.15, 0.05]


def frame(rows: int, seed: int, *, income_shift: float = 0.0, colours: list[str] | None = None) -> pd.DataFrame:
    """Rows from one fixed distribution (optionally with income shifted or other colours): every feature kind."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50.0 + income_shift, 10.0, rows)
    return pd.DataFrame(
        {
            "income": income,
            "rooms": rng.poisson(2, rows),
            "colour": rng.choice(colours or COLOURS, rows, p=None if colours else COLOUR_SHARES),
            "member": rng.random(rows) < 0.3,
            "label": np.where(income + rng.normal(0, 5, rows) > 50, "yes", "no"),
        }
    )


def records(data: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as JSON clients send them (plain Python values)."""
    return [
        {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
        for row in data.drop(columns="label").to_dict("records")
    ]


@pytest.fixture(scope="module")
def schema() -> Schema:
    return infer_schema(frame(5000, seed=0), "label")


@pytest.fixture(scope="module")
def regression_schema() -> Schema:
    data = frame(5000, seed=0).drop(columns="label")
    data["price"] = data["income"] * 3 + np.random.default_rng(1).normal(0, 5, len(data))
    return infer_schema(data, "price", "regression")


def scores(values: list[DriftValue]) -> dict[tuple[str, str], float]:
    return {(v.feature, v.method): v.value for v in values}


# --------------------------------------------------------------------------------------------- the monitor
def test_monitors_every_profiled_feature_and_the_prediction(schema: Schema) -> None:
    monitor = DriftMonitor(schema)
    assert monitor.features == ["income", "rooms", "colour", "member", PREDICTION]
    assert monitor.thresholds == dict.fromkeys(monitor.features, DEFAULT_PSI_THRESHOLD)


def test_in_distribution_traffic_shows_no_drift(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=1000)
    live = frame(1000, seed=7)
    monitor.observe(records(live))
    monitor.observe_predictions(live["label"].tolist())
    found = scores(monitor.compute())
    assert set(found) == {
        ("income", "psi"),
        ("income", "ks"),
        ("rooms", "psi"),
        ("rooms", "ks"),
        ("colour", "psi"),
        ("colour", "js"),
        ("member", "psi"),
        ("member", "js"),
        (PREDICTION, "psi"),
        (PREDICTION, "js"),
    }
    for (feature, method), value in found.items():
        assert value < {"psi": 0.05, "ks": 0.06, "js": 0.06}[method], (feature, method, value)


def test_only_the_drifted_feature_crosses_the_threshold(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=1000)
    monitor.observe(records(frame(1000, seed=8, income_shift=10.0)))
    found = scores(monitor.compute())
    over = {feature for (feature, method), value in found.items() if method == "psi" and value > 0.2}
    assert over == {"income"}
    assert found["income", "ks"] > 0.3
    assert found["rooms", "ks"] < 0.06


def test_unseen_categories_count_as_other(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=200, min_observations=100)
    profile = schema.feature("colour").profile
    assert isinstance(profile, CategoricalProfile)
    monitor.observe([{"colour": "purple"}] * 100 + [{"colour": "mauve"}] * 100)
    found = scores(monitor.compute())
    # Everything falls in the "other" bucket: [red, blue, green, pink, other, missing].
    everything_other = [0.0] * len(profile.frequencies) + [1.0, 0.0]
    reference = [*profile.frequencies.values(), profile.other, profile.missing]
    assert found["colour", "psi"] == pytest.approx(population_stability_index(reference, everything_other))
    assert found["colour", "js"] == pytest.approx(js_distance(reference, everything_other))
    assert found["colour", "psi"] > 1


def test_missing_values_are_a_bucket_of_their_own(schema: Schema) -> None:
    # The training data had no missing income; a window of only missing values is all drift, not "no data".
    monitor = DriftMonitor(schema, window=100, min_observations=100)
    monitor.observe([{"income": None, "colour": None}] * 100)
    found = scores(monitor.compute())
    assert found["income", "psi"] > 5
    assert ("income", "ks") not in found  # no present values to compare distributions
    assert found["colour", "psi"] > 5
    assert found["colour", "js"] == pytest.approx(1.0)


def test_boolean_features_accept_booleans_numbers_and_text(schema: Schema) -> None:
    rng = np.random.default_rng(9)
    flags = (rng.random(1000) < 0.3).tolist()
    as_booleans, as_numbers, as_text = (DriftMonitor(schema) for _ in range(3))
    as_booleans.observe([{"member": f} for f in flags])
    as_numbers.observe([{"member": int(f)} for f in flags])
    as_text.observe([{"member": "TRUE" if f else "false"} for f in flags])
    values = [scores(m.compute())["member", "psi"] for m in (as_booleans, as_numbers, as_text)]
    assert values[0] < 0.05
    assert values == pytest.approx([values[0]] * 3)


def test_nothing_is_reported_before_min_observations(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=1000, min_observations=100)
    live = records(frame(100, seed=10))
    monitor.observe(live[:99])
    assert monitor.compute() == []
    monitor.observe(live[99:])
    assert {v.feature for v in monitor.compute()} == {"income", "rooms", "colour", "member"}
    assert monitor.observations() == {"income": 100, "rooms": 100, "colour": 100, "member": 100, PREDICTION: 0}


def test_the_window_keeps_only_the_most_recent_rows(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=500, min_observations=100)
    monitor.observe(records(frame(2000, seed=11, income_shift=20.0)))
    assert monitor.observations()["income"] == 500
    assert scores(monitor.compute())["income", "psi"] > 1
    monitor.observe(records(frame(500, seed=12)))  # pushes every drifted row out
    assert scores(monitor.compute())["income", "psi"] < 0.1


def test_observe_columns_is_observe_by_column(schema: Schema) -> None:
    live = frame(300, seed=13)
    by_rows, by_columns = DriftMonitor(schema), DriftMonitor(schema)
    by_rows.observe(records(live))
    by_columns.observe_columns({name: live[name].to_numpy() for name in ("income", "rooms", "colour", "member")})
    assert by_rows.compute() == by_columns.compute()
    absent = DriftMonitor(schema, window=100)
    absent.observe_columns({"income": live["income"].to_numpy()[:100]})
    assert scores(absent.compute())["colour", "js"] == pytest.approx(1.0)  # absent columns are missing values


def test_classification_predictions_against_the_target_profile(schema: Schema) -> None:
    monitor = DriftMonitor(schema)
    monitor.observe_predictions(["yes"] * 1000)
    found = scores(monitor.compute())
    assert found[PREDICTION, "psi"] > 1
    assert 0.3 < found[PREDICTION, "js"] < 1


def test_numeric_class_labels_match_whatever_their_type() -> None:
    data = frame(2000, seed=14)
    data["label"] = (data["label"] == "yes").astype(float)  # a 0.0/1.0 target: its profile keys are "0.0", "1.0"
    numeric_schema = infer_schema(data, "label", "classification")
    labels = data["label"].iloc[:1000]
    as_floats, as_ints, as_text = (DriftMonitor(numeric_schema) for _ in range(3))
    as_floats.observe_predictions(labels.tolist())
    as_ints.observe_predictions(labels.astype(int).tolist())
    as_text.observe_predictions(labels.astype(str).tolist())
    values = [scores(m.compute())[PREDICTION, "psi"] for m in (as_floats, as_ints, as_text)]
    assert values[0] < 0.05
    assert values == pytest.approx([values[0]] * 3)


def test_regression_predictions_against_the_target_bins(regression_schema: Schema) -> None:
    data = frame(1000, seed=15)
    monitor = DriftMonitor(regression_schema)
    monitor.observe_predictions((data["income"] * 3).tolist())
    found = scores(monitor.compute())
    assert set(found) >= {(PREDICTION, "psi"), (PREDICTION, "ks")}
    assert found[PREDICTION, "psi"] < 0.1
    shifted = DriftMonitor(regression_schema)
    shifted.observe_predictions((data["income"] * 3 + 60).tolist())
    assert scores(shifted.compute())[PREDICTION, "psi"] > DEFAULT_PSI_THRESHOLD


def test_thresholds_are_per_feature_and_refuse_unknown_names(schema: Schema) -> None:
    monitor = DriftMonitor(schema, thresholds={"income": 0.5, PREDICTION: 0.1}, default_threshold=0.25)
    assert monitor.thresholds["income"] == 0.5
    assert monitor.thresholds[PREDICTION] == 0.1
    assert monitor.thresholds["colour"] == 0.25
    with pytest.raises(ValueError, match="incme"):
        DriftMonitor(schema, thresholds={"incme": 0.3})


@pytest.mark.parametrize(("window", "min_observations"), [(0, 1), (100, 0), (100, 101)])
def test_window_settings_are_checked(schema: Schema, window: int, min_observations: int) -> None:
    with pytest.raises(ValueError):
        DriftMonitor(schema, window=window, min_observations=min_observations)


def test_compute_reuses_its_result_until_something_new_is_observed(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=1000)
    live = records(frame(400, seed=16))
    monitor.observe(live[:200])
    first = monitor.compute()
    assert monitor.compute() == first
    monitor.observe(live[200:])
    assert monitor.compute() != first


def test_concurrent_appends_and_computes(schema: Schema) -> None:
    monitor = DriftMonitor(schema, window=500, min_observations=50)
    live = records(frame(200, seed=17))
    labels = ["yes", "no"] * 100
    errors: list[BaseException] = []

    def append() -> None:
        try:
            for _ in range(50):
                monitor.observe(live)
                monitor.observe_predictions(labels)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def compute() -> None:
        try:
            for _ in range(30):
                for value in monitor.compute():
                    assert np.isfinite(value.value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append) for _ in range(3)] + [threading.Thread(target=compute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(monitor.observations().values()) == {500}
    assert len(monitor.compute()) == 10
