"""The app: every route behind the middleware stack, 500s without internals, one error handler (three shapes), the
access log switch, and start-up that fails before binding.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import fasttrack
from fasttrack import process
from fasttrack.config import Settings
from fasttrack.errors import FastTrackError, ModelNotFoundError
from fasttrack.serving import app as app_module
from fasttrack.serving.fastlane import PredictLane
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor

AppClient = Callable[..., Any]


def test_framework_errors_have_the_apis_shapes(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    with serve_app(settings, classifier) as (client, _):
        assert client.get("/nowhere").json() == {"error": "Not Found", "details": []}
        assert client.delete("/predict").status_code == 405
        assert client.get("/v2/nowhere").json() == {"error": "Not Found"}
        assert client.get("/invocations").json() == {"error_code": "BAD_REQUEST", "message": "Method Not Allowed"}


def test_the_access_log_is_off_by_default_and_json_when_on(
    serve_app: AppClient, settings: Settings, classifier: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")
    with serve_app(settings, classifier) as (client, _):
        client.post("/predict", json={"feature_1": 5.3, "feature_2": 2.1})
    assert not [r for r in caplog.records if r.name == "fasttrack.access"]
    with serve_app(settings.model_copy(update={"access_log": True}), classifier) as (client, _):
        client.post("/predict?probabilities=true", json={"feature_1": 5.3, "feature_2": 2.1})
    [record] = [r for r in caplog.records if r.name == "fasttrack.access"]
    line = json.loads(record.getMessage())
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status"] == 200
    assert line["query"] == "probabilities=true" and line["model_version"] == "1" and line["ms"] >= 0


def test_an_unknown_model_fails_before_the_port_is_bound(settings: Settings) -> None:
    try:
        with pytest.raises(ModelNotFoundError, match="no-such-model"):
            app_module.run(settings.model_copy(update={"model": "models:/no-such-model@champion", "port": 1}))
    finally:
        process.resume_collection()  # run() is an entry point: it deferred collection for the server it never ran


def test_the_multiprocess_folder_is_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    folder, made = app_module._multiprocess_dir()
    assert (folder, made) == (given, False)
    assert not list(given.iterdir())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    folder, made = app_module._multiprocess_dir()
    try:
        assert made and folder.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    finally:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        folder.rmdir()


def test_workers_get_the_settings_through_the_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = settings.model_copy(
        update={
            "model": "models:/sample/1",
            "workers": 3,
            "access_log": True,
            "drift_thresholds": {"feature_1": 0.3},  # a mapping travels as JSON
            "feedback_ttl": 60.0,
        }
    )
    for name in Settings.model_fields:
        monkeypatch.delenv(f"FASTTRACK_{name.upper()}", raising=False)
    app_module._export(wanted)
    try:
        from fasttrack.config import get_settings

        assert get_settings() == wanted
    finally:
        for name in Settings.model_fields:
            os.environ.pop(f"FASTTRACK_{name.upper()}", None)


# --------------------------------------------------------------------------------------------------- middleware
RECORD = {"feature_1": 5.3, "feature_2": 2.1}
V2_BODY = {
    "inputs": [
        {"name": "feature_1", "datatype": "FP64", "shape": [1], "data": [5.3]},
        {"name": "feature_2", "datatype": "FP64", "shape": [1], "data": [2.1]},
    ]
}
#: A request that each route answers 200 (routes not named here: a GET with nothing).
ROUTE_REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/predict"): {"json": RECORD},
    ("GET", "/predict"): {"params": RECORD},
    ("POST", "/feedback"): {"json": [{"id": "nope", "label": "positive"}]},
    ("POST", "/admin/reload"): {"json": {}},
    ("POST", "/invocations"): {"json": {"dataframe_records": [RECORD]}},
    ("POST", "/v2/models/{name}/infer"): {"json": V2_BODY},
    ("POST", "/v2/models/{name}/versions/{version}/infer"): {"json": V2_BODY},
}
EXPECTED_ROUTES = {
    *[("GET", path) for path in ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", app_module.STATIC_DOCS)],
    *[("GET", path) for path in ("/health", "/ready", "/model", "/metrics", "/predict")],
    *[("POST", path) for path in ("/predict", "/feedback", "/invocations", "/admin/reload")],
    *[("GET", path) for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}")],
    *[("GET", f"/v2/models/{{name}}{tail}") for tail in ("/ready", "/versions/{version}", "/versions/{version}/ready")],
    *[("POST", f"/v2/models/{{name}}{tail}") for tail in ("/infer", "/versions/{version}/infer")],
}


def every_route(app: Any) -> list[tuple[str, str]]:
    """``(method, path template)`` of every route ``app.routes`` holds (HEAD aside; a mount as GET)."""
    found = []
    for context in iter_route_contexts(app.routes):
        methods = context.methods if context.methods is not None else {"GET"}  # a mount: the static files
        found += [(method, context.path) for method in sorted(methods - {"HEAD"})]
    return found


def request_for(method: str, template: str) -> tuple[str, dict[str, Any]]:
    """A path and the client's arguments for a request to the route ``template`` that it answers 200."""
    path = template.format(name="sample", version="1")
    if template == app_module.STATIC_DOCS:
        path += "/swagger-ui.css"
    return path, ROUTE_REQUESTS.get((method, template), {})


