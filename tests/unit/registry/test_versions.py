"""Registered versions against a real embedded MLflow store: registration order, aliases, listing, promotion."""

from __future__ import annotations

import pytest

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError
from fasttrack.registry import runs, versions
from fasttrack.training.train import TrainResult


def log(result: TrainResult, settings: Settings) -> runs.TrackedRun:
    return runs.log_training(result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)


def test_later_versions_keep_the_champion_until_promoted(good_result: TrainResult, settings: Settings) -> None:
    log(good_result, settings)
    second = log(good_result, settings)
    assert (second.version, second.aliases) == ("2", [])
    rows = versions.list_versions(settings, "toy")
    assert [(r.version, r.aliases) for r in rows] == [("2", []), ("1", ["champion"])]
    assert rows[0].primary_metric == "roc_auc"
    assert rows[0].primary_metric_value == pytest.approx(good_result.evaluation.metrics["roc_auc"])

    versions.promote(settings, "toy", "2")
    assert [(r.version, r.aliases) for r in versions.list_versions(settings)] == [("2", ["champion"]), ("1", [])]


def test_promoting_a_missing_version_says_so(good_result: TrainResult, settings: Settings) -> None:
    log(good_result, settings)
    with pytest.raises(ModelNotFoundError, match="promoting toy version 7"):
        versions.promote(settings, "toy", "7")


def test_an_empty_registry_lists_nothing(settings: Settings) -> None:
    assert versions.list_versions(settings) == []


def test_a_registered_model_without_versions_is_listed_not_hidden(good_result: TrainResult, settings: Settings) -> None:
    """What a registration killed between MLflow's two calls (the model, then its version) leaves."""
    from fasttrack.registry.store import client

    log(good_result, settings)
    client(settings).create_registered_model("empty")
    rows = versions.list_versions(settings)
    assert [(r.name, r.version, r.aliases) for r in rows] == [("empty", None, []), ("toy", "1", ["champion"])]
    assert [(r.name, r.version) for r in versions.list_versions(settings, "empty")] == [("empty", None)]
