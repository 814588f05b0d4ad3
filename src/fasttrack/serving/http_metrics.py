"""HTTP metrics and the access log: pure-ASGI middleware, cheap enough for a request of ~100 µs.

The series are the ones ``prometheus-fastapi-instrumentator`` exports by default (the dashboard, the alert rules and
existing Prometheus setups keep working): ``http_requests_total{method, status, handler}`` with the status grouped
(``2xx``, ``4xx``, ...), ``http_request_size_bytes{handler}`` and ``http_response_size_bytes{handler}`` (summaries of
the ``Content-Length`` headers), ``http_request_duration_seconds{method, handler}`` (few buckets) and
``http_request_duration_highr_seconds`` (many buckets, no labels: for percentiles). The high-resolution buckets
start at 0.5 ms rather than 10 ms, because a prediction here takes well under a millisecond of server time.

Why not the instrumentator itself: it finds each request's route by matching the path against every route again,
wraps each request and response in Starlette objects and looks up five labelled children per request; measured in
process, that was a quarter of a one-row prediction's time. Here the route template comes from the router's own
match (``scope["route"]``, set by Starlette), and the children of each (method, handler, status class) are bound
once and reused. :meth:`HttpMetrics.observe` is public so that the prediction fast lane
(:mod:`fasttrack.serving.fastlane`), which answers before the router, records the same series.

``handler`` is the route's template (``/v2/models/{name}/infer``), or ``none`` when no route matched (404s), so
the label's values stay bounded; methods other than the standard ones are counted as ``OTHER`` for the same reason.

:class:`AccessLog` (``FASTTRACK_ACCESS_LOG``) writes one JSON line per request on the ``fasttrack.access`` logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets for percentiles (seconds): from half a millisecond to a minute.
HIGHR_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
#: Latency buckets by handler: the instrumentator's (coarse on purpose: one series per bucket and handler).
LOWR_BUCKETS: Final = (0.1, 0.5, 1.0)
UNMATCHED: Final = "none"
#: Routes left out of the HTTP metrics: probes and scrapes would drown the traffic that matters.
UNMEASURED: Final = ("^/health$", "^/ready$", "^/metrics$", "^/v2/health/")
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")

access_log = logging.getLogger("fasttrack.access")


@dataclass(frozen=True, slots=True)
class _Bound:
    """The children one (method, handler, status class) touches, looked up once."""

    total: Any
    request_size: Any
    response_size: Any
    latency: Any


class HttpMetrics:
    """The HTTP families, in ``registry``; handlers matching one of ``excluded`` (regular expressions) are not
    measured (probes and scrapes would drown the traffic that matters)."""

    def __init__(self, registry: CollectorRegistry, excluded: Iterable[str] = ()) -> None:
        self._excluded = [re.compile(pattern) for pattern in excluded]
        self._skip: dict[str, bool] = {}
        self._bound: dict[tuple[str, str, int], _Bound] = {}
        self.total = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["method", "status", "handler"],
            registry=registry,
        )
        self.request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler (the Content-Length header; 0 when absent).",
            ["handler"],
            registry=registry,
        )
        self.response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler (the Content-Length header; 0 when absent).",
            ["handler"],
            registry=registry,
        )
        self.latency_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels, for percentiles.",
            buckets=HIGHR_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler.",
            ["method", "handler"],
            buckets=LOWR_BUCKETS,
            registry=registry,
        )
        self._observe_highr = self.latency_highr.observe

    def measured(self, handler: str) -> bool:
        """Whether requests to ``handler`` (a route template, or ``none``) are counted."""
        skip = self._skip.get(handler)
        if skip is None:
            skip = self._skip[handler] = any(pattern.search(handler) for pattern in self._excluded)
        return not skip

    def observe(
        self, method: str, handler: str, status: int, seconds: float, request_bytes: int, response_bytes: int
    ) -> None:
        """Record one answered request (``handler`` a route template; call :meth:`measured` first)."""
        key = (method, handler, status // 100)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bind(*key)
        bound.total.inc()
        bound.request_size.observe(request_bytes)
        bound.response_size.observe(response_bytes)
        bound.latency.observe(seconds)
        self._observe_highr(seconds)

    def _bind(self, method: str, handler: str, status_class: int) -> _Bound:
        shown_method = method if method in _METHODS else "OTHER"
        status = _STATUS_CLASSES[status_class - 1] if 1 <= status_class <= 5 else f"{status_class}xx"
        bound = _Bound(
            total=self.total.labels(shown_method, status, handler),
            request_size=self.request_size.labels(handler),
            response_size=self.response_size.labels(handler),
            latency=self.latency.labels(shown_method, handler),
        )
        self._bound[(method, handler, status_class)] = bound
        return bound


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's raw value (``name`` in lower case, as ASGI servers give them), or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The ``Content-Length`` among raw headers, 0 when absent or not a number."""
    for key, value in headers:
        if key.lower() == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def route_template(scope: Scope) -> str:
    """The template of the route the router matched for this request (``none`` when it matched none)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


async def _observed(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, done: Callable[[int, int, float], None]
) -> None:
    """Run ``app`` on an HTTP request, then call ``done(status, response bytes, seconds)`` (500 if it raised)."""
    start = perf_counter()
    status = 500
    sent = 0

    async def capture(message: Message) -> None:
        nonlocal status, sent
        if message["type"] == "http.response.start":
            status = message["status"]
            sent = content_length(message.get("headers", ()))
        await send(message)

    try:
        await app(scope, receive, capture)
    finally:
        done(status, sent, perf_counter() - start)


class HttpMetricsMiddleware:
    """Times every HTTP request and records it in :class:`HttpMetrics` under its route template."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def record(status: int, sent: int, seconds: float) -> None:
            handler = route_template(scope)  # known once the router has matched, i.e. afterwards
            if self.metrics.measured(handler):
                received = content_length(scope["headers"])
                self.metrics.observe(scope["method"], handler, status, seconds, received, sent)

        await _observed(self.app, scope, receive, send, record)


def log_access(scope: Scope, status: int, seconds: float, model_version: str | None) -> None:
    """Write the access log line of one answered request."""
    client = scope.get("client")
    line = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "status": status,
        "ms": round(seconds * 1000, 3),
        "client": client[0] if client else None,
        "model_version": model_version,
    }
    access_log.info(orjson.dumps(line).decode())


class AccessLog:
    """One JSON line per request on the ``fasttrack.access`` logger (off by default: it costs throughput)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def write(status: int, sent: int, seconds: float) -> None:
            log_access(scope, status, seconds, scope.get("state", {}).get("model_version"))

        await _observed(self.app, scope, receive, send, write)
