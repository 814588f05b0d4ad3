"""HTTP metrics and the access log: the instrumentator's series, from a pure-ASGI middleware, by route template.

``HttpMetrics`` is driven directly for the grouping of statuses and methods; ``HttpMetricsMiddleware`` and
``AccessLog`` both on tiny ASGI apps (what they read from the scope and the response) and in the real server
(templates, unmatched paths, the probes left out).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.types import Message, Receive, Scope, Send

from fasttrack.config import Settings
from fasttrack.serving.http_metrics import (
    UNMATCHED,
    UNMEASURED,
    AccessLog,
    HttpMetrics,
    HttpMetricsMiddleware,
    content_length,
    header,
    log_access,
    route_template,
)
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import asgi_scope

AppClient = Callable[..., Any]
RECORD = {"feature_1": 5.3, "feature_2": 2.1}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def handlers(registry: CollectorRegistry) -> set[str]:
    """Every ``handler`` label value of the HTTP families."""
    return {
        s.labels["handler"]
        for family in registry.collect()
        if family.name.startswith("http_")
        for s in family.samples
        if "handler" in s.labels
    }


def http_scope(method: str = "POST", path: str = "/things/7", **extra: Any) -> dict[str, Any]:
    scope = asgi_scope(method, path, headers=[(b"content-type", b"application/json"), (b"content-length", b"12")])
    scope.update(extra)
    return scope


@dataclass(frozen=True)
class Route:
    """What Starlette puts in ``scope["route"]``: only its ``path`` (the template) matters here."""

    path: str


def answering(status: int, body: bytes, template: str | None = "/things/{id}") -> Any:
    """An ASGI app that matches ``template`` (as the router would) and answers ``status`` with ``body``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if template is not None:
            scope["route"] = Route(template)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def drive(app: Any, scope: dict[str, Any]) -> list[Message]:
    """Run one request through ``app`` and return what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"a": 1.0000}', "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


# ----------------------------------------------------------------------------------------------- HttpMetrics
def test_statuses_are_grouped_by_class() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    for status in (200, 201, 204, 404, 422, 503):
        http.observe("POST", "/predict", status, 0.001, 10, 20)
    total = "http_requests_total"
    assert sample(registry, total, method="POST", handler="/predict", status="2xx") == 3
    assert sample(registry, total, method="POST", handler="/predict", status="4xx") == 2
    assert sample(registry, total, method="POST", handler="/predict", status="5xx") == 1
    assert sample(registry, total, method="POST", handler="/predict", status="200") is None


def test_sizes_and_latencies_are_observed_per_handler() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    http.observe("POST", "/predict", 200, 0.002, 30, 25)
    http.observe("POST", "/predict", 400, 0.004, 12, 70)
    http.observe("GET", "/model", 200, 0.003, 0, 900)
    assert sample(registry, "http_request_size_bytes_sum", handler="/predict") == 42
    assert sample(registry, "http_request_size_bytes_count", handler="/predict") == 2
    assert sample(registry, "http_response_size_bytes_sum", handler="/predict") == 95
    assert sample(registry, "http_response_size_bytes_sum", handler="/model") == 900
    assert sample(registry, "http_request_duration_seconds_count", method="POST", handler="/predict") == 2
    assert sample(registry, "http_request_duration_seconds_count", method="GET", handler="/model") == 1
    # the high-resolution histogram has no labels: every request lands in it
    assert sample(registry, "http_request_duration_highr_seconds_count") == 3
    assert sample(registry, "http_request_duration_highr_seconds_bucket", le="0.0005") == 0
    assert sample(registry, "http_request_duration_highr_seconds_bucket", le="0.0025") == 1


def test_non_standard_methods_are_counted_as_other() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    http.observe("PURGE", "/predict", 405, 0.001, 0, 10)
    http.observe("BREW", "/predict", 405, 0.001, 0, 10)
    http.observe("DELETE", "/predict", 405, 0.001, 0, 10)
    total = "http_requests_total"
    assert sample(registry, total, method="OTHER", handler="/predict", status="4xx") == 2
    assert sample(registry, total, method="DELETE", handler="/predict", status="4xx") == 1
    assert sample(registry, total, method="PURGE", handler="/predict", status="4xx") is None
    assert sample(registry, "http_request_duration_seconds_count", method="OTHER", handler="/predict") == 2


#: Requests as (method, handler, status, seconds, request bytes, response bytes): latencies on, between and
#: beyond the bucket bounds, several label sets, a status class that repeats.
OBSERVED = [
    ("POST", "/predict", 200, 0.0004, 40, 25),
    ("POST", "/predict", 200, 0.0005, 41, 25),
    ("POST", "/predict", 422, 0.0011, 12, 90),
    ("POST", "/predict", 500, 0.25, 40, 60),
    ("GET", "/model", 200, 0.003, 0, 900),
    ("GET", "/model", 200, 75.0, 0, 900),
    ("BREW", UNMATCHED, 404, 0.002, 3, 22),
]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the HTTP families but the ``_created`` timestamps, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name.startswith("http_")
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_the_tallies_reach_the_values_prometheus_clients_public_api_would() -> None:
    """HttpMetrics adds to prometheus_client's values through private attributes: this fails if those change."""
    recorded = CollectorRegistry()
    http = HttpMetrics(recorded)
    reference = CollectorRegistry()
    public = HttpMetrics(reference)  # its families, driven by the public API only
    public_total, public_latency = public.total, public.latency
    for method, handler, status, seconds, received, sent in OBSERVED:
        http.observe(method, handler, status, seconds, received, sent)
        shown = method if method in ("GET", "POST") else "OTHER"
        public_total.labels(shown, f"{status // 100}xx", handler).inc()
        public.request_size.labels(handler).observe(received)
        public.response_size.labels(handler).observe(sent)
        public_latency.labels(shown, handler).observe(seconds)
        public.latency_highr.observe(seconds)
    expected = samples(reference)
    assert len(expected) > 50
    assert samples(recorded) == expected
    http.observe(*OBSERVED[0])  # after a collection: added by the next one, once
    public_total.labels("POST", "2xx", "/predict").inc()
    public.request_size.labels("/predict").observe(40)
    public.response_size.labels("/predict").observe(25)
    public_latency.labels("POST", "/predict").observe(0.0004)
    public.latency_highr.observe(0.0004)
    assert samples(recorded) == samples(reference)
    assert samples(recorded) == samples(reference)


