"""Promotion's side of the registry against a real embedded store: the standing, the held-out rows, the record."""

from __future__ import annotations

import numpy as np
import pytest

from fasttrack.config import Settings
from fasttrack.errors import AliasMovedError, ConfigError, ModelNotFoundError
from fasttrack.registry import promotion, runs, versions
from fasttrack.registry.history import Comparison, read_history
from fasttrack.registry.promotion import Contender, PromotionResult, held_out_rows, record_promotion, standing
from fasttrack.registry.store import client
from fasttrack.training.train import TrainResult


@pytest.fixture
def two_versions(good_result: TrainResult, settings: Settings) -> Settings:
    """``toy`` versions 1 (the champion) and 2."""
    for _ in range(2):
        runs.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    return settings


def test_the_standing_names_the_alias_holder(two_versions: Settings) -> None:
    settings = two_versions
    assert standing(settings, "toy", "2", "champion") == promotion.Standing("2", "1")
    assert standing(settings, "toy", "2", "staging") == promotion.Standing("2", None)
    assert promotion.model_target(settings, "toy", "2") == "label"
    with pytest.raises(ModelNotFoundError):
        standing(settings, "toy", "9", "champion")
    with pytest.raises(ModelNotFoundError):
        standing(settings, "nothing", "1", "champion")


def test_the_held_out_rows_are_the_runs_test_part(good_result: TrainResult, two_versions: Settings) -> None:
    rows = held_out_rows(two_versions, "toy", "2")
    assert list(rows.columns) == [*good_result.X_test.columns, "label"]
    assert len(rows) == good_result.test_rows


def test_the_training_rows_are_the_runs_record(good_result: TrainResult, two_versions: Settings) -> None:
    run_id = client(two_versions).get_model_version("toy", "2").run_id
    assert run_id is not None
    recorded = promotion.run_training_rows(two_versions, run_id)
    assert recorded is not None and good_result.training_rows is not None
    assert np.array_equal(recorded.hashes, good_result.training_rows.hashes)
    assert (recorded.rows, recorded.columns) == (good_result.train_rows, good_result.training_rows.columns)


def test_a_run_without_a_record_of_its_training_rows_has_none(
    two_versions: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(promotion, "TRAIN_ROWS_ARTIFACT", "reports/none.parquet")
    run_id = client(two_versions).get_model_version("toy", "2").run_id
    assert run_id is not None
    assert promotion.run_training_rows(two_versions, run_id) is None


def test_a_run_without_held_out_rows_asks_for_data(two_versions: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promotion, "HOLDOUT_ARTIFACT", "reports/none.parquet")
    with pytest.raises(ConfigError, match="--data FILE"):
        held_out_rows(two_versions, "toy", "2")


def decision(decision: promotion.Decision) -> PromotionResult:
    return PromotionResult(
        name="toy",
        alias="champion",
        decision=decision,
        reason="because",
        challenger=Contender("2", 0.9, {"roc_auc": 0.9}),
        champion=Contender("1", 0.8, {"roc_auc": 0.8}),
        metric="roc_auc",
        margin=0.01,
        data="fresh.csv",
        rows=60,
        decided_at="2026-12-03T00:00:00+00:00",
        excluded=15,
        improvement=0.1,
        interval=(0.04, 0.16),
        confidence=0.95,
        resamples=1000,
        unrecorded=("1",),
    )


def tags(settings: Settings, version: str) -> dict[str, str]:
    found = client(settings).get_model_version("toy", version).tags
    return {k.removeprefix(promotion.TAG_PREFIX): v for k, v in found.items() if k.startswith(promotion.TAG_PREFIX)}


def holder(settings: Settings) -> str:
    return str(client(settings).get_model_version_by_alias("toy", "champion").version)


def test_a_rejection_is_recorded_on_both_versions_and_moves_nothing(two_versions: Settings) -> None:
    record_promotion(two_versions, decision("rejected"))
    assert holder(two_versions) == "1"
    challenger, champion = tags(two_versions, "2"), tags(two_versions, "1")
    assert (challenger["role"], champion["role"]) == ("challenger", "champion")
    for recorded in (challenger, champion):
        assert recorded["decision"] == "rejected"
        assert (recorded["challenger_version"], recorded["champion_version"]) == ("2", "1")
        assert (recorded["challenger_score"], recorded["champion_score"]) == ("0.9", "0.8")
        assert (recorded["metric"], recorded["margin"], recorded["data"], recorded["rows"]) == (
            "roc_auc",
            "0.01",
            "fresh.csv",
            "60",
        )
        assert (recorded["excluded"], recorded["improvement"], recorded["interval_low"]) == ("15", "0.1", "0.04")
        assert (recorded["interval_high"], recorded["confidence"], recorded["resamples"]) == ("0.16", "0.95", "1000")
        assert recorded["unrecorded"] == "1"


def test_a_promotion_moves_the_alias(two_versions: Settings) -> None:
    record_promotion(two_versions, decision("promoted"))
    assert holder(two_versions) == "2"
    assert tags(two_versions, "2")["decision"] == "promoted"


def test_nothing_is_recorded_for_the_holder_itself(two_versions: Settings) -> None:
    before = read_history(two_versions, "toy").events
    held = PromotionResult("toy", "champion", "already-champion", "held", Contender("1"))
    assert record_promotion(two_versions, held) is None
    assert tags(two_versions, "1") == {} and holder(two_versions) == "1"
    assert read_history(two_versions, "toy").events == before


def test_the_decision_is_an_event_of_the_alias_history(two_versions: Settings) -> None:
    event = record_promotion(two_versions, decision("promoted"))
    assert event is not None
    recorded = read_history(two_versions, "toy").events[-1]
    assert recorded == event
    assert (recorded.before, recorded.after, recorded.decision, recorded.reason) == ("1", "2", "promoted", "because")
    assert recorded.comparison == Comparison("roc_auc", "2", 0.9, "1", 0.8, margin=0.01, data="fresh.csv", rows=60)


def test_a_decision_against_a_champion_that_is_gone_moves_and_records_nothing(two_versions: Settings) -> None:
    versions.promote(two_versions, "toy", "2")  # another promotion got there first
    before = read_history(two_versions, "toy").events
    for outcome in ("promoted", "rejected"):
        with pytest.raises(AliasMovedError, match="pointed at version 1, now at version 2") as moved:
            record_promotion(two_versions, decision(outcome))  # type: ignore[arg-type]
        assert moved.value.holder == "2"
    assert holder(two_versions) == "2"
    assert tags(two_versions, "1") == {} and tags(two_versions, "2") == {}
    assert read_history(two_versions, "toy").events == before
