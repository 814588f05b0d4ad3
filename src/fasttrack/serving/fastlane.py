"""The fast lane: ``POST /predict`` answered at the ASGI level, ahead of FastAPI's routing and middleware.

A one-row prediction through ONNX Runtime takes tens of microseconds; FastAPI's own path (middleware, routing,
dependency solving, parameter parsing, response wrapping) costs more than that even for a hello-world endpoint.
The lane takes the requests that need none of it, the everyday ones, and answers them with the *same* code the
route uses (:func:`fasttrack.serving.routes.predict.predict_body`): same validation, same answers, same errors,
same model metrics, drift and feedback windows, same HTTP metrics (:class:`~fasttrack.serving.http_metrics.HttpMetrics`)
and access log line.

It takes a request when all of these hold, judged from the request line and headers before reading anything:
``POST /predict`` with no ``root_path``; a JSON (or absent) ``Content-Type``; a ``Content-Length`` within
``max_body_bytes``; a query string that is empty or sets only ``probabilities`` and ``ids`` to booleans; a model
loaded. Everything else (chunked bodies, bodies over the limit, other content types, unknown or malformed query
parameters, no model yet) goes to the FastAPI app untouched, which answers it as before (413, 415, 422, 503...).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from fasttrack.errors import FastTrackError, PayloadTooLargeError
from fasttrack.serving.http_metrics import HttpMetrics, header, log_access
from fasttrack.serving.routes.common import (
    MODEL_VERSION_HEADER,
    PREDICTION_ID_HEADER,
    domain_error,
    error_body,
    is_json,
)
from fasttrack.serving.routes.predict import predict_body

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from fasttrack.config import Settings
    from fasttrack.serving.manager import ModelManager

log = logging.getLogger(__name__)

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


class PredictLane:
    """Answers the ``POST /predict`` requests it takes (see the module docstring); :meth:`takes` decides."""

    def __init__(
        self, manager: ModelManager, settings: Settings, http: HttpMetrics, *, access_log: bool = False
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.http = http
        self.access_log = access_log
        self._limit = settings.max_body_bytes
        self._measured = http.measured(PATH)
        self._queries: dict[bytes, tuple[bool, bool] | None] = {}

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
        start = perf_counter()
        predictor = self.manager.current
        assert predictor is not None  # takes() saw one; a swap since then leaves the new one, never None
        headers: list[tuple[bytes, bytes]] = [_JSON, (_VERSION, predictor.version.encode())]
        body = b""
        try:
            body = await self._read(receive)
            probabilities, ids = self._options(scope.get("query_string", b"")) or _NO_OPTIONS
            content, extra = await predict_body(predictor, self.settings, body, probabilities=probabilities, ids=ids)
            status = 200
            if PREDICTION_ID_HEADER in extra:
                headers.append((_PREDICTION_ID, extra[PREDICTION_ID_HEADER].encode()))
        except FastTrackError as exc:
            status, content = error_body(PATH, *domain_error(exc))
        except _DisconnectedError:
            return
        except Exception as exc:  # what the app's last-resort handler does: answer 500, log one line
            log.error("unexpected error on POST %s: %s: %s", PATH, type(exc).__name__, exc)
            status, content = error_body(PATH, 500, f"internal error: {type(exc).__name__}: {exc}")
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        seconds = perf_counter() - start
        if self._measured:
            self.http.observe("POST", PATH, status, seconds, len(body), len(content))
        if self.access_log:
            log_access(scope, status, seconds, predictor.version)

    async def _read(self, receive: Receive) -> bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        chunks = [body]
        total = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _DisconnectedError
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self._limit:  # the server enforces Content-Length; this guards the limit anyway
                raise PayloadTooLargeError(f"request body is over the limit of {self._limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _DisconnectedError(Exception):
    """The client went away before sending its whole body: nothing to answer."""
