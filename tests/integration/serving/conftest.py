"""Real ``fasttrack serve`` processes on free loopback ports, serving small real models trained once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Server, serve, serving_settings, trained_home

#: The classifier server refuses bodies over 1 MiB (batches of 10,001 rows still fit, and are refused as rows).
BODY_LIMIT = 1024 * 1024


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FastTrack home whose store holds ``sample``, ``sample-regression`` and ``mixed`` (version 1 each)."""
    return trained_home(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def classifier_server(model_home: Path) -> Iterator[Server]:
    """``fasttrack serve --model models:/sample@champion`` (the briefs' classifier)."""
    with serve(
        "--model", "models:/sample@champion", home=model_home, FASTTRACK_MAX_BODY_BYTES=str(BODY_LIMIT)
    ) as server:
        yield server


@pytest.fixture(scope="session")
def regression_server(model_home: Path) -> Iterator[Server]:
    """``fasttrack serve --model models:/sample-regression/1`` (the second brief's regressor, a pinned version)."""
    with serve("--model", "models:/sample-regression/1", home=model_home) as server:
        yield server


@pytest.fixture(scope="session")
def mixed_server(model_home: Path) -> Iterator[Server]:
    """The every-feature-kind classifier, served from a local model folder (no registry involved)."""
    from fasttrack.registry.resolve import resolve_model

    folder = resolve_model("models:/mixed/1", serving_settings(model_home)).path
    with serve("--model", str(folder), home=model_home) as server:
        yield server
