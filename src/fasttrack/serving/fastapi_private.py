"""The one module that uses FastAPI's private API: its native OpenTelemetry instrumentation (FastAPI 0.16x).

FastAPI promises nothing about what is here, so each use falls back to FastAPI's own behaviour when the name is
missing, and tests/unit/serving/test_fastapi_private.py fails when FastAPI changes any of it, so that an upgrade
is checked here first.

* :func:`telemetry_unconfigured`: FastAPI's test of whether an OpenTelemetry provider is set
  (``fastapi.telemetry._api._unconfigured``). The server turns FastAPI's telemetry off when none is, because
  FastAPI otherwise runs that test on every request (see :func:`fasttrack.serving.app.fastapi_telemetry`); using
  FastAPI's own test means the two never disagree on what "set" means.
* :func:`route_selected`: what FastAPI's router tells the request's telemetry when it matches a route
  (``fastapi.telemetry._api._route_selected``: the span's name and ``http.route``). The fast lane answers
  ``POST /predict`` in place of the router (:mod:`fasttrack.serving.fastlane`) and tells it the same, so its
  requests are traced as ``POST /predict`` like any routed request, not as a bare ``POST``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

_unconfigured: Callable[[Any], bool] | None
_route_selected: Callable[..., None] | None
try:
    from fastapi.telemetry._api import _route_selected, _unconfigured
except ImportError:  # another FastAPI: keep its telemetry on, and routes unnamed by the lane
    _unconfigured = None
    _route_selected = None


def telemetry_unconfigured(*providers: Any) -> bool:
    """Whether FastAPI would find every one of these global OpenTelemetry providers unset (``False`` when this
    FastAPI has no such test: its telemetry then stays as it decides)."""
    if _unconfigured is None:
        return False
    return all(_unconfigured(provider) for provider in providers)


def route_selected(scope: MutableMapping[str, Any], path: str) -> None:
    """Tell the request's FastAPI telemetry (when there is any) that ``path``'s route answers it, as the router
    does when it matches."""
    if _route_selected is not None and "fastapi.telemetry" in scope:
        _route_selected(scope=scope, path=path)
