"""The fast lane: ``POST /predict`` answered by the app's innermost middleware, with the route's answers, errors,
metrics and windows.

Every comparison runs the same requests through two apps built alike: one as served (with the lane, made to count
the requests it answered, so a comparison cannot pass with the lane idle) and one with the lane taken out, where
FastAPI's route answers. Prediction ids are random: they are compared by shape (32 hex digits, the same in the
header and the body), everything else byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from fasttrack.config import Settings
from fasttrack.errors import SchemaValidationError
from fasttrack.serving.app import ServingApp, create_app
from fasttrack.serving.fastlane import PredictLane, options, predict_route
from fasttrack.serving.manager import ModelManager
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import asgi_scope

AppClient = Callable[..., Any]
RECORD = {"feature_1": 5.3, "feature_2": 2.1}
OTHER = {"feature_1": 1.0, "feature_2": 6.0}
JSON = {"Content-Type": "application/json"}
ID = re.compile(r"[0-9a-f]{32}")
LIMITS = {"max_batch_rows": 5, "max_body_bytes": 4096}


@dataclass
class Count:
    """How many requests the app's lane answered."""

    answered: int = 0


def lane_index(app: Any) -> int:
    """Where the lane is in ``app``'s middleware list (Starlette builds the stack from it, innermost last)."""
    assert isinstance(app, ServingApp)
    [index] = [i for i, entry in enumerate(app.user_middleware) if issubclass(entry.cls, PredictLane)]
    assert index == len(app.user_middleware) - 1  # the innermost
    return index


def counting(app: Any) -> Count:
    """Make ``app``'s lane count the requests it answers (the stack is rebuilt on the next request)."""
    count = Count()

    class CountingLane(PredictLane):
        async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
            count.answered += 1
            await super().answer(scope, receive, send)

    index = lane_index(app)
    entry = app.user_middleware[index]
    app.user_middleware[index] = Middleware(CountingLane, *entry.args, **entry.kwargs)
    app.middleware_stack = None
    return count


def without_lane(app: Any) -> None:
    """Take the lane out of ``app``: the router takes every request, as if there were no lane."""
    del app.user_middleware[lane_index(app)]
    app.middleware_stack = None


@dataclass
class Served:
    client: TestClient
    metrics: ServerMetrics
    lane: Count | None  # None: FastAPI's route answers every request


@pytest.fixture
def small(settings: Settings) -> Settings:
    return settings.model_copy(update=LIMITS)


@pytest.fixture
def served(serve_app: AppClient) -> Callable[..., Any]:
    """``served(settings, predictor, lane=True)``: a :class:`Served` app, with the lane (counting) or without."""

    @contextmanager
    def serve(settings: Settings, predictor: Predictor, *, lane: bool = True, **kwargs: Any) -> Iterator[Served]:
        with serve_app(settings, predictor, **kwargs) as (client, metrics):
            spy = counting(client.app)
            if not lane:
                without_lane(client.app)
            yield Served(client, metrics, spy if lane else None)

    return serve


