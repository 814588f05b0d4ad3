"""Serving fixtures: real small models registered in a temporary embedded store, and predictors loaded from it."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette asks for httpx2, which FastAPI's TestClient does not use yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from fasttrack.config import Settings
from fasttrack.serving.app import create_app
from fasttrack.serving.manager import ModelManager, load_checked
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import serving_settings


@pytest.fixture
def settings(model_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on the trained store, registry polling off (tests that poll set it)."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(var, raising=False)
    return serving_settings(model_home).model_copy(update={"reload_interval": 0.0})


@contextmanager
def app_client(
    settings: Settings, predictor: Predictor | None = None, **kwargs: Any
) -> Iterator[tuple[TestClient, ServerMetrics]]:
    """A TestClient on ``create_app`` (lifespan run), serving ``predictor``'s model with the app's own metrics.

    Without ``predictor`` the app loads ``settings.model`` in the background, as the real server does. The
    predictor's monitoring windows are sized by ``settings``, as the server's are.
    """
    metrics = kwargs.pop("metrics", None) or ServerMetrics()
    if predictor is not None:
        predictor = Predictor(predictor.model, predictor.source, metrics=metrics, settings=settings)
    with TestClient(create_app(settings, predictor=predictor, metrics=metrics, **kwargs)) as client:
        yield client, metrics


@dataclass(frozen=True)
class GatedLoad:
    """A ModelManager whose load waits until ``release`` is set: the server as it is while a model loads."""

    manager: ModelManager
    metrics: ServerMetrics
    release: threading.Event


def _gated_load(settings: Settings, model: str) -> GatedLoad:
    """A :class:`GatedLoad` of ``model`` (released after 30 s at the latest, so no test can hang on it)."""
    release = threading.Event()

    def slow(resolved: Any, metrics: ServerMetrics) -> Predictor:
        release.wait(30)
        return load_checked(resolved, metrics)

    metrics = ServerMetrics()
    manager = ModelManager(settings.model_copy(update={"model": model}), metrics, loader=slow)
    return GatedLoad(manager, metrics, release)


@pytest.fixture
def gated_load() -> Callable[[Settings, str], GatedLoad]:
    """:func:`_gated_load`, for tests that look at the server while its model is still loading."""
    return _gated_load


@pytest.fixture
def serve_app() -> Callable[..., AbstractContextManager[tuple[TestClient, ServerMetrics]]]:
    """:func:`app_client`, for tests: ``with serve_app(settings, predictor) as (client, metrics): ...``."""
    return app_client
