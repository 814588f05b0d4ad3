"""Registry fixtures: an embedded MLflow store in a temporary folder, and a small trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import Settings, TrainConfig, get_settings
from fasttrack.data.describe import infer_schema
from fasttrack.training.train import TrainResult, train


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose embedded store lives in ``tmp_path`` (MLflow's own variables cleared)."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI", "FASTTRACK_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return get_settings(home=tmp_path / "home")


def make_frame(rows: int = 300, seed: int = 0, noise: bool = False) -> pd.DataFrame:
    """Two numeric features and a colour; ``label`` follows ``a - b`` unless ``noise``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows)
    b = rng.normal(0, 1, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    signal = rng.random(rows) - 0.5 if noise else a - b + rng.normal(0, 0.3, rows)
    return pd.DataFrame({"a": a, "b": b, "colour": colour, "label": np.where(signal > 0, "yes", "no")})


def fit(frame: pd.DataFrame, **overrides: object) -> TrainResult:
    """Train a quick linear model on ``frame`` (config overrides allowed)."""
    values: dict[str, object] = {"data": "memory://toy.csv", "target": "label", "name": "toy", "model": "linear"}
    values.update(overrides)
    config = TrainConfig.model_validate({**values, "cv_folds": 0})
    return train(frame, config, infer_schema(frame, "label", "auto"))


@pytest.fixture(scope="module")
def good_result() -> TrainResult:
    """A model that passes the gate."""
    return fit(make_frame())


@pytest.fixture(scope="module")
def failing_result() -> TrainResult:
    """A model on pure noise with an accuracy threshold it cannot reach: the gate fails."""
    return fit(make_frame(noise=True), thresholds={"accuracy": 0.99})