def shape(response: Any) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers, with the (random) prediction id replaced by a placeholder wherever it appears."""
    headers = dict(response.headers)
    content: bytes = response.content
    prediction_id = headers.get("x-prediction-id")
    if prediction_id is not None:
        assert ID.fullmatch(prediction_id), prediction_id
        headers["x-prediction-id"] = "<id>"
        content = content.replace(prediction_id.encode(), b"<id>")
    return response.status_code, content, headers


def post(client: TestClient, query: str, request: dict[str, Any]) -> Any:
    return client.post(f"/predict{query}", **request)


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # the predictor fixture
    query: str
    request: dict[str, Any]
    status: int
    fields: tuple[str, ...] = ()  # the fields a 422's details name


CASES = [
    Case("one record", "classifier", "", {"json": RECORD}, 200),
    Case("a batch", "classifier", "", {"json": [RECORD, OTHER]}, 200),
    Case("probabilities", "classifier", "?probabilities=true", {"json": RECORD}, 200),
    Case("ids", "classifier", "?ids=true", {"json": RECORD}, 200),
    Case(
        "a batch with probabilities and ids",
        "classifier",
        "?probabilities=true&ids=true",
        {"json": [OTHER, RECORD]},
        200,
    ),
    Case("options in pydantic's words", "classifier", "?probabilities=Yes&ids=off", {"json": RECORD}, 200),
    Case(
        "json with a charset",
        "classifier",
        "",
        {"content": json.dumps(RECORD), "headers": {"Content-Type": "application/json; charset=utf-8"}},
        200,
    ),
    Case("no content type", "classifier", "", {"content": json.dumps(RECORD).encode()}, 200),
    Case(
        "a +json content type",
        "classifier",
        "",
        {"content": json.dumps(RECORD), "headers": {"Content-Type": "application/vnd.api+json"}},
        200,
    ),
    Case("malformed JSON", "classifier", "", {"content": b'{"feature_1": ', "headers": JSON}, 400),
    Case("an empty body", "classifier", "", {"content": b"", "headers": JSON}, 400),
    Case("a JSON number", "classifier", "", {"json": 3}, 400),
    Case("a JSON string", "classifier", "", {"json": "feature_1"}, 400),
    Case(
        "NaN is a missing value",
        "classifier",
        "",
        {"content": b'{"feature_1": NaN, "feature_2": 2.1}', "headers": JSON},
        200,
    ),
    Case("an unknown field", "classifier", "", {"json": {**RECORD, "colour": "red"}}, 422, ("colour",)),
    Case("a missing field", "classifier", "", {"json": {"feature_1": 5.3}}, 422, ("feature_2",)),
    Case("an empty batch", "classifier", "", {"json": []}, 422, ("body",)),
    Case(
        "a bad row in a batch",
        "classifier",
        "",
        {"json": [RECORD, {"feature_1": "x", "feature_2": 1}]},
        422,
        ("[1].feature_1",),
    ),
    Case("a batch over max_batch_rows", "classifier", "", {"json": [RECORD] * 6}, 413),
    Case("a regressor's value", "regressor", "?ids=1", {"json": {"x": 3.1}}, 200),
    Case("a regressor's batch", "regressor", "", {"json": [{"x": 3.1}, {"x": -2.0}]}, 200),
    Case("probabilities of a regressor", "regressor", "?probabilities=true", {"json": {"x": 3.1}}, 400),
    Case(
        "missing, unseen and out-of-range values",
        "mixed",
        "?probabilities=1",
        {"json": [{"colour": "purple", "member": True}, {"amount": 1e6, "colour": "red", "member": 0}]},
        200,
    ),
    Case("a wrong boolean", "mixed", "", {"json": {"amount": 3, "colour": "red", "member": "maybe"}}, 422, ("member",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_lane_answers_exactly_as_the_route_does(
    served: Callable[..., Any], small: Settings, request: pytest.FixtureRequest, case: Case
) -> None:
    predictor: Predictor = request.getfixturevalue(case.model)
    with served(small, predictor) as fast:
        assert fast.lane is not None
        answered = post(fast.client, case.query, case.request)
        assert fast.lane.answered == 1  # the lane took it
    with served(small, predictor, lane=False) as route:
        expected = post(route.client, case.query, case.request)
    assert shape(answered) == shape(expected)
    assert answered.status_code == case.status, answered.text
    assert answered.headers["X-Model-Version"] == "1"
    if case.status == 200:
        assert ID.fullmatch(answered.headers["X-Prediction-Id"])
    else:
        body = answered.json()
        assert set(body) == {"error", "details"}
        assert tuple(d["field"] for d in body["details"]) == case.fields


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample that does not depend on timing: counts, sizes, rows, labels, windows (no process metrics)."""
    found = {}
    for family in registry.collect():
        if family.name.startswith("process_"):
            continue
        for s in family.samples:
            timed = family.name.endswith("_seconds") and not s.name.endswith("_count")
            if timed or s.name.endswith("_created"):
                continue
            found[s.name, tuple(sorted(s.labels.items()))] = s.value
    return found


def test_the_lane_records_the_same_metrics_as_the_route(
    served: Callable[..., Any], small: Settings, classifier: Predictor
) -> None:
    cases = [c for c in CASES if c.model == "classifier"]
    found = []
    for lane in (True, False):
        with served(small, classifier, lane=lane) as app:
            for case in cases:
                post(app.client, case.query, case.request)
            found.append(samples(app.metrics.registry))
            if app.lane is not None:
                assert app.lane.answered == len(cases)
    with_lane, without_lane = found
    assert with_lane == without_lane
    ok = sum(c.status == 200 for c in cases)
    key = ("method", "POST"), ("status", "2xx")
    assert with_lane["http_requests_total", (("handler", "/predict"), *key)] == ok
    assert with_lane["http_requests_total", (("handler", "/predict"), ("method", "POST"), ("status", "4xx"))] == (
        len(cases) - ok
    )
    assert with_lane["http_request_duration_highr_seconds_count", ()] == len(cases)
    labels = (("model", "sample"), ("outcome", "success"), ("version", "1"))
    assert with_lane["fasttrack_predictions_total", labels] == ok
    rows = sum(
        len(c.request["json"]) if isinstance(c.request.get("json"), list) else 1 for c in cases if c.status == 200
    )
    assert with_lane["fasttrack_prediction_rows_total", (("model", "sample"), ("version", "1"))] == rows