def test_immediate_metrics_reach_the_values_at_once() -> None:
    """``immediate`` (multiprocess mode: other processes read the values' files) leaves nothing to a collection."""
    http = HttpMetrics(CollectorRegistry(), immediate=True)
    http.observe("POST", "/predict", 200, 0.002, 30, 25)
    [family] = http.total.collect()  # the family's own values, not HttpMetrics' collection (which would flush)
    assert [s.value for s in family.samples if s.name == "http_requests_total"] == [1]


@pytest.mark.parametrize("handler", ["/health", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"])
def test_probes_and_scrapes_are_not_measured(handler: str) -> None:
    assert not HttpMetrics(CollectorRegistry(), UNMEASURED).measured(handler)


@pytest.mark.parametrize("handler", ["/predict", "/model", "/v2/models/{name}/infer", "/healthz", UNMATCHED])
def test_every_other_handler_is_measured(handler: str) -> None:
    assert HttpMetrics(CollectorRegistry(), UNMEASURED).measured(handler)


# ---------------------------------------------------------------------------------------------------- helpers
def test_header_and_content_length_read_raw_asgi_headers() -> None:
    scope = http_scope(headers=[(b"content-type", b"text/plain"), (b"content-length", b"12")])
    assert header(scope, b"content-type") == b"text/plain"
    assert header(scope, b"x-missing") is None
    assert content_length(scope["headers"]) == 12
    assert content_length([(b"Content-Length", b"7")]) == 7
    assert content_length([(b"content-length", b"twelve")]) == 0
    assert content_length([]) == 0


def test_the_route_template_is_none_when_no_route_matched() -> None:
    assert route_template(http_scope(route=Route("/v2/models/{name}/infer"))) == "/v2/models/{name}/infer"
    assert route_template(http_scope()) == UNMATCHED
    assert route_template(http_scope(route=object())) == UNMATCHED


# ------------------------------------------------------------------------------------------------- middleware
def test_the_middleware_records_the_route_template_status_and_sizes() -> None:
    registry = CollectorRegistry()
    app = HttpMetricsMiddleware(answering(201, b'{"ok": true}'), HttpMetrics(registry))
    sent = drive(app, http_scope(path="/things/7"))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # passed through untouched
    assert sample(registry, "http_requests_total", method="POST", handler="/things/{id}", status="2xx") == 1
    assert sample(registry, "http_request_size_bytes_sum", handler="/things/{id}") == 12
    assert sample(registry, "http_response_size_bytes_sum", handler="/things/{id}") == len(b'{"ok": true}')
    assert handlers(registry) == {"/things/{id}"}  # the path itself (/things/7) is never a label


def test_a_path_no_route_matched_is_counted_under_none() -> None:
    registry = CollectorRegistry()
    drive(HttpMetricsMiddleware(answering(404, b"{}", template=None), HttpMetrics(registry)), http_scope("GET"))
    assert sample(registry, "http_requests_total", method="GET", handler=UNMATCHED, status="4xx") == 1


def test_excluded_handlers_are_not_recorded_by_the_middleware() -> None:
    registry = CollectorRegistry()
    app = HttpMetricsMiddleware(answering(200, b"{}", template="/health"), HttpMetrics(registry, UNMEASURED))
    sent = drive(app, http_scope("GET", "/health"))
    assert sent[0]["status"] == 200
    assert sample(registry, "http_request_duration_highr_seconds_count") == 0
    assert handlers(registry) == set()


def test_an_app_that_raises_is_counted_as_a_5xx() -> None:
    registry = CollectorRegistry()

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = Route("/things/{id}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        drive(HttpMetricsMiddleware(broken, HttpMetrics(registry)), http_scope())
    assert sample(registry, "http_requests_total", method="POST", handler="/things/{id}", status="5xx") == 1


def test_scopes_other_than_http_pass_through_unmeasured() -> None:
    registry = CollectorRegistry()
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {"type": "lifespan.startup"}

    async def ignore(message: Message) -> None:
        return None

    asyncio.run(HttpMetricsMiddleware(inner, HttpMetrics(registry))({"type": "lifespan"}, nothing, ignore))
    asyncio.run(AccessLog(inner)({"type": "lifespan"}, nothing, ignore))
    assert seen == ["lifespan", "lifespan"]
    assert sample(registry, "http_request_duration_highr_seconds_count") == 0


# ------------------------------------------------------------------------------------------------- the server
def test_the_server_labels_requests_with_route_templates(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings, classifier) as (client, metrics):
        assert client.get("/v2/models/sample").status_code == 200
        assert client.get("/v2/models/other").status_code == 404
        assert client.get("/nowhere").status_code == 404
        assert client.request("PURGE", "/model").status_code == 405
        registry = metrics.registry
        total = "http_requests_total"
        assert sample(registry, total, method="GET", handler="/v2/models/{name}", status="2xx") == 1
        assert sample(registry, total, method="GET", handler="/v2/models/{name}", status="4xx") == 1
        assert sample(registry, total, method="GET", handler=UNMATCHED, status="4xx") == 1
        assert sample(registry, total, method="OTHER", handler="/model", status="4xx") == 1
        assert "/nowhere" not in handlers(registry)


def test_the_server_records_request_and_response_sizes(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings, classifier) as (client, metrics):
        body = json.dumps({"id": "nope", "label": "positive"}).encode()
        response = client.post("/feedback", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        assert sample(metrics.registry, "http_request_size_bytes_sum", handler="/feedback") == len(body)
        assert sample(metrics.registry, "http_response_size_bytes_sum", handler="/feedback") == len(response.content)


def test_the_server_leaves_probes_and_scrapes_out(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings, classifier) as (client, metrics):
        for path in ("/health", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"):
            assert client.get(path).status_code == 200, path
        assert client.get("/model").status_code == 200
        assert handlers(metrics.registry) == {"/model"}
        assert sample(metrics.registry, "http_request_duration_highr_seconds_count") == 1


def test_each_app_counts_in_its_own_registry(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    other = ServerMetrics()
    with serve_app(settings, classifier) as (client, metrics):
        client.get("/model")
        assert sample(metrics.registry, "http_requests_total", method="GET", handler="/model", status="2xx") == 1
    assert sample(other.registry, "http_requests_total", method="GET", handler="/model", status="2xx") is None


# ------------------------------------------------------------------------------------------------- access log
def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "fasttrack.access"]


def test_the_access_log_writes_one_json_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")
    scope = http_scope("POST", "/things/7", query_string=b"probabilities=true", state={"model_version": "4"})
    drive(AccessLog(answering(201, b"{}")), scope)
    [line] = access_lines(caplog)
    assert set(line) == {"method", "path", "query", "status", "ms", "client", "key", "model_version"}
    assert line["key"] is None  # no access control: no key id
    assert line["method"] == "POST" and line["path"] == "/things/7" and line["query"] == "probabilities=true"
    assert line["status"] == 201 and line["client"] == "10.0.0.1" and line["model_version"] == "4"
    assert isinstance(line["ms"], float)


def test_the_access_log_says_500_when_the_app_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        drive(AccessLog(broken), http_scope("GET", "/model"))
    [line] = access_lines(caplog)
    assert line["status"] == 500 and line["path"] == "/model" and line["model_version"] is None


def test_log_access_without_a_client_or_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")
    scope = http_scope("GET", "/model", client=None)
    del scope["query_string"]
    log_access(scope, 200, 0.0015, "2")
    [line] = access_lines(caplog)
    assert line == {
        "method": "GET",
        "path": "/model",
        "query": "",
        "status": 200,
        "ms": 1.5,
        "client": None,
        "key": None,
        "model_version": "2",
    }


def test_the_server_logs_each_request_once_when_asked(
    serve_app: AppClient, settings: Settings, classifier: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")
    with serve_app(settings.model_copy(update={"access_log": True}), classifier) as (client, _):
        client.get("/model")
        client.post("/predict", json={"feature_1": "x", "feature_2": 1.0})
        client.get("/nowhere")
    lines = access_lines(caplog)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/model", 200),
        ("POST", "/predict", 422),
        ("GET", "/nowhere", 404),
    ]
    assert [line["model_version"] for line in lines] == ["1", "1", None]  # no model answers a 404
