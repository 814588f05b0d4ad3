"""Access control: a pure ASGI middleware that asks every request for an API key with the scope its path needs.

Off by default; ``FASTTRACK_AUTH=true`` turns it on (:func:`install` then adds :class:`AccessControl` to the app).
It sits inside the access log and the HTTP metrics (a refused request is logged and counted, under the handler
``none``) and outside the load limits and the prediction fast lane, so it sees every request, ``POST /predict``'s
fast lane included, before anything is read or computed for it.

Which scope a path needs (:func:`required_scope`), decided from the path alone, before routing:

========================================================================  ==========================================
``/admin`` and ``/admin/...``                                            ``admin``
``/feedback`` (and below)                                                 ``feedback``
``/health``, ``/ready``, ``/v2/health/live``, ``/v2/health/ready``,       none with ``FASTTRACK_AUTH_OPEN_PROBES``
``/metrics``                                                              (the default); else any known key
everything else: ``/predict``, ``/invocations``, every other ``/v2``      ``predict``
path (inference and metadata), ``/model``, ``/docs``, ``/redoc``,
``/openapi.json`` and their assets, a path no route answers
========================================================================  ==========================================

The model's description (``/model``, ``/openapi.json``, V2 metadata) tells a caller what to send, so it goes with
``predict``; an unknown path needs a key too, so that a caller without one learns nothing of which routes exist,
and a route added later is behind ``predict`` until it is given a rule here (tests/unit/serving/test_auth.py lists
every route with its scope and fails on one it does not know).

The key comes from ``X-API-Key`` if present, else from ``Authorization: Bearer``. Answers, in the shape of the
API the path belongs to (:func:`~fasttrack.serving.routes.common.error_body`): 401 without a key or with an
unknown one (``WWW-Authenticate: Bearer``, RFC 6750), 403 with a key whose scopes do not cover the path. The
caller's key id (its name, never the secret) goes into the ASGI scope as ``scope["fasttrack.api_key"]`` (the
access log and per-key limits read it). The secret never reaches a log line, a metric label or an answer: it is
hashed on arrival and only its id is used from there on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Final

from fasttrack.errors import ConfigError
from fasttrack.serving.keys import KeyFile, KeyRing, KeyScope, parse_entries
from fasttrack.serving.routes.common import error_body

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from fasttrack.config import Settings
    from fasttrack.serving.metrics import ServerMetrics

#: The ASGI scope key holding the id of the caller's key (absent when access control is off or the path is open).
API_KEY_SCOPE: Final = "fasttrack.api_key"
#: Paths a probe or Prometheus reads: open with ``FASTTRACK_AUTH_OPEN_PROBES``, else any known key reads them.
PROBES: Final = frozenset({"/health", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"})
#: What :func:`required_scope` answers for a probe: a known key, whatever its scopes.
ANY_KEY: Final = "any"
#: How often (seconds) the key file is looked at for changes (a ``stat``, on the event loop).
KEY_FILE_INTERVAL: Final = 1.0
_API_KEY: Final = b"x-api-key"
_AUTHORIZATION: Final = b"authorization"
_BEARER: Final = b"bearer "
_NO_KEY: Final = "none"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the metric's ``reason``, the status, the message and the ``WWW-Authenticate``
    challenge (RFC 6750's ``error`` codes)."""

    reason: str
    status: int
    message: str
    challenge: str


MISSING: Final = Refusal(
    "missing",
    401,
    "an API key is needed: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
    'Bearer realm="fasttrack"',
)
INVALID: Final = Refusal("invalid", 401, "the API key is not valid", 'Bearer realm="fasttrack", error="invalid_token"')


def lacking(key_id: str, scope: str) -> Refusal:
    """The refusal of a known key whose scopes do not include ``scope``."""
    return Refusal(
        "scope",
        403,
        f"API key {key_id!r} lacks the scope {scope!r} this path needs",
        f'Bearer realm="fasttrack", error="insufficient_scope", scope="{scope}"',
    )


