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
match (``scope["route"]``, set by Starlette), and each request adds to plain running totals per (method, handler,
status class) that reach the Prometheus values when they are collected (see :class:`HttpMetrics`). The server
records each request with :func:`record_request` from its outermost frame
(:class:`~fasttrack.serving.app.ServingApp`); :class:`HttpMetricsMiddleware` does the same as an ASGI middleware
for other apps. The prediction fast lane (:mod:`fasttrack.serving.fastlane`) sets ``scope["route"]`` as the router
would, so its requests are recorded like every other.

``handler`` is the route's template (``/v2/models/{name}/infer``), or ``none`` when no route matched (404s, and
requests a middleware refused before routing), so
the label's values stay bounded; methods other than the standard ones are counted as ``OTHER`` for the same reason.

:class:`AccessLog` (``FASTTRACK_ACCESS_LOG``) writes one JSON line per request on the ``fasttrack.access`` logger.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any, Final

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from prometheus_client.metrics_core import Metric
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


_LOWR_BOUNDS: Final = (*LOWR_BUCKETS, math.inf)
_HIGHR_BOUNDS: Final = (*HIGHR_BUCKETS, math.inf)
#: Where a (method, handler, status class) keeps what it recorded (see :class:`_Tally`); latency buckets follow.
_REQUESTS, _REQUEST_COUNT, _REQUEST_BYTES, _RESPONSE_COUNT, _RESPONSE_BYTES, _SECONDS, _BUCKETS = range(7)


class _Tally:
    """Running totals kept in plain numbers, and the Prometheus values they are added to when flushed.

    ``values[i]`` is what was recorded so far, ``flushed[i]`` how much of it the value behind ``cells[i]`` (its
    ``inc``) has had. Only the event loop adds to ``values``; a flush (under :class:`HttpMetrics`' lock) reads each
    total once and adds the difference, so a request recorded during a flush is added by the next one.
    """

    __slots__ = ("cells", "flushed", "values")

    def __init__(self, cells: list[Callable[[float], None]]) -> None:
        self.cells = cells
        self.values = [0.0] * len(cells)
        self.flushed = [0.0] * len(cells)

    def flush(self) -> None:
        values, flushed = self.values, self.flushed
        for i, add in enumerate(self.cells):
            total = values[i]
            if total != flushed[i]:
                add(total - flushed[i])
                flushed[i] = total


class HttpMetrics:
    """The HTTP families, in ``registry``; handlers matching one of ``excluded`` (regular expressions) are not
    measured (probes and scrapes would drown the traffic that matters).

    :meth:`observe` adds to plain numbers (:class:`_Tally`) that reach the Prometheus values when the registry is
    collected (a scrape, ``get_sample_value``): the values' locks and per-call checks cost more than a request's
    other metrics work. ``immediate`` (multiprocess mode, where other processes read the values from files at any
    time) flushes after every request instead. The flush adds to the values through prometheus_client's private
    attributes (``_value``, ``_count``, ``_sum``, ``_buckets``): used here only, and checked against its public
    ``inc``/``observe`` by tests/unit/serving/test_http_metrics.py, which fails if prometheus_client changes them.
    ``observe`` runs on the event loop (one thread); collecting may run on any.
    """

    def __init__(self, registry: CollectorRegistry, excluded: Iterable[str] = (), *, immediate: bool = False) -> None:
        self._excluded = [re.compile(pattern) for pattern in excluded]
        self._skip: dict[str, bool] = {}
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self._immediate = immediate
        self._lock = threading.Lock()
        self.total = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["method", "status", "handler"],
            registry=None,
        )
        self.request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler (the Content-Length header; 0 when absent).",
            ["handler"],
            registry=None,
        )
        self.response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler (the Content-Length header; 0 when absent).",
            ["handler"],
            registry=None,
        )
        self.latency_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels, for percentiles.",
            buckets=HIGHR_BUCKETS,
            registry=None,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler.",
            ["method", "handler"],
            buckets=LOWR_BUCKETS,
            registry=None,
        )
        self._families = (self.total, self.request_size, self.response_size, self.latency_highr, self.latency)
        highr: Any = self.latency_highr
        self._highr = _Tally([highr._sum.inc, *(bucket.inc for bucket in highr._buckets)])
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        """The families' descriptions (for the registry's name checks)."""
        for family in self._families:
            yield from family.describe()

    def collect(self) -> Iterator[Metric]:
        """The families, with every request recorded so far."""
        self.flush()
        for family in self._families:
            yield from family.collect()

    def flush(self) -> None:
        """Add what was recorded since the last flush to the Prometheus values."""
        with self._lock:
            for tally in list(self._tallies.values()):
                tally.flush()
            self._highr.flush()

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
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tally(*key)
        values = tally.values
        values[_REQUESTS] += 1
        values[_REQUEST_COUNT] += 1
        values[_REQUEST_BYTES] += request_bytes
        values[_RESPONSE_COUNT] += 1
        values[_RESPONSE_BYTES] += response_bytes
        values[_SECONDS] += seconds
        values[_BUCKETS + bisect_left(_LOWR_BOUNDS, seconds)] += 1  # the first bucket whose bound is >= seconds
        highr = self._highr.values
        highr[0] += seconds
        highr[1 + bisect_left(_HIGHR_BOUNDS, seconds)] += 1
        if self._immediate:
            with self._lock:
                tally.flush()
                self._highr.flush()

    def _tally(self, method: str, handler: str, status_class: int) -> _Tally:
        """The tally of one (method, handler, status class), added to its children's values when flushed."""
        shown_method = method if method in _METHODS else "OTHER"
        status = _STATUS_CLASSES[status_class - 1] if 1 <= status_class <= 5 else f"{status_class}xx"
        total: Any = self.total.labels(shown_method, status, handler)
        request_size: Any = self.request_size.labels(handler)
        response_size: Any = self.response_size.labels(handler)
        latency: Any = self.latency.labels(shown_method, handler)
        tally = _Tally(
            [
                total._value.inc,
                request_size._count.inc,
                request_size._sum.inc,
                response_size._count.inc,
                response_size._sum.inc,
                latency._sum.inc,
                *(bucket.inc for bucket in latency._buckets),
            ]
        )
        with self._lock:
            self._tallies[(method, handler, status_class)] = tally
        return tally


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


