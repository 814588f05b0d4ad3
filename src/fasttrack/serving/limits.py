"""Load limits: a bound on the requests served at once (503 beyond it), a per-request timeout (504), and no work
for a client that went away.

:class:`LoadLimits` is a pure ASGI middleware, installed by :func:`install` inside access control and outside the
prediction fast lane, so ``POST /predict``'s lane is covered like every route. Probes (``/health``, ``/ready``,
``/metrics``, ``/v2/health/...``) pass straight through: never counted, never refused, so that an orchestrator sees
an overloaded server as alive.

- **Concurrency limit** (``FASTTRACK_MAX_IN_FLIGHT``). At most that many requests are served at once. One more
  waits for a slot, in arrival order, up to ``FASTTRACK_QUEUE_TIMEOUT`` seconds, when fewer than
  ``FASTTRACK_MAX_QUEUED`` wait already; any other is answered at once with 503 and ``Retry-After``. Without the
  bound, an event-loop server takes every request it can read and all of them get slower together: at a rate above
  what the model can do, latency grows without end and every client times out, served or not. With it, the
  requests taken are served at their usual speed and the others learn at once that they should retry.
- **Per-request timeout** (``FASTTRACK_REQUEST_TIMEOUT``). A request still unanswered after that many seconds is
  cancelled and answered 504. What is cancelled: a request waiting (for its body, the shared model call, a thread
  of the pool) stops there and is never predicted. A model call already running in a thread cannot be
  interrupted (ONNX Runtime and scikit-learn offer no way): it finishes in its thread and its answer is dropped.
- **Clients gone.** A request whose client disconnected while it waited for a slot is dropped when it gets one,
  before the app sees it; one whose client disconnected after sending its whole body is cancelled like a timed-out
  one, without an answer: a batch waiting for a thread of the pool is dropped before it is predicted (one already
  in the model finishes there, unanswered).

One timer (a ``call_later`` every :data:`TICK` seconds while requests are in flight, not one per request) checks
the timeouts and the disconnections, so a request that finishes within a tick costs only its bookkeeping. Whether
a client is gone is asked of the server without waiting (:func:`disconnected`), only for requests whose body has
been read and whose answer has not started. Refused, timed-out and abandoned requests are counted in
``fasttrack_requests_dropped_total{reason}`` (:class:`~fasttrack.serving.metrics.ServerMetrics`).

The middleware also tells the feedback window whose predictions these are
(:data:`fasttrack.serving.feedback.CLIENT`): the caller's API key id when access control put one in the scope
(``scope["fasttrack.api_key"]``), else the client's address.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from fasttrack.serving.feedback import CLIENT
from fasttrack.serving.metrics import DROP_REASONS
from fasttrack.serving.routes.common import error_body

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from fasttrack.config import Settings
    from fasttrack.serving.metrics import ServerMetrics

#: Seconds between two checks of the requests in flight (timeouts, disconnections): a timeout fires up to this late.
TICK: Final = 0.05
#: Paths never limited: the probes and the scrape.
PROBES: Final = frozenset({"/health", "/ready", "/metrics"})
PROBE_PREFIX: Final = "/v2/health/"
#: Reasons a request was dropped, as counted in ``fasttrack_requests_dropped_total{reason}``.
SHED, TIMEOUT, CLIENT_GONE = DROP_REASONS
#: The scope key access control sets to the caller's key id (never the secret).
API_KEY: Final = "fasttrack.api_key"


def install(app: FastAPI, settings: Settings, metrics: ServerMetrics) -> None:
    """Add :class:`LoadLimits` to ``app`` (call it right after the fast lane's install: see the module docstring)."""
    app.add_middleware(LoadLimits, settings=settings, metrics=metrics)


def poll(receive: Receive) -> Message | None:
    """The message the server has ready for ``receive``, or ``None`` when it has none yet, asked without waiting.

    ``receive`` is run up to its first wait: a server with a message ready (a piece of the body, or
    ``http.disconnect`` once it knows the client is gone) returns it at once, as Uvicorn does; otherwise the wait
    is abandoned and nothing is taken. Starlette's ``Request.is_disconnected`` asks the same way.
    """
    step = receive()
    if not inspect.iscoroutine(step):
        return None
    try:
        step.send(None)
    except StopIteration as done:
        message: Any = done.value
        return message if isinstance(message, dict) else None
    except Exception:  # a server whose receive cannot run outside its task: it cannot tell, the request goes on
        return None
    step.close()
    return None


def disconnected(receive: Receive) -> bool:
    """Whether the server already knows the client is gone (see :func:`poll`), for a request whose body was read
    whole: otherwise a piece of the body could be taken from the app."""
    message = poll(receive)
    return message is not None and message["type"] == "http.disconnect"


class _Request:
    """One request in flight: its task, when it started, and what the middleware learnt of it."""

    __slots__ = ("_receive", "_send", "answered", "body_read", "ready", "started", "task", "verdict")

    def __init__(
        self, task: asyncio.Task[Any], receive: Receive, send: Send, started: float, ready: Message | None
    ) -> None:
        self.task = task
        self.started = started
        self._receive = receive
        self._send = send
        self.ready = ready  # a message taken from the server before the app ran, given to the app first
        self.body_read = False
        self.answered = False
        self.verdict: str | None = None

    async def receive(self) -> Message:
        message = self.ready
        if message is None:
            message = await self._receive()
        else:
            self.ready = None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_read = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.answered = True
        await self._send(message)

    def client_gone(self) -> bool:
        return self.body_read and not self.answered and disconnected(self._receive)


class LoadLimits:
    """The concurrency limit, the timeout and the drop of abandoned requests (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings, metrics: ServerMetrics) -> None:
        self.app = app
        self.limit = settings.max_in_flight or None
        self.max_queued = settings.max_queued
        self.queue_timeout = settings.queue_timeout
        self.timeout = settings.request_timeout or None
        self.retry_after = str(settings.retry_after).encode()
        self._dropped = {reason: metrics.dropped.labels(reason) for reason in DROP_REASONS}
        self._busy = 0  # slots taken (in flight, or handed to a waiter that has not resumed yet)
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._requests: dict[_Request, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        """Requests being served now (probes excluded)."""
        return len(self._requests)

    @property
    def queued(self) -> int:
        """Requests waiting for a slot now."""
        return sum(1 for slot in self._waiting if not slot.done())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PROBES or path.startswith(PROBE_PREFIX):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        CLIENT.set(scope.get(API_KEY) or (client[0] if client else ""))
        limit = self.limit
        ready: Message | None = None
        if limit is not None:
            if self._busy < limit:
                self._busy += 1
            elif not await self._wait_for_slot():
                self._dropped[SHED].inc()
                message = f"overloaded: {limit} requests in flight (FASTTRACK_MAX_IN_FLIGHT); retry later"
                await self._refuse(path, send, 503, message, [(b"retry-after", self.retry_after)])
                return
            else:  # it waited: is its client still there? (what the server has ready goes to the app first)
                ready = poll(receive)
                if ready is not None and ready["type"] == "http.disconnect":
                    self._release()
                    self._dropped[CLIENT_GONE].inc()
                    return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # an ASGI app runs in a task
        request = _Request(task, receive, send, loop.time(), ready)
        self._requests[request] = None
        if self._timer is None:
            self._timer = loop.call_later(TICK, self._check)
        try:
            await self.app(scope, request.receive, request.send)
        except asyncio.CancelledError:
            if request.verdict is None:
                raise
            task.uncancel()  # the cancellation was ours, and is answered here
        finally:
            del self._requests[request]
            if limit is not None:
                self._release()
        if request.verdict is not None:
            self._dropped[request.verdict].inc()
            if request.verdict == TIMEOUT and not request.answered:
                message = f"request timed out after {self.timeout:g} s (FASTTRACK_REQUEST_TIMEOUT)"
                await self._refuse(path, send, 504, message)

    async def _wait_for_slot(self) -> bool:
        """Wait for a slot up to the queue timeout (when the queue has room); whether one was handed over."""
        if len(self._waiting) >= self.max_queued or self.queue_timeout <= 0:
            return False
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        try:
            await asyncio.wait_for(asyncio.shield(slot), self.queue_timeout)
        except TimeoutError:
            pass
        except BaseException:  # cancelled while waiting (the server stops): a slot handed over meanwhile goes on
            if slot.done():
                self._release()
            else:
                self._waiting.remove(slot)
            raise
        if slot.done():  # handed over, possibly just as the wait ended
            return True
        self._waiting.remove(slot)
        slot.cancel()
        return False

    def _release(self) -> None:
        """Hand the slot to the first request waiting for one, else free it."""
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self._busy -= 1

    def _check(self) -> None:
        """Cancel the requests over the timeout, and those whose client went away; rearm while any is in flight."""
        requests = self._requests
        if not requests:
            self._timer = None
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeout = self.timeout
        for request in list(requests):
            if request.verdict is not None or request.answered or now - request.started < TICK:
                continue
            if timeout is not None and now - request.started >= timeout:
                request.verdict = TIMEOUT
            elif request.client_gone():
                request.verdict = CLIENT_GONE
            else:
                continue
            request.task.cancel()
        self._timer = loop.call_later(TICK, self._check)

    @staticmethod
    async def _refuse(
        path: str, send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        status, body = error_body(path, status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
