"""Drift statistics: the measures (PSI, Jensen-Shannon, KS at the profile's edges) and their vectorised forms over
bucket counts, which must give the same numbers as the one-distribution functions."""

from __future__ import annotations

import numpy as np
import pytest

from fasttrack.data.describe import categorical_profile, numeric_profile
from fasttrack.data.schema import NumericProfile, bin_proportions
from fasttrack.monitoring.statistics import (
    DEFAULT_PSI_THRESHOLD,
    PSI_EPSILON,
    CategoricalReference,
    NumericReference,
    boolean_text,
    js_distance,
    js_rows,
    ks_statistic,
    numeric_label_text,
    population_stability_index,
    psi_rows,
    window_counts,
)


def ks(profile: NumericProfile, values: np.ndarray) -> float:
    value = ks_statistic(profile, values)
    assert value is not None
    return value


def test_psi_is_zero_for_equal_distributions_and_grows_with_the_shift() -> None:
    assert population_stability_index([0.25] * 4, [0.25] * 4) == 0.0
    small = population_stability_index([0.25] * 4, [0.3, 0.2, 0.25, 0.25])
    large = population_stability_index([0.25] * 4, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < 0.1 < DEFAULT_PSI_THRESHOLD < large
    # Counts and shares give the same index.
    assert population_stability_index([1, 1, 2], [30, 20, 50]) == pytest.approx(
        population_stability_index([0.25, 0.25, 0.5], [0.3, 0.2, 0.5])
    )


def test_psi_counts_empty_buckets_with_epsilon() -> None:
    # A bucket that empties (10% -> 0%) adds about 0.1 * ln(0.1 / epsilon); buckets empty on both sides add nothing.
    value = population_stability_index([0.9, 0.1, 0.0], [1.0, 0.0, 0.0])
    expected = (1.0 - 0.9) * np.log(1.0 / 0.9) + (PSI_EPSILON - 0.1) * np.log(PSI_EPSILON / 0.1)
    assert value == pytest.approx(expected)
    assert np.isfinite(value)


def test_js_distance_is_a_bounded_symmetric_distance() -> None:
    assert js_distance([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert js_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    p, q = [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]
    assert js_distance(p, q) == pytest.approx(js_distance(q, p))
    assert 0 < js_distance(p, q) < 1
    assert js_distance(p, [0.55, 0.35, 0.1]) < js_distance(p, q)


def test_ks_is_small_for_the_reference_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(3)
    profile = numeric_profile(rng.normal(0, 1, 5000), 10)
    assert ks(profile, rng.normal(0, 1, 1000)) < 0.06
    assert ks(profile, rng.normal(1, 1, 1000)) > 0.3
    assert ks(profile, rng.normal(0, 3, 1000)) > 0.15


def test_ks_is_not_biased_on_whole_number_features() -> None:
    # Linear interpolation within bins would read ~0.25 here; measured at the bin edges it is sampling noise.
    rng = np.random.default_rng(4)
    profile = numeric_profile(rng.poisson(2, 5000).astype(float), 10)
    assert ks(profile, rng.poisson(2, 1000).astype(float)) < 0.06
    assert ks(profile, rng.poisson(4, 1000).astype(float)) > 0.3


def test_ks_ignores_missing_values_and_needs_some() -> None:
    profile = numeric_profile(np.arange(100.0), 10)
    assert ks_statistic(profile, np.array([np.nan, np.nan])) is None
    with_missing = np.concatenate([np.arange(100.0), [np.nan] * 50])
    assert ks(profile, with_missing) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------ the vectorised forms
def test_rows_of_counts_score_as_each_distribution_alone() -> None:
    rng = np.random.default_rng(5)
    expected = rng.random(7)
    counts = rng.integers(0, 50, (12, 7))
    counts[3] = 0  # an empty window
    counts[4, :3] = 0
    psi = psi_rows(expected, counts)
    js = js_rows(expected, counts)
    for row in range(counts.shape[0]):
        assert psi[row] == pytest.approx(population_stability_index(expected, counts[row]))
        assert js[row] == pytest.approx(js_distance(expected, counts[row]))


def test_window_counts_are_one_bincount_per_window() -> None:
    buckets = np.array([0, 1, 1, 2, 0, 2, 2])
    windows = np.array([0, 0, 1, 1, 2, 2, -1])  # a negative window is left out
    counts = window_counts(buckets, 3, windows, 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert window_counts(buckets, 4).tolist() == [[2, 2, 3, 0]]


def test_numeric_buckets_are_the_profiles_bins_with_open_ends_and_missing() -> None:
    rng = np.random.default_rng(6)
    profile = numeric_profile(rng.normal(0, 1, 2000), 10)
    reference = NumericReference(profile)
    live = np.concatenate([rng.normal(0.5, 2, 3000), [np.nan] * 300, [100.0, -100.0]])
    counts = reference.counts(live)
    assert counts.size == reference.bins + 2 and counts.sum() == live.size
    assert counts[-1] == 300 and counts[reference.bins] >= 1  # missing; above the training maximum
    # The PSI buckets are bin_proportions' bins (above the maximum in the last) scaled by the present share.
    shares = reference.shares(counts[None, :])[0]
    present = 1 - 300 / live.size
    assert shares[:-1] == pytest.approx(np.asarray(bin_proportions(profile, live)) * present)
    assert shares[-1] == pytest.approx(300 / live.size)
    assert reference.ks_rows(counts[None, :])[0] == pytest.approx(ks(profile, live))


def test_numeric_psi_and_ks_per_window_match_each_window_alone() -> None:
    rng = np.random.default_rng(7)
    profile = numeric_profile(rng.poisson(3, 3000).astype(float), 10)
    reference = NumericReference(profile)
    values = np.concatenate([rng.poisson(3, 500), rng.poisson(6, 500)]).astype(float)
    windows = np.repeat([0, 1], 500)
    counts = window_counts(reference.buckets(values), reference.size, windows, 2)
    scores = reference.scores(counts)
    for window in (0, 1):
        alone = reference.scores(reference.counts(values[windows == window])[None, :])
        assert scores["psi"][window] == pytest.approx(alone["psi"][0])
        assert scores["ks"][window] == pytest.approx(ks(profile, values[windows == window]))
    assert scores["psi"][0] < 0.1 < DEFAULT_PSI_THRESHOLD < scores["psi"][1]


def test_categorical_codes_floats_and_raw_values_land_in_the_same_buckets() -> None:
    import pandas as pd

    profile = categorical_profile(pd.Series(["red"] * 50 + ["blue"] * 30 + ["green"] * 20 + [None] * 10))
    reference = CategoricalReference(profile)
    assert reference.names == ["red", "blue", "green", "(other)", "(missing)"]
    raw = ["red", " blue ", "purple", None, "red"]
    by_value = reference.value_counts(raw)
    codes = np.array([0, 1, 2, -1, 0])
    by_code = np.bincount(reference.code_buckets(codes, ["red", "blue", "purple"]), minlength=reference.size)
    assert by_value.tolist() == by_code.tolist() == [2, 1, 0, 1, 1]
    flags = CategoricalReference(categorical_profile(pd.Series([True, False, True])), boolean_text)
    buckets = flags.float_buckets(np.array([1.0, 0.0, np.nan, 1.0]))
    assert [flags.names[b] for b in buckets] == ["true", "false", "(missing)", "true"]


def test_canonical_texts_of_booleans_and_float_labels() -> None:
    assert [boolean_text(v) for v in (True, 0, "TRUE", 1.0, "maybe", None)] == [
        "true",
        "false",
        "true",
        "true",
        "maybe",
        None,
    ]
    assert numeric_label_text("1.0") == numeric_label_text(1) == numeric_label_text(1.0) == "1"
    assert numeric_label_text("yes") == "yes"