class Exchange:
    """One HTTP request on its way through a layer: when it started, and the answer's first message, seen by
    :meth:`send` (pass it on as the ``send`` of the app inside).

    The one way a request's status, response size and time are read, for the HTTP metrics
    (:func:`record_request`) and the access log. Made per request; ``__slots__`` keep it as cheap as a closure.
    """

    __slots__ = ("_send", "start", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.start = perf_counter()
        self.started: Message | None = None

    async def send(self, message: Message) -> None:
        """The server's ``send``, noting the ``http.response.start`` message."""
        if message["type"] == "http.response.start":
            self.started = message
        await self._send(message)

    @property
    def answered(self) -> bool:
        """Whether an answer was started (not: the client went away before sending its whole body)."""
        return self.started is not None

    @property
    def status(self) -> int:
        """The answer's status; 500 when none was started (the app raised)."""
        return int(self.started["status"]) if self.started is not None else 500

    @property
    def sent(self) -> int:
        """The answer's ``Content-Length`` (0 when absent or none was started)."""
        return content_length(self.started.get("headers", ())) if self.started is not None else 0

    def seconds(self) -> float:
        """Seconds since the request started."""
        return perf_counter() - self.start


async def _observed(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, done: Callable[[int, int, float], None]
) -> None:
    """Run ``app`` on an HTTP request, then call ``done(status, response bytes, seconds)`` (500 if it raised).

    A request ``app`` returns from without answering (its client went away before sending the whole body) is
    not a request answered: ``done`` is not called.
    """
    exchange = Exchange(send)
    try:
        await app(scope, receive, exchange.send)
    except BaseException:
        done(exchange.status, exchange.sent, exchange.seconds())
        raise
    if exchange.answered:
        done(exchange.status, exchange.sent, exchange.seconds())


class HttpMetricsMiddleware:
    """Times every HTTP request and records it in :class:`HttpMetrics` under its route template (the server does
    this in :class:`~fasttrack.serving.app.ServingApp` instead, saving a frame per request).

    Written out rather than through :func:`_observed`: it wraps every request, so one coroutine frame fewer per
    request is worth the three lines.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(send)
        try:
            await self.app(scope, receive, exchange.send)
        except BaseException:
            record_request(self.metrics, scope, exchange)  # 500, unless the answer had started
            raise
        if exchange.answered:  # else the client went away before its whole body: nothing answered, nothing to count
            record_request(self.metrics, scope, exchange)


def record_request(metrics: HttpMetrics, scope: Scope, exchange: Exchange) -> None:
    """Record one HTTP request in ``metrics``, from its scope and its :class:`Exchange` (a 500 when it raised
    before answering)."""
    handler = route_template(scope)  # known once the router has matched, i.e. afterwards
    if not metrics.measured(handler):
        return
    declared = header(scope, b"content-length")
    received = int(declared) if declared is not None and declared.isdigit() else 0
    metrics.observe(scope["method"], handler, exchange.status, exchange.seconds(), received, exchange.sent)


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
        "key": scope.get("fasttrack.api_key"),  # the id of the caller's API key (access control), never the secret
        "model_version": model_version,
    }
    access_log.info(orjson.dumps(line).decode())


class AccessLog:
    """One JSON line per request on the ``fasttrack.access`` logger (off by default: it costs throughput).

    Fields: ``method``, ``path``, ``query``, ``status``, ``ms``, ``client`` (address), ``key`` (the id of the
    caller's API key when access control is on, else ``null``; never the key) and ``model_version``. No header is
    logged, so a key sent as one never reaches the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def write(status: int, sent: int, seconds: float) -> None:
            log_access(scope, status, seconds, scope.get("state", {}).get("model_version"))

        await _observed(self.app, scope, receive, send, write)