def test_the_lane_writes_the_routes_access_log_line(
    served: Callable[..., Any], small: Settings, classifier: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")
    logged = small.model_copy(update={"access_log": True})
    lines = []
    for lane in (True, False):
        caplog.clear()
        with served(logged, classifier, lane=lane) as app:
            post(app.client, "?probabilities=true", {"json": RECORD})
            post(app.client, "", {"json": {"feature_1": 5.3}})
            if app.lane is not None:
                assert app.lane.answered == 2
        found = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fasttrack.access"]
        assert all(isinstance(line.pop("ms"), float) for line in found)
        lines.append(found)
    assert lines[0] == lines[1]
    assert [(line["status"], line["query"], line["model_version"]) for line in lines[0]] == [
        (200, "probabilities=true", "1"),
        (422, "", "1"),
    ]


def test_the_lane_answers_errors_with_the_apps_handlers_as_the_route_does(
    served: Callable[..., Any], small: Settings, classifier: Predictor
) -> None:
    async def teapot(request: Request, exc: Exception) -> Response:
        return Response(f"short and stout: {request.url.path}".encode(), status_code=418)

    for lane in (True, False):
        with served(small, classifier, lane=lane) as app:
            app.client.app.add_exception_handler(SchemaValidationError, teapot)  # a user's, for one kind of error
            refused = post(app.client, "", {"json": {"feature_1": 5.3}})
            other = post(app.client, "", {"content": b"[", "headers": JSON})  # a BadRequestError: the app's handler
            assert app.lane is None or app.lane.answered == 2
        assert (refused.status_code, refused.content) == (418, b"short and stout: /predict")
        assert other.status_code == 400 and other.json()["error"].startswith("malformed JSON")


def test_an_id_from_the_lane_is_joined_by_feedback(
    served: Callable[..., Any], small: Settings, classifier: Predictor
) -> None:
    with served(small, classifier) as app:
        one = post(app.client, "?ids=true", {"json": RECORD})
        batch = post(app.client, "", {"json": [RECORD, OTHER]})
        assert app.lane is not None and app.lane.answered == 2
        base = batch.headers["X-Prediction-Id"]
        labels = [{"id": one.json()["id"], "label": "positive"}, {"id": f"{base}-1", "label": "positive"}]
        answer = app.client.post("/feedback", json=labels).json()
        assert answer["counts"]["matched"] == 2
        served_now = app.client.app.state.manager.current
        assert served_now.drift.observations()["feature_1"] == 3  # the lane's rows are in the drift windows


# ------------------------------------------------------------------------------------- what the lane leaves
def chunked(body: bytes) -> Iterator[bytes]:
    """A body sent in pieces, without Content-Length."""
    yield body[:10]
    yield body[10:]


def build(request: dict[str, Any]) -> dict[str, Any]:
    """``request`` for the test client, its ``chunks`` (if any) sent as a chunked body."""
    if "chunks" not in request:
        return request
    rest = {k: v for k, v in request.items() if k != "chunks"}
    return {**rest, "content": chunked(request["chunks"])}


BIG = b'{"pad": "' + b"x" * 5000 + b'"}'
LEFT = [
    ("a chunked body", "", {"chunks": json.dumps(RECORD).encode(), "headers": JSON}, 200),
    ("a chunked body over the limit", "", {"chunks": BIG, "headers": JSON}, 413),
    ("a body over the limit", "", {"content": BIG, "headers": JSON}, 413),
    ("text/plain", "", {"content": b"feature_1=5.3", "headers": {"Content-Type": "text/plain"}}, 415),
    ("an unknown query parameter", "?verbose=1", {"json": RECORD}, 200),
    ("a bad boolean", "?probabilities=maybe", {"json": RECORD}, 422),
    ("an empty boolean", "?ids=", {"json": RECORD}, 422),
    ("a repeated option", "?ids=true&ids=false", {"json": RECORD}, 200),
]


@pytest.mark.parametrize(("query", "request_", "status"), [c[1:] for c in LEFT], ids=[c[0] for c in LEFT])
def test_requests_the_lane_leaves_get_fastapis_answers(
    served: Callable[..., Any],
    small: Settings,
    classifier: Predictor,
    query: str,
    request_: dict[str, Any],
    status: int,
) -> None:
    with served(small, classifier) as fast:
        answered = post(fast.client, query, build(request_))
        assert fast.lane is not None and fast.lane.answered == 0
    with served(small, classifier, lane=False) as route:
        expected = post(route.client, query, build(request_))
    assert answered.status_code == status, answered.text
    assert shape(answered) == shape(expected)


def test_before_a_model_is_loaded_fastapi_answers_503_then_the_lane_takes_over(
    serve_app: AppClient, settings: Settings, gated_load: Any
) -> None:
    gated = gated_load(settings, "models:/sample/1")
    with serve_app(settings, manager=gated.manager, metrics=gated.metrics) as (client, _):
        lane = counting(client.app)
        try:
            early = client.post("/predict", json=RECORD)
            assert early.status_code == 503 and "still loading" in early.json()["error"]
            assert lane.answered == 0
        finally:
            gated.release.set()
        assert gated.manager.wait_ready(60)
        assert client.post("/predict", json=RECORD).json() == {"prediction": "positive"}
        assert lane.answered == 1


def test_an_unexpected_failure_is_the_routes_500(settings: Settings, classifier: Predictor) -> None:
    class Broken:
        name = "broken"
        labels: list[Any] | None = None

        def predict(self, columns: Any, rows: int, *, probabilities: bool = False) -> Any:
            raise RuntimeError("the model blew up")

    answers = []
    for lane in (True, False):
        metrics = ServerMetrics()
        broken = Predictor(classifier.model, classifier.source, runtime=Broken(), metrics=metrics, settings=settings)
        app = create_app(settings, predictor=broken, metrics=metrics)
        assert isinstance(app, ServingApp)
        spy = counting(app)
        if not lane:
            without_lane(app)
        with TestClient(app) as client:  # raises what the app lets out: nothing, the 500 is answered and logged
            answers.append(shape(client.post("/predict", json=RECORD, headers={"X-Request-Id": "req-7"})))
        assert spy.answered == (1 if lane else 0)
        error = metrics.registry.get_sample_value(
            "fasttrack_predictions_total", {"model": "sample", "version": "1", "outcome": "error"}
        )
        assert error == 1
        http = metrics.registry.get_sample_value(
            "http_requests_total", {"method": "POST", "handler": "/predict", "status": "5xx"}
        )
        assert http == 1
    assert answers[0] == answers[1]
    status, body, headers = answers[0]
    assert status == 500 and headers["x-request-id"] == "req-7"
    assert json.loads(body) == {"error": "internal error (request id req-7)", "details": []}


# ----------------------------------------------------------------------------------------- client gone early
def request_scope(
    path: str = "/predict",
    method: str = "POST",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
) -> dict[str, Any]:
    if headers is None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"36")]
    return asgi_scope(method, path, query=query, headers=headers, root_path=root_path)


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.disconnect"}],
        [{"type": "http.request", "body": b'{"feature_1": 5.3,', "more_body": True}, {"type": "http.disconnect"}],
    ],
    ids=["before any byte", "halfway through the body"],
)
def test_a_client_gone_before_its_body_gets_no_answer_and_breaks_nothing(
    settings: Settings, classifier: Predictor, messages: list[Message]
) -> None:
    metrics = ServerMetrics()
    predictor = Predictor(classifier.model, classifier.source, metrics=metrics, settings=settings)
    app = create_app(settings, predictor=predictor, metrics=metrics)
    lane = counting(app)
    pending = iter(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return next(pending)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(request_scope(), receive, send))
    assert lane.answered == 1 and sent == []
    registry = metrics.registry
    assert registry.get_sample_value("http_request_duration_highr_seconds_count") == 0
    for outcome in ("success", "invalid", "error"):
        labels = {"model": "sample", "version": "1", "outcome": outcome}
        assert registry.get_sample_value("fasttrack_predictions_total", labels) == 0
    assert len(predictor.feedback) == 0
    with TestClient(app) as client:
        assert client.post("/predict", json=RECORD).json() == {"prediction": "positive"}
    assert lane.answered == 2


