"""Small predictions on one OpenMP thread; big ones, and everything outside the block, untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: F401 - loads scikit-learn's OpenMP runtime
from threadpoolctl import threadpool_info, threadpool_limits

from fasttrack.training.threads import SMALL_PREDICTION_ROWS, prediction_threads


def openmp_threads() -> set[int]:
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "openmp"}


@pytest.fixture(autouse=True)
def two_openmp_threads() -> Iterator[None]:
    """Undo the training suite's one-thread limit, so that a limit inside the test can be seen."""
    if not openmp_threads():
        pytest.skip("no OpenMP runtime loaded")
    with threadpool_limits(limits=2, user_api="openmp"):
        yield


def test_small_predictions_run_on_one_thread() -> None:
    assert openmp_threads() == {2}
    with prediction_threads(5):
        assert openmp_threads() == {1}
    with prediction_threads(SMALL_PREDICTION_ROWS):
        assert openmp_threads() == {1}
    assert openmp_threads() == {2}


def test_big_predictions_keep_every_thread() -> None:
    with prediction_threads(SMALL_PREDICTION_ROWS + 1):
        assert openmp_threads() == {2}
