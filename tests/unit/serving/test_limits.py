"""The load limits on the real app: 503 with Retry-After beyond the concurrency limit, a bounded wait for a slot,
504 after the request timeout, probes never limited, each API's error shape, requests of a gone client dropped, and
every drop counted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient
from starlette.types import Message

from fasttrack.config import Settings
from fasttrack.serving import limits
from fasttrack.serving.app import create_app
from fasttrack.serving.feedback import CLIENT
from fasttrack.serving.limits import LoadLimits, disconnected
from fasttrack.serving.metrics import DROP_REASONS, ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import asgi_scope

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
V2 = {
    "inputs": [
        {"name": "feature_1", "shape": [1], "datatype": "FP64", "data": [5.3]},
        {"name": "feature_2", "shape": [1], "datatype": "FP64", "data": [2.1]},
    ]
}
#: Longest a test waits for something to happen in the server (a bound against hangs, never asserted).
PATIENCE = 30.0


class Gate:
    """A slow route's gate: requests in it are counted and wait until it opens."""

    def __init__(self) -> None:
        self.inside = 0
        self.open = threading.Event()
        self._lock = threading.Lock()

    async def pass_through(self) -> None:
        with self._lock:
            self.inside += 1
        while not self.open.is_set():
            await asyncio.sleep(0.005)

    def wait_inside(self, count: int) -> None:
        deadline = time.monotonic() + PATIENCE
        while self.inside < count:
            assert time.monotonic() < deadline, f"{self.inside} requests reached the slow route, not {count}"
            time.sleep(0.005)


@contextmanager
def limited_app(
    settings: Settings, classifier: Predictor, **limits_settings: Any
) -> Iterator[tuple[TestClient, ServerMetrics, Gate]]:
    """The real app serving ``classifier`` with these limits, plus ``POST /slow`` (waits for its gate)."""
    settings = settings.model_copy(update=limits_settings)
    metrics = ServerMetrics()
    predictor = Predictor(classifier.model, classifier.source, metrics=metrics, settings=settings)
    app = create_app(settings, predictor=predictor, metrics=metrics)
    gate = Gate()

    @app.post("/slow")
    async def slow() -> Response:
        await gate.pass_through()
        return Response(b'{"slow":true}', media_type="application/json")

    with TestClient(app) as client:
        try:
            yield client, metrics, gate
        finally:
            gate.open.set()


def find_limits(app: Any) -> LoadLimits:
    """The app's :class:`LoadLimits` instance, in its built middleware stack."""
    layer = app.middleware_stack
    while not isinstance(layer, LoadLimits):
        layer = layer.app
    return layer