def required_scope(path: str) -> KeyScope | str:
    """The scope a request to ``path`` (the route path, without ``root_path``) needs: a key scope or
    :data:`ANY_KEY` (a probe; whether probes are open at all is :class:`AccessControl`'s setting)."""
    if path in PROBES:
        return ANY_KEY
    if path == "/admin" or path.startswith("/admin/"):
        return "admin"
    if path == "/feedback" or path.startswith("/feedback/"):
        return "feedback"
    return "predict"


def key_ring(settings: Settings) -> KeyRing:
    """The keys in force: ``FASTTRACK_API_KEYS`` and the key file (a :class:`ConfigError` when either is wrong
    or no key is given at all)."""
    fixed = parse_entries(settings.api_keys, "FASTTRACK_API_KEYS")
    file = KeyFile(settings.api_keys_file) if settings.api_keys_file is not None else None
    ring = KeyRing(fixed, file)
    if not len(ring) and file is None:
        raise ConfigError("FASTTRACK_AUTH is on but no API key is given (FASTTRACK_API_KEYS, FASTTRACK_API_KEYS_FILE)")
    return ring


def check(settings: Settings) -> None:
    """Refuse (:class:`ConfigError`) access-control settings the server could not start with: called before the
    port is bound, so that an unreadable key file fails at once with one line (with several workers, too)."""
    if settings.auth:
        key_ring(settings)


def install(app: FastAPI, settings: Settings, metrics: ServerMetrics) -> None:
    """Add :class:`AccessControl` to ``app`` when ``settings.auth`` is on (nothing otherwise: it costs nothing off).

    Call it after the load limits' and the fast lane's ``install`` and before the access log is added: Starlette
    makes the last middleware added the outermost.
    """
    if not settings.auth:
        return
    ring = key_ring(settings)
    app.add_middleware(AccessControl, keys=ring, open_probes=settings.auth_open_probes, metrics=metrics)


class AccessControl:
    """Lets a request through when it carries a known key with the scope its path needs; answers 401 or 403
    otherwise (see the module docstring). ``metrics`` counts refusals by reason and key id."""

    def __init__(self, app: ASGIApp, *, keys: KeyRing, open_probes: bool, metrics: ServerMetrics) -> None:
        self.app = app
        self.keys = keys
        self.open_probes = open_probes
        self.metrics = metrics
        self._next_look = monotonic() + KEY_FILE_INTERVAL
        self._count_keys()
        for refusal in (MISSING, INVALID):  # at 0 from the start, so that increase() sees the first refusal
            metrics.auth_refused.labels(refusal.reason, _NO_KEY)

    def _count_keys(self) -> None:
        self.metrics.api_keys.set(len(self.keys))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # the router matches the path without root_path: judge the same one
            path = path[len(root) :]
        needed = required_scope(path)
        if needed == ANY_KEY and self.open_probes:
            await self.app(scope, receive, send)
            return
        if self.keys.file is not None:
            now = monotonic()
            if now >= self._next_look:
                self._next_look = now + KEY_FILE_INTERVAL
                self.keys.refresh()
                self._count_keys()
        secret = _presented(scope["headers"])
        if secret is None:
            await self._refuse(scope, send, path, MISSING)
            return
        key = self.keys.find(secret)
        if key is None:
            await self._refuse(scope, send, path, INVALID)
            return
        scope[API_KEY_SCOPE] = key.id
        if needed != ANY_KEY and needed not in key.scopes:
            await self._refuse(scope, send, path, lacking(key.id, needed), key.id)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, path: str, refusal: Refusal, key_id: str = _NO_KEY) -> None:
        """Answer the refusal (a WebSocket is closed with 1008, policy violation) and count it."""
        self.metrics.auth_refused.labels(refusal.reason, key_id).inc()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        status, body = error_body(path, refusal.status, refusal.message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", refusal.challenge.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _presented(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key the request carries: ``X-API-Key`` if present, else ``Authorization: Bearer`` (``None``: neither)."""
    bearer = None
    for name, value in headers:
        if name == _API_KEY:
            return bytes(value.strip()) or None
        if name == _AUTHORIZATION and bearer is None and value[:7].lower() == _BEARER:
            bearer = bytes(value[7:].strip()) or None
    return bearer