class Recorder:
    """A user's middleware: notes the method, path and status of every answer it passes on."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


class RequireToken:
    """A user's authentication: 401 for any request without the token, before the app sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"authorization", b"Bearer sesame") not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"no"})
            return
        await self.app(scope, receive, send)


@pytest.fixture
def lane_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the fast lane answered (every ``PredictLane.answer`` call, noted)."""
    answered: list[str] = []
    answer = PredictLane.answer

    async def noted(self: PredictLane, scope: Scope, receive: Receive, send: Send) -> None:
        answered.append(scope["path"])
        await answer(self, scope, receive, send)

    monkeypatch.setattr(PredictLane, "answer", noted)
    return answered


def test_the_route_list_is_the_one_these_tests_cover(settings: Settings, classifier: Predictor) -> None:
    assert set(every_route(app_module.create_app(settings, predictor=classifier))) == EXPECTED_ROUTES


def record_with_the_http_decorator(app: FastAPI, seen: list[tuple[str, str, int]]) -> None:
    """The same recorder in FastAPI's other form: ``@app.middleware("http")`` (Starlette's ``BaseHTTPMiddleware``)."""

    @app.middleware("http")
    async def noting(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        seen.append((request.method, request.url.path, response.status_code))
        return response


@pytest.mark.parametrize("form", ["ASGI class", "http decorator"])
def test_a_middleware_added_after_create_app_sees_every_route(
    settings: Settings, classifier: Predictor, lane_answers: list[str], form: str
) -> None:
    app = app_module.create_app(settings, predictor=classifier)
    seen: list[tuple[str, str, int]] = []
    if form == "ASGI class":
        app.add_middleware(Recorder, seen=seen)
    else:
        record_with_the_http_decorator(app, seen)
    with TestClient(app) as client:
        for method, template in every_route(app):
            path, arguments = request_for(method, template)
            response = client.request(method, path, **arguments)
            assert response.status_code == 200, (method, path, response.text)
            assert seen[-1] == (method, path, 200)
            assert lane_answers == (["/predict"] if (method, path) == ("POST", "/predict") else [])
            lane_answers.clear()
    assert len(seen) == len(EXPECTED_ROUTES)


def test_a_middleware_can_refuse_every_route_the_fast_lane_included(
    settings: Settings, classifier: Predictor, lane_answers: list[str]
) -> None:
    metrics = ServerMetrics()
    predictor = Predictor(classifier.model, classifier.source, metrics=metrics, settings=settings)
    app = app_module.create_app(settings, predictor=predictor, metrics=metrics)
    app.add_middleware(RequireToken)
    with TestClient(app) as client:
        for method, template in every_route(app):
            path, arguments = request_for(method, template)
            response = client.request(method, path, **arguments)
            assert (response.status_code, response.content) == (401, b"no"), (method, path)
        assert lane_answers == []
        predictions = {"model": "sample", "version": "1", "outcome": "success"}
        assert metrics.registry.get_sample_value("fasttrack_predictions_total", predictions) == 0
        allowed = client.post("/predict", json=RECORD, headers={"Authorization": "Bearer sesame"})
        assert allowed.json() == {"prediction": "positive"}
        assert lane_answers == ["/predict"]
        assert metrics.registry.get_sample_value("fasttrack_predictions_total", predictions) == 1
    # The HTTP metrics wrap the whole stack: the refusals count (no route matched them), and so does the answer.
    refused = {"method": "POST", "status": "4xx", "handler": "none"}
    answered = {"method": "POST", "status": "2xx", "handler": "/predict"}
    assert (metrics.registry.get_sample_value("http_requests_total", refused) or 0) >= 1
    assert metrics.registry.get_sample_value("http_requests_total", answered) == 1


# ------------------------------------------------------------------------------------------------------ errors
SECRET = "secret-7f3a"
#: What must never reach a client: a traceback, source files, installed paths, an exception's class name.
LEAKS = re.compile(
    "|".join(
        [
            "Traceback",
            r'File "',
            r"\.py\b",
            re.escape(str(Path(fasttrack.__file__).parent.parent)),
            re.escape(sys.prefix),
            "site-packages",
            r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b",
        ]
    )
)


#: Run in a fresh interpreter: OpenTelemetry's global providers can be set once per process.
_TELEMETRY_PROBE = """
import json, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fasttrack.config import Settings
from fasttrack.serving.app import TELEMETRY_OFF, create_app, fastapi_telemetry
from fasttrack.serving.predictor import Predictor