# ---------------------------------------------------------------------------------------------- takes, options
@dataclass
class Holder:
    """The one thing the lane asks of the manager: the predictor serving now."""

    current: Predictor | None


async def unreachable(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("takes() passes nothing on")


def lane_for(settings: Settings, predictor: Predictor | None) -> PredictLane:
    manager = cast(ModelManager, Holder(predictor))
    return PredictLane(unreachable, manager=manager, settings=settings, route=predict_route(), handlers={})


TAKEN = {
    "a JSON POST": request_scope(),
    "no content type": request_scope(headers=[(b"content-length", b"36")]),
    "a charset": request_scope(
        headers=[(b"content-type", b"application/json; charset=utf-8"), (b"content-length", b"2")]
    ),
    "upper case": request_scope(headers=[(b"content-type", b"Application/JSON"), (b"content-length", b"2")]),
    "+json": request_scope(headers=[(b"content-type", b"application/problem+json"), (b"content-length", b"2")]),
    "exactly the limit": request_scope(headers=[(b"content-length", b"4096")]),
    "an empty body": request_scope(headers=[(b"content-length", b"0")]),
    "both options": request_scope(query=b"probabilities=true&ids=0"),
}
LEFT_SCOPES = {
    "GET": request_scope(method="GET"),
    "PUT": request_scope(method="PUT"),
    "another path": request_scope(path="/predict/"),
    "another API": request_scope(path="/invocations"),
    "a root path": request_scope(root_path="/api"),
    "no content length": request_scope(headers=[(b"content-type", b"application/json")]),
    "chunked": request_scope(headers=[(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]),
    "over the limit": request_scope(headers=[(b"content-length", b"4097")]),
    "a length that is no number": request_scope(headers=[(b"content-length", b"12a")]),
    "a negative length": request_scope(headers=[(b"content-length", b"-1")]),
    "text/plain": request_scope(headers=[(b"content-type", b"text/plain"), (b"content-length", b"2")]),
    "a form": request_scope(
        headers=[(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"2")]
    ),
    "an unknown query parameter": request_scope(query=b"verbose=1"),
    "a bad boolean": request_scope(query=b"probabilities=maybe"),
}


@pytest.mark.parametrize("scope", TAKEN.values(), ids=TAKEN.keys())
def test_the_lane_takes_everyday_json_posts(small: Settings, classifier: Predictor, scope: dict[str, Any]) -> None:
    assert lane_for(small, classifier).takes(scope)


@pytest.mark.parametrize("scope", LEFT_SCOPES.values(), ids=LEFT_SCOPES.keys())
def test_the_lane_leaves_everything_else_to_fastapi(
    small: Settings, classifier: Predictor, scope: dict[str, Any]
) -> None:
    assert not lane_for(small, classifier).takes(scope)


def test_the_lane_takes_nothing_without_a_model(small: Settings) -> None:
    assert not lane_for(small, None).takes(request_scope())


def test_options_default_to_false_and_read_each_flag() -> None:
    assert options(b"") == (False, False)
    assert options(b"probabilities=true") == (True, False)
    assert options(b"ids=1") == (False, True)
    assert options(b"ids=yes&probabilities=on") == (True, True)
    assert options(b"probabilities=false&ids=0") == (False, False)


@pytest.mark.parametrize(
    "query", [b"verbose=1", b"ids=true&ids=true", b"ids", b"ids=", b"probabilities=maybe", b"ids=true&x=1"]
)
def test_options_leave_anything_else_to_fastapi(query: bytes) -> None:
    assert options(query) is None


def pydantic_bool(text: str) -> bool | None:
    """What FastAPI makes of a ``bool`` query value: pydantic's lax boolean, or ``None`` when it refuses it (422)."""
    try:
        return TypeAdapter(bool).validate_python(text)
    except ValidationError:
        return None


WORDS = [
    *["true", "True", "TRUE", "t", "T", "yes", "Y", "on", "ON", "1"],
    *["false", "False", "f", "F", "no", "N", "off", "Off", "0"],
    *["", "maybe", "2", "1.0", "truee", "nope", "tru e"],
    *[" true", "true ", "\tyes", "no\n"],  # padded: pydantic refuses them, so the lane must leave them
]


@pytest.mark.parametrize("word", WORDS)
def test_options_read_booleans_exactly_as_fastapi_does(word: str) -> None:
    expected = pydantic_bool(word)
    assert options(f"probabilities={quote(word)}".encode()) == (None if expected is None else (expected, False))


@pytest.mark.parametrize("query", ["?probabilities=%20true", "?ids=true+"])
def test_a_padded_boolean_gets_fastapis_422_from_the_lane_too(
    served: Callable[..., Any], small: Settings, classifier: Predictor, query: str
) -> None:
    with served(small, classifier, lane=False) as route:
        expected = post(route.client, query, {"json": RECORD})
    assert expected.status_code == 422  # what FastAPI makes of it
    with served(small, classifier) as fast:
        answered = post(fast.client, query, {"json": RECORD})
    assert shape(answered) == shape(expected)
