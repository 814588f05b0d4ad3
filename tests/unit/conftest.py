"""Unit-test fixtures shared across packages: real small models registered in a temporary embedded store, and the
served predictors of them (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import serving_settings, trained_home


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FastTrack home whose store holds ``sample``, ``sample-regression`` and ``mixed`` (version 1 each)."""
    return trained_home(tmp_path_factory.getbasetemp())


def _load(name: str, home: Path) -> Predictor:
    return Predictor.load(f"models:/{name}/1", serving_settings(home), ServerMetrics())


@pytest.fixture(scope="session")
def classifier(model_home: Path) -> Predictor:
    """The bundled sample classifier (feature_1, feature_2 -> negative/positive)."""
    return _load("sample", model_home)


@pytest.fixture(scope="session")
def regressor(model_home: Path) -> Predictor:
    """The bundled sample regressor (x -> y)."""
    return _load("sample-regression", model_home)


@pytest.fixture(scope="session")
def mixed(model_home: Path) -> Predictor:
    """A classifier over every feature kind: amount (nullable numeric), colour (categorical), member (boolean)."""
    return _load("mixed", model_home)
