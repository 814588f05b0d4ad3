"""Evaluation plots: the right files, real PNGs, no global matplotlib state touched."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fasttrack.monitoring.performance import calibration
from fasttrack.training.plots import save_plots, save_prediction_plots
from fasttrack.training.train import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("prepared_input")


def _assert_pngs(paths: list[Path], names: list[str]) -> None:
    assert [p.name for p in paths] == names
    for path in paths:
        assert path.is_file()
        assert path.stat().st_size > 5_000
        assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_binary_classification_plots(make_data: Any, train_config: Any, tmp_path: Path) -> None:
    data = make_data("classification")
    result = train(data.frame, train_config("linear", cv_folds=0), data.schema)
    paths = save_plots(result, tmp_path / "plots")
    _assert_pngs(paths, ["confusion_matrix.png", "roc_curve.png", "reliability_curve.png"])


def test_multiclass_plots_have_no_roc_curve(make_data: Any, train_config: Any, tmp_path: Path) -> None:
    data = make_data("classification", labels=("Adelie", "Chinstrap", "Gentoo"))
    result = train(data.frame, train_config("linear", cv_folds=0), data.schema)
    _assert_pngs(save_plots(result, tmp_path), ["confusion_matrix.png", "reliability_curve.png"])


def test_regression_plots(make_data: Any, train_config: Any, tmp_path: Path) -> None:
    data = make_data("regression")
    result = train(data.frame, train_config("linear", cv_folds=0), data.schema)
    _assert_pngs(save_plots(result, tmp_path), ["predicted_vs_actual.png", "residuals.png"])


def test_plots_from_arrays_without_probabilities(tmp_path: Path) -> None:
    y_true = np.array([0, 1, 1, 0, 1] * 10)
    y_pred = np.array([0, 1, 0, 0, 1] * 10)
    paths = save_prediction_plots(tmp_path, task="classification", y_true=y_true, y_pred=y_pred)
    _assert_pngs(paths, ["confusion_matrix.png"])


def test_many_classes_still_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [f"class {i}" for i in range(25)]
    y_true = rng.choice(labels, 300)
    y_pred = rng.choice(labels, 300)
    paths = save_prediction_plots(tmp_path, task="classification", y_true=y_true, y_pred=y_pred, labels=labels)
    _assert_pngs(paths, ["confusion_matrix.png"])


def test_pyplot_state_is_untouched(make_data: Any, train_config: Any, tmp_path: Path) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    data = make_data("regression", rows=60)
    save_plots(train(data.frame, train_config("linear", cv_folds=0), data.schema), tmp_path)
    assert matplotlib.get_backend() == backend
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


class _NoPredictions:
    """A stand-in pipeline that refuses to predict."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the plots predicted again ({name})")


def test_plots_use_the_predictions_training_kept(make_data: Any, train_config: Any, tmp_path: Path) -> None:
    data = make_data("classification")
    result = train(data.frame, train_config("linear", cv_folds=0), data.schema)
    assert result.test_predictions is not None
    kept = dataclasses.replace(result, pipeline=_NoPredictions())
    _assert_pngs(
        save_plots(kept, tmp_path / "kept"), ["confusion_matrix.png", "roc_curve.png", "reliability_curve.png"]
    )
    # A result without kept predictions (made by hand, say) is predicted again.
    bare = dataclasses.replace(result, test_predictions=None, test_proba=None)
    _assert_pngs(
        save_plots(bare, tmp_path / "bare"), ["confusion_matrix.png", "roc_curve.png", "reliability_curve.png"]
    )


def test_the_reliability_curve_draws_the_recorded_calibration(tmp_path: Path) -> None:
    # Drawn from the calibration alone (no predictions needed), empty bins included; and absent without one.
    recorded = calibration(np.array([[0.95, 0.05]] * 30 + [[0.4, 0.6]] * 20), [True] * 27 + [False] * 3 + [True] * 20)
    y_true = np.array(["a", "b"] * 25)
    paths = save_prediction_plots(tmp_path, task="classification", y_true=y_true, y_pred=y_true, calibration=recorded)
    _assert_pngs(paths, ["confusion_matrix.png", "reliability_curve.png"])
    without = save_prediction_plots(tmp_path / "without", task="classification", y_true=y_true, y_pred=y_true)
    assert [p.name for p in without] == ["confusion_matrix.png"]