def dropped(metrics: ServerMetrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("fasttrack_requests_dropped_total", {"reason": reason})


def test_the_drop_reasons_are_the_metrics_ones() -> None:
    assert (limits.SHED, limits.TIMEOUT, limits.CLIENT_GONE) == DROP_REASONS


def test_requests_beyond_the_limit_are_shed_with_retry_after_in_each_apis_shape(
    settings: Settings, classifier: Predictor
) -> None:
    with (
        limited_app(settings, classifier, max_in_flight=2, max_queued=0, retry_after=3) as (client, metrics, gate),
        ThreadPoolExecutor(2) as pool,
    ):
        for reason in DROP_REASONS:  # every series exists before anything is dropped
            assert dropped(metrics, reason) == 0
        slow = [pool.submit(client.post, "/slow") for _ in range(2)]
        gate.wait_inside(2)
        shed = client.post("/predict", json=RECORD)
        assert shed.status_code == 503 and shed.headers["Retry-After"] == "3"
        assert shed.json() == {
            "error": "overloaded: 2 requests in flight (FASTTRACK_MAX_IN_FLIGHT); retry later",
            "details": [],
        }
        mlflow = client.post("/invocations", json={"dataframe_records": [RECORD]})
        assert mlflow.status_code == 503 and mlflow.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        v2 = client.post("/v2/models/sample/infer", json=V2)
        assert v2.status_code == 503 and v2.json() == {"error": shed.json()["error"]}
        # Probes and the scrape are never limited.
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert dropped(metrics, "shed") == 3
        gate.open.set()
        assert [f.result(PATIENCE).status_code for f in slow] == [200, 200]
        assert client.post("/predict", json=RECORD).json() == {"prediction": "positive"}
        assert dropped(metrics, "shed") == 3 and dropped(metrics, "timeout") == 0


def test_a_request_waits_for_a_slot_within_the_queue_bound(settings: Settings, classifier: Predictor) -> None:
    with (
        limited_app(settings, classifier, max_in_flight=1, max_queued=1, queue_timeout=PATIENCE) as (
            client,
            metrics,
            gate,
        ),
        ThreadPoolExecutor(2) as pool,
    ):
        first = pool.submit(client.post, "/slow")
        gate.wait_inside(1)
        queued = pool.submit(client.post, "/predict", json=RECORD)
        limits_of_app = find_limits(client.app)
        deadline = time.monotonic() + PATIENCE
        while limits_of_app.queued < 1:
            assert time.monotonic() < deadline and not queued.done(), "the second request never waited for a slot"
            time.sleep(0.005)
        third = client.post("/predict", json=RECORD)  # the queue (of one) is full: shed at once
        assert third.status_code == 503
        gate.open.set()
        assert first.result(PATIENCE).status_code == 200
        assert queued.result(PATIENCE).json() == {"prediction": "positive"}  # served, never shed
        assert dropped(metrics, "shed") == 1


def test_a_request_over_the_timeout_is_answered_504_and_counted(settings: Settings, classifier: Predictor) -> None:
    with limited_app(settings, classifier, request_timeout=0.2) as (client, metrics, gate):
        answer = client.post("/slow")
        assert answer.status_code == 504
        assert answer.json() == {"error": "request timed out after 0.2 s (FASTTRACK_REQUEST_TIMEOUT)", "details": []}
        assert gate.inside == 1
        assert dropped(metrics, "timeout") == 1
        # The slot was freed and the server serves on.
        assert client.post("/predict", json=RECORD).json() == {"prediction": "positive"}


def test_no_limit_when_turned_off(settings: Settings, classifier: Predictor) -> None:
    with (
        limited_app(settings, classifier, max_in_flight=0, request_timeout=0) as (client, metrics, gate),
        ThreadPoolExecutor(8) as pool,
    ):
        slow = [pool.submit(client.post, "/slow") for _ in range(8)]
        gate.wait_inside(8)
        assert client.post("/predict", json=RECORD).status_code == 200
        gate.open.set()
        assert {f.result(PATIENCE).status_code for f in slow} == {200}
        assert dropped(metrics, "shed") == 0


# ------------------------------------------------------------------------- a client gone, on the ASGI level
async def _gone_client_run(middleware: LoadLimits, release: asyncio.Event) -> tuple[list[Message], bool]:
    """Drive ``middleware`` the way Uvicorn does for a client that sends its body, then hangs up."""
    sent: list[Message] = []
    hung_up = asyncio.Event()
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": orjson.dumps(RECORD), "more_body": False}
        await hung_up.wait()  # Uvicorn's receive waits for news, and answers at once once it knows
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    request = asyncio.create_task(middleware(asgi_scope("POST", "/slow"), receive, send))
    await asyncio.sleep(0.2)  # the request is in the app, its body read
    hung_up.set()
    try:
        await asyncio.wait_for(request, PATIENCE)
    finally:
        release.set()
    return sent, request.cancelled()


def test_a_request_whose_client_went_away_is_dropped_unanswered() -> None:
    reached_the_end: list[bool] = []
    release = asyncio.Event()

    async def app(scope: Any, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        await receive()
        await release.wait()  # the work the request waits for (a thread of the pool, the model)
        reached_the_end.append(True)

    metrics = ServerMetrics()
    middleware = LoadLimits(app, settings=Settings.model_construct(), metrics=metrics)
    sent, cancelled = asyncio.run(_gone_client_run(middleware, release))
    assert sent == [] and not cancelled and reached_the_end == []
    assert dropped(metrics, "client_gone") == 1 and middleware.in_flight == 0


def test_disconnected_asks_without_waiting() -> None:
    async def knows() -> Message:
        return {"type": "http.disconnect"}

    async def waits() -> Message:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def both() -> tuple[bool, bool]:
        return disconnected(knows), disconnected(waits)

    assert asyncio.run(both()) == (True, False)


def test_the_client_is_the_key_id_else_the_address() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(CLIENT.get())

    middleware = LoadLimits(app, settings=Settings.model_construct(), metrics=ServerMetrics())

    async def nothing() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def ignore(message: Message) -> None:
        return None

    async def run() -> None:
        await middleware(asgi_scope(), nothing, ignore)
        await middleware({**asgi_scope(), "fasttrack.api_key": "team-a"}, nothing, ignore)

    asyncio.run(run())
    assert seen == ["10.0.0.1", "team-a"]


def test_the_middleware_sits_inside_the_app_around_the_fast_lane(settings: Settings, classifier: Predictor) -> None:
    app: FastAPI = create_app(settings, predictor=classifier)
    names = [m.cls.__name__ for m in app.user_middleware]  # type: ignore[attr-defined]
    assert names.index("LoadLimits") == names.index("PredictLane") - 1  # outermost first: limits wrap the lane
