"""Fixtures of the feature contract's tests: the schema of the shared training frame (tests/conftest.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema


@pytest.fixture
def schema(training: pd.DataFrame) -> Schema:
    """The training frame's schema, as if cleaning had dropped an ``id`` column."""
    return infer_schema(training, "y", dropped_columns={"id": "identifier (all values unique)"})