folder = sys.argv[1]
report = {"unset": fastapi_telemetry() == TELEMETRY_OFF, "fastapi_unset": FastAPI()._native_telemetry.enabled()}
if sys.argv[2] == "sdk":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    report["set"] = fastapi_telemetry() is None
    report["fastapi_set"] = FastAPI()._native_telemetry.enabled()
settings = Settings(model=folder, reload_interval=0)
app = create_app(settings, predictor=Predictor.load(folder, settings))
with TestClient(app) as client:
    report["status"] = client.post("/predict", json={"feature_1": 5.3, "feature_2": 2.1}).status_code
if sys.argv[2] == "sdk":
    report["spans"] = [span.name for span in exporter.get_finished_spans()]
print(json.dumps(report))
"""


def _probe(folder: Path, mode: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _TELEMETRY_PROBE, str(folder), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, **(env or {})},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_fastapi_telemetry_is_off_until_opentelemetry_is_set_up(classifier: Predictor) -> None:
    # Unset: off, where FastAPI itself finds nothing to instrument (its own check agrees with ours).
    plain = _probe(classifier.model.path, "none")
    assert plain == {"unset": True, "fastapi_unset": False, "status": 200}
    # An SDK tracer provider set before the app is made: FastAPI's defaults, and POST /predict (the fast lane) is
    # traced like any route.
    traced = _probe(classifier.model.path, "sdk")
    assert traced["unset"] and traced["set"] and traced["fastapi_set"] and traced["status"] == 200
    assert "POST /predict" in traced["spans"], traced["spans"]
    # FastAPI asked to configure OpenTelemetry from the environment: its defaults, not off.
    assert app_module.fastapi_telemetry() == app_module.TELEMETRY_OFF
    os.environ["FASTAPI_OTEL_AUTO_CONFIGURE"] = "true"
    try:
        assert app_module.fastapi_telemetry() is None
    finally:
        del os.environ["FASTAPI_OTEL_AUTO_CONFIGURE"]


def leaks(text: str, exception_texts: list[str]) -> list[str]:
    """The internals ``text`` shows: matches of :data:`LEAKS`, and any of ``exception_texts``."""
    return LEAKS.findall(text) + [shown for shown in exception_texts if shown and shown in text]


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"{SECRET} in {__file__}")


#: Requests that reach the model, on every API; ``?verbose=1`` sends POST /predict past the fast lane.
PREDICTING = {
    "POST /predict, the fast lane": ("POST", "/predict", {"json": RECORD}),
    "POST /predict, FastAPI's route": ("POST", "/predict?verbose=1", {"json": RECORD}),
    "GET /predict": ("GET", "/predict", {"params": RECORD}),
    "POST /invocations, JSON": ("POST", "/invocations", {"json": {"dataframe_records": [RECORD]}}),
    "POST /invocations, CSV": (
        "POST",
        "/invocations",
        {"content": b"feature_1,feature_2\n5.3,2.1\n", "headers": {"Content-Type": "text/csv"}},
    ),
    "POST /v2/.../infer": ("POST", "/v2/models/sample/infer", {"json": V2_BODY}),
}


def internal_error_body(path: str, message: str) -> dict[str, Any]:
    if path.startswith("/invocations"):
        return {"error_code": "INTERNAL_ERROR", "message": message}
    if path.startswith("/v2"):
        return {"error": message}
    return {"error": message, "details": []}


@pytest.mark.parametrize("where", ["runtime", "validation"])
@pytest.mark.parametrize(("method", "path", "arguments"), PREDICTING.values(), ids=PREDICTING.keys())
def test_an_unexpected_failure_answers_a_fixed_500_and_logs_it_under_the_request_id(
    serve_app: AppClient,
    settings: Settings,
    classifier: Predictor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    lane_answers: list[str],
    where: str,
    method: str,
    path: str,
    arguments: dict[str, Any],
) -> None:
    caplog.set_level(logging.ERROR, logger="fasttrack")
    with serve_app(settings, classifier) as (client, _):
        served = client.app.state.manager.current
        if where == "runtime":
            monkeypatch.setattr(served.runtime, "predict", boom)
        else:
            monkeypatch.setattr(served.records, "validate", boom)
        response = client.request(method, path, **arguments)  # the client raises what the app lets out
    assert lane_answers == (["/predict"] if path == "/predict" and method == "POST" else [])
    assert response.status_code == 500
    request_id = response.headers["X-Request-Id"]
    assert re.fullmatch("[0-9a-f]{32}", request_id)
    assert response.json() == internal_error_body(path, f"internal error (request id {request_id})")
    assert response.headers["X-Model-Version"] == "1"
    assert leaks(response.text, [SECRET, "RuntimeError"]) == []
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert request_id in record.getMessage()
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])
    assert "Traceback" in caplog.text and SECRET in caplog.text


@pytest.mark.parametrize(
    ("given", "honoured"),
    [
        ("3f2b9c1e-77aa-4d1c-9e0f-0c4f8b5a6d21", True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", True),
        ("req_42.retry:1", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("a b", False),
        ("<script>", False),
        ("id;drop", False),
        ("", False),
    ],
)
def test_a_sane_incoming_request_id_is_kept_anything_else_replaced(
    serve_app: AppClient,
    settings: Settings,
    classifier: Predictor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    given: str,
    honoured: bool,
) -> None:
    caplog.set_level(logging.ERROR, logger="fasttrack")
    with serve_app(settings, classifier) as (client, _):
        monkeypatch.setattr(client.app.state.manager.current.runtime, "predict", boom)
        response = client.post("/predict", json=RECORD, headers={"X-Request-Id": given})
    request_id = response.headers["X-Request-Id"]
    if honoured:
        assert request_id == given
    else:
        assert re.fullmatch("[0-9a-f]{32}", request_id)
    assert response.json()["error"] == f"internal error (request id {request_id})"
    assert request_id in caplog.records[-1].getMessage()


def test_a_domain_error_without_a_status_of_its_own_is_an_internal_error(
    serve_app: AppClient, settings: Settings, classifier: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise FastTrackError(f"{SECRET}: the store at /var/lib/fasttrack is locked")

    with serve_app(settings, classifier) as (client, _):
        monkeypatch.setattr(client.app.state.manager.current.runtime, "predict", failing)
        response = client.get("/predict", params=RECORD)
    assert response.status_code == 500
    assert response.json() == internal_error_body(
        "/predict", f"internal error (request id {response.headers['X-Request-Id']})"
    )


def test_a_successful_answer_carries_no_request_id(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings, classifier) as (client, _):
        assert "X-Request-Id" not in client.post("/predict", json=RECORD).headers


def parser_errors(body: bytes) -> list[str]:
    """The texts of the exceptions the parsers behind the routes raise on ``body`` (none must be answered)."""
    texts = []
    for parse in (
        orjson.loads,
        json.loads,
        lambda b: b.decode("utf-8"),
        lambda b: list(csv.reader(io.StringIO(b.decode("utf-8", "replace")))),
    ):
        try:
            parse(body)
        except (ValueError, RecursionError, csv.Error) as exc:
            texts.append(str(exc))
    return texts


JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
_MALFORMED_BODIES = {
    "malformed JSON": b'{"feature_1": ',
    "not UTF-8": b'{"feature_1": "\xff\xfe"}',
    "nested too deep": b"[" * 5000,
}
MALFORMED: dict[str, tuple[str, str, dict[str, Any], int]] = {
    **{
        f"POST /predict{via}, {name}": ("POST", f"/predict{query}", {"content": body, "headers": JSON}, 400)
        for name, body in _MALFORMED_BODIES.items()
        for via, query in ((" (lane)", ""), (" (route)", "?verbose=1"))
    },
    "POST /predict, a JSON number": ("POST", "/predict", {"json": 3}, 400),
    "POST /predict, a bad value": ("POST", "/predict", {"json": {"feature_1": "x", "feature_2": 1}}, 422),
    "POST /predict, a bad option": ("POST", "/predict?probabilities=maybe", {"json": RECORD}, 422),
    "GET /predict, a bad value": ("GET", "/predict", {"params": {"feature_1": "x", "feature_2": "1"}}, 422),
    **{
        f"POST /invocations, {name}": ("POST", "/invocations", {"content": body, "headers": JSON}, 400)
        for name, body in _MALFORMED_BODIES.items()
    },
    "POST /invocations, no format": ("POST", "/invocations", {"json": {"rows": [RECORD]}}, 400),
    "POST /invocations, CSV not UTF-8": (
        "POST",
        "/invocations",
        {"content": b"feature_1\n\xff\n", "headers": CSV},
        400,
    ),
    "POST /invocations, CSV field over the csv module's limit": (
        "POST",
        "/invocations",
        {"content": b'feature_1\n"' + b"9" * 140_000 + b'"\n', "headers": CSV},
        400,
    ),
    **{
        f"POST /v2/.../infer, {name}": ("POST", "/v2/models/sample/infer", {"content": body, "headers": JSON}, 400)
        for name, body in _MALFORMED_BODIES.items()
    },
    "POST /v2/.../infer, inputs not a list": ("POST", "/v2/models/sample/infer", {"json": {"inputs": "x"}}, 400),
    **{  # read as the prediction routes read theirs (issue 17): malformed JSON is 400 there too
        f"POST /feedback, {name}": ("POST", "/feedback", {"content": body, "headers": JSON}, 400)
        for name, body in _MALFORMED_BODIES.items()
    },
    "POST /feedback, a label without an id": ("POST", "/feedback", {"json": {"label": 3}}, 422),
}


@pytest.mark.parametrize(("method", "path", "arguments", "status"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_answered_without_internals(
    serve_app: AppClient,
    settings: Settings,
    classifier: Predictor,
    lane_answers: list[str],
    method: str,
    path: str,
    arguments: dict[str, Any],
    status: int,
) -> None:
    with serve_app(settings, classifier) as (client, _):
        response = client.request(method, path, **arguments)
    assert response.status_code == status, response.text
    assert (lane_answers == ["/predict"]) == (method == "POST" and path == "/predict")
    body = arguments.get("content", b"")
    assert leaks(response.text, parser_errors(body) if isinstance(body, bytes) else []) == []
