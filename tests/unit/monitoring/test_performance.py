"""Calibration judged: whether a classifier's accuracy estimate is trusted, and the sentence that says why."""

from __future__ import annotations

import numpy as np
import pytest

from fasttrack.config import Settings
from fasttrack.monitoring.performance import (
    DEFAULT_MAX_CALIBRATION_ERROR,
    Calibration,
    calibration,
    calibration_verdict,
)


def recorded(error_rows: int) -> Calibration:
    """A calibration of 100 rows with confidence 0.9 each, of which ``90 - error_rows`` were right."""
    probabilities = np.tile([0.9, 0.1], (100, 1))
    correct = np.arange(100) < 90 - error_rows
    return calibration(probabilities, correct)


def test_the_setting_defaults_to_the_modules_maximum() -> None:
    # config.py spells the default out rather than importing numpy at start-up: the two must agree.
    assert Settings.model_fields["calibration_max_error"].default == DEFAULT_MAX_CALIBRATION_ERROR


def test_a_calibration_within_the_maximum_is_trusted() -> None:
    calib = recorded(error_rows=2)  # accuracy 0.88 at confidence 0.9: ECE 0.02
    verdict = calibration_verdict(calib, 0.05)
    assert verdict.trusted and verdict.error == pytest.approx(0.02)
    assert "0.020 on 100 held-out rows is within FASTTRACK_CALIBRATION_MAX_ERROR (0.05)" in verdict.reason
    assert verdict.as_dict() == {"error": verdict.error, "trusted": True, "reason": verdict.reason}


def test_a_calibration_above_the_maximum_is_not_trusted_and_says_so() -> None:
    calib = recorded(error_rows=20)  # accuracy 0.70 at confidence 0.9: ECE 0.20
    verdict = calibration_verdict(calib, 0.05)
    assert not verdict.trusted and verdict.error == pytest.approx(0.2)
    assert "0.200 on 100 held-out rows is above FASTTRACK_CALIBRATION_MAX_ERROR (0.05)" in verdict.reason
    assert "no accuracy is estimated" in verdict.reason
    # The same model under a looser setting is trusted: the setting decides, not the module.
    assert calibration_verdict(calib, 0.25).trusted


def test_the_boundary_is_inclusive() -> None:
    calib = recorded(error_rows=5)
    assert calibration_verdict(calib, calib.error).trusted
    assert not calibration_verdict(calib, calib.error - 1e-9).trusted


def test_a_model_without_recorded_calibration_is_not_trusted() -> None:
    verdict = calibration_verdict(None)
    assert (verdict.error, verdict.trusted, verdict.max_error) == (None, False, DEFAULT_MAX_CALIBRATION_ERROR)
    assert verdict.reason.startswith("no calibration was recorded at training")
