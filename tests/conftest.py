"""Shared fixtures: where the real public data sets are, and small generated data."""

from __future__ import annotations

from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The folder of real public data sets (``../shared/datasets``), skipping the test where it is absent."""
    if not DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {DATASETS} (CI always has them; this checkout has no ../shared)")
    return DATASETS
