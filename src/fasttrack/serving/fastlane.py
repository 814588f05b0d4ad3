"""The fast lane: ``POST /predict`` answered inside every middleware of the app, ahead of FastAPI's routing.

A one-row prediction through ONNX Runtime takes tens of microseconds; FastAPI's routing, dependency solving,
parameter parsing and response wrapping cost more than that even for a hello-world endpoint. :func:`install` adds
the lane as the app's innermost middleware: everything the app is wrapped in (Starlette's error middleware, anything
added with ``app.add_middleware`` such as authentication, CORS or tracing, and the app's own HTTP metrics and
access log) wraps the lane too, and sees, changes or refuses the requests it answers like any other. Only
Starlette's exception middleware (a ``Request`` object and a handler lookup per request) and FastAPI's
per-request exit stack sit between the lane and the router: the requests the lane answers need neither.

The lane answers the requests it takes with the *same* code the route uses
(:func:`fasttrack.serving.routes.predict.predict_body`): same validation, same answers, same model metrics, drift
and feedback windows. Everything else is left to the app, as for the route: a ``FastTrackError`` is answered by the
app's exception handler for it (looked up as Starlette does), any other exception propagates to the app's 500
handler, and the HTTP metrics and the access log are recorded by their middleware. For those the lane sets what
the router and the route's dependencies set: ``scope["route"]`` (the route it stands in for: the metrics'
``handler`` label), what the router tells FastAPI's telemetry (the span's name, ``POST /predict``) and the served
version in the request state (``X-Model-Version`` on errors, the access log's ``model_version``).

It takes a request when all of these hold, judged from the request line and headers before reading anything:
``POST /predict`` with no ``root_path``; a JSON (or absent) ``Content-Type``; a ``Content-Length`` within
``max_body_bytes``; a query string that is empty or sets only ``probabilities`` and ``ids`` to booleans; a model
loaded. Everything else (chunked bodies, bodies over the limit, other content types, unknown or malformed query
parameters, no model yet) goes on to the router untouched, which answers it as before (413, 415, 422, 503...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from fasttrack.errors import FastTrackError, PayloadTooLargeError
from fasttrack.serving.fastapi_private import route_selected
from fasttrack.serving.http_metrics import header
from fasttrack.serving.routes import predict
from fasttrack.serving.routes.common import MODEL_VERSION_HEADER, PREDICTION_ID_HEADER, is_json
from fasttrack.serving.routes.predict import predict_body

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, HTTPExceptionHandler, Receive, Scope, Send

    from fasttrack.config import Settings
    from fasttrack.serving.manager import ModelManager

PATH: Final = "/predict"
#: Boolean query values as FastAPI (pydantic) reads them; anything else is left to FastAPI's 422.
_TRUE: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE: Final = frozenset({"0", "off", "f", "false", "n", "no"})
_OPTIONS: Final = frozenset({"probabilities", "ids"})
_NO_OPTIONS: Final = (False, False)
#: Distinct query strings whose parse is remembered (clients send the same few over and over).
_QUERY_CACHE: Final = 64
_JSON: Final = (b"content-type", b"application/json")
_VERSION: Final = MODEL_VERSION_HEADER.lower().encode()
_PREDICTION_ID: Final = PREDICTION_ID_HEADER.lower().encode()


def options(query: bytes) -> tuple[bool, bool] | None:
    """``(probabilities, ids)`` from a query string, or ``None`` when it holds anything else (FastAPI decides)."""
    if not query:
        return _NO_OPTIONS
    found = {"probabilities": False, "ids": False}
    seen: set[str] = set()
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        flag = value.lower()  # no stripping: pydantic refuses ' true', so FastAPI must answer it
        if key not in _OPTIONS or key in seen or (flag not in _TRUE and flag not in _FALSE):
            return None
        seen.add(key)
        found[key] = flag in _TRUE
    return found["probabilities"], found["ids"]


def predict_route() -> APIRoute:
    """The ``POST /predict`` route the lane stands in for (the one the router would match)."""
    for route in predict.router.routes:
        if isinstance(route, APIRoute) and route.endpoint is predict.predict:
            return route
    raise LookupError(f"no POST {PATH} route in {predict.__name__}")


def install(app: FastAPI, manager: ModelManager, settings: Settings) -> None:
    """Add a lane to ``app`` as its innermost middleware (call it before any other ``add_middleware``).

    ``app`` must include :mod:`~fasttrack.serving.routes.predict`'s router without a prefix and have its
    exception handlers registered (they answer the lane's errors).
    """
    if app.user_middleware:
        raise RuntimeError("install the fast lane before any other middleware: it must be the innermost")
    app.add_middleware(
        PredictLane, manager=manager, settings=settings, route=predict_route(), handlers=app.exception_handlers
    )


class PredictLane:
    """Answers the ``POST /predict`` requests it takes (see the module docstring) and passes the rest to ``app``.

    ``handlers`` are the app's exception handlers (the mapping itself, so that handlers registered later count).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        manager: ModelManager,
        settings: Settings,
        route: APIRoute,
        handlers: Mapping[Any, HTTPExceptionHandler],
    ) -> None:
        self.app = app
        self.manager = manager
        self.settings = settings
        self.route = route
        self.handlers = handlers
        self._limit = settings.max_body_bytes
        self._queries: dict[bytes, tuple[bool, bool] | None] = {}
        # What the router's match puts in the scope (Starlette's "endpoint" and "path_params", FastAPI's "route").
        self._matched: dict[str, Any] = {"route": route, "endpoint": route.endpoint, "path_params": {}}

    def takes(self, scope: Scope) -> bool:
        """Whether this request is one for the lane (``scope`` is an HTTP request; nothing is read)."""
        if scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path"):
            return False
        if self.manager.current is None or self._options(scope.get("query_string", b"")) is None:
            return False
        length = header(scope, b"content-length")
        if length is None or not length.isdigit() or int(length) > self._limit:
            return False
        mime = header(scope, b"content-type")
        return mime is None or is_json(mime.decode("latin-1").split(";", 1)[0].strip().lower())

    def _options(self, query: bytes) -> tuple[bool, bool] | None:
        if not query:
            return _NO_OPTIONS
        if query not in self._queries:
            if len(self._queries) >= _QUERY_CACHE:
                self._queries.clear()
            self._queries[query] = options(query)
        return self._queries[query]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.takes(scope):
            await self.answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request :meth:`takes` took (errors: see the module docstring)."""
        predictor = self.manager.current
        assert predictor is not None  # takes() saw one; a swap since then leaves the new one, never None
        scope.update(self._matched)
        route_selected(scope, PATH)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["model_version"] = predictor.version  # what the route's predictor dependency records
        try:
            body = await self._read(receive)
            if body is None:
                return  # the client went away before sending its whole body: nothing to answer
            probabilities, ids = self._options(scope.get("query_string", b"")) or _NO_OPTIONS
            content, extra = await predict_body(predictor, self.settings, body, probabilities=probabilities, ids=ids)
        except FastTrackError as exc:
            await self._handle(exc, scope, receive, send)
            return
        headers = [_JSON, (_VERSION, predictor.version.encode())]
        if PREDICTION_ID_HEADER in extra:
            headers.append((_PREDICTION_ID, extra[PREDICTION_ID_HEADER].encode()))
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _handle(self, exc: FastTrackError, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``exc`` with the app's handler for it, as Starlette's exception middleware would."""
        handler = next((self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None)
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if not isinstance(response, Response):
            response = await response
        await response(scope, receive, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` when the client disconnected first."""
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        chunks = [body]
        total = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self._limit:  # the server enforces Content-Length; this guards the limit anyway
                raise PayloadTooLargeError(f"request body is over the limit of {self._limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
