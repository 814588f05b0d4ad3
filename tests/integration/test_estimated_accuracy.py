"""The accuracy estimated before labels arrive, on real public data sets: the server's estimate against the accuracy
of its own answers on traffic the model never saw (docs/estimated-performance.md gives the figures of every model
kind; bench/estimated_accuracy.py measures them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import Settings, TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import ingest
from fasttrack.registry.model_folder import DataLineage, load_model_folder, metadata_for, save_model_folder
from fasttrack.registry.resolve import ResolvedModel
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from fasttrack.training.train import train

pytestmark = [pytest.mark.datasets, pytest.mark.integration]

#: Share of each file set aside (seeded) as live traffic, never trained on nor used to measure the calibration.
TRAFFIC_SHARE = 0.3


@pytest.mark.parametrize(
    ("file", "target", "model"),
    # The best-calibrated of the adult models, its most overconfident (the largest gap measured), and bank's linear
    # model (the largest recorded ECE): docs/estimated-performance.md has every kind.
    [
        ("adult.csv", "income", "hist_gradient_boosting"),
        ("adult.csv", "income", "xgboost"),
        ("bank.csv", "y", "linear"),
    ],
)
def test_the_estimate_lands_near_the_real_accuracy_on_real_data(
    datasets_dir: Path, tmp_path: Path, file: str, target: str, model: str
) -> None:
    frame = ingest(str(datasets_dir / file), target=target).frame
    traffic_rows = np.random.default_rng(0).random(len(frame)) < TRAFFIC_SHARE
    fit_frame = frame.loc[~traffic_rows].reset_index(drop=True)
    traffic = frame.loc[traffic_rows].reset_index(drop=True)
    config = TrainConfig(data=str(datasets_dir / file), target=target, name="real", model=model, cv_folds=0)
    result = train(fit_frame, config, infer_schema(fit_frame, target, "classification"))
    lineage = DataLineage(source=file, fingerprint="test", rows=len(fit_frame), columns=len(frame.columns))
    folder = save_model_folder(result, tmp_path / "model", metadata_for(result, name="real", data=lineage))
    settings = Settings.model_construct().model_copy(update={"drift_window": len(traffic), "drift_min_rows": 100})
    predictor = Predictor(
        load_model_folder(folder),
        ResolvedModel(uri=str(folder), path=folder),
        metrics=ServerMetrics(),
        settings=settings,
    )
    recorded = result.evaluation.calibration
    assert recorded is not None and predictor.calibration is not None
    assert predictor.calibration.trusted, predictor.calibration.reason
    assert predictor.estimate is not None

    features = traffic.drop(columns=[target])
    records: list[dict[str, Any]] = features.astype(object).where(pd.notna(features), None).to_dict("records")
    answers: list[Any] = []
    for start in range(0, len(records), 100):
        answers.extend(predictor.predict(records[start : start + 100]).values)
    estimate = predictor.estimate.estimate()
    assert estimate is not None
    accuracy = float(np.mean(np.asarray([str(a) for a in answers]) == traffic[target].astype(str).to_numpy()))
    # Three standard errors of an accuracy over this many rows (the real figure's own noise), plus the calibration
    # error the model was trusted with: on real data no model is exactly calibrated, and the estimate inherits the
    # gap training measured (a model on the diagonal would need the first term only).
    allowed = 3 * math.sqrt(accuracy * (1 - accuracy) / len(traffic)) + recorded.error
    assert abs(estimate - accuracy) <= allowed, (estimate, accuracy, allowed)
