"""The HTTP layer: ``create_app(settings)`` builds the FastAPI app, whose lifespan loads the model; ``run`` serves it.

Layers, as in MLServer: routes (``fasttrack.serving.routes``) -> :class:`~fasttrack.serving.predictor.Predictor`
(validate, predict; no HTTP) -> the model folder. The :class:`~fasttrack.serving.manager.ModelManager` holds the
served predictor and swaps in new registry versions. One exception handler turns every ``FastTrackError`` into
its status and a body in the shape of the API it came from: ``{"error", "details"}`` for the briefs' API,
MLflow's ``{"error_code", "message"}`` under ``/invocations``, ``{"error"}`` under ``/v2``. Any other exception
is a 500 whose body says only "internal error" and a request id (also in ``X-Request-Id``); the exception, with
its traceback, is logged under the same id, never shown to the client.

Middleware: every request goes through the app's middleware, ``POST /predict`` included; the fast lane
(:mod:`fasttrack.serving.fastlane`) is the innermost one, so a middleware added with ``app.add_middleware`` after
:func:`create_app` (authentication, CORS, tracing) sees every route.

OpenTelemetry: FastAPI's own instrumentation (a span, metrics and logs per request) is on when OpenTelemetry is set
up in the process when the app is made (see :func:`fastapi_telemetry`), as with ``opentelemetry-instrument
fasttrack serve ...``, and off otherwise: FastAPI would otherwise check the global providers on every request.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import fastapi_offline
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse
from starlette.types import Receive, Scope, Send

from fasttrack import __version__, process
from fasttrack.config import Settings, get_settings
from fasttrack.errors import FastTrackError
from fasttrack.serving import auth, fastlane, limits
from fasttrack.serving.fastapi_private import telemetry_unconfigured
from fasttrack.serving.http_metrics import AccessLog, Exchange, HttpMetrics, header, record_request
from fasttrack.serving.manager import ModelManager, load_checked
from fasttrack.serving.metrics import MULTIPROC_ENV, ServerMetrics, multiprocess_mode
from fasttrack.serving.payloads import InvocationsIn, V2InferenceRequest, openapi_for
from fasttrack.serving.predictor import Predictor
from fasttrack.serving.routes import feedback, invocations, ops, predict, v2
from fasttrack.serving.routes.common import MODEL_VERSION_HEADER, domain_error, error_body

log = logging.getLogger(__name__)

#: The header carrying a request's id: honoured when the client sends a sane one, else made; set on every 500.
REQUEST_ID_HEADER: Final = "X-Request-Id"
#: A client's request id is used when it is a short token of these characters (it goes into logs and headers).
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
#: The scope key under which the 500 handler records the id of the failure it answered and logged.
_ANSWERED: Final = "fasttrack.internal_error"
#: Where the Swagger UI and ReDoc assets are served from.
STATIC_DOCS: Final = "/static-offline-docs"
DESCRIPTION: Final = """
Serves one FastTrack model (an MLflow model URI or a local model folder) over three APIs:

- `POST /predict` (one record or a batch) and `GET /predict?feature=value`: the briefs' API;
- `POST /invocations`: MLflow's scoring protocol (`mlflow models serve` clients work unchanged);
- `/v2/...`: the Open Inference Protocol (KServe, MLServer, Triton clients), one tensor per feature.

Every prediction gets an id (`X-Prediction-Id`); `POST /feedback` sends the true labels back later, for the live
accuracy (or RMSE and MAE) in `/metrics`, next to the drift of every feature from its training distribution.

Inputs are checked against the training schema (422 names each bad field). `/health`, `/ready`, `/model` and
`/metrics` are for operators; the server follows its alias in the registry and `POST /admin/reload` checks now.
"""


def create_app(
    settings: Settings,
    *,
    predictor: Predictor | None = None,
    manager: ModelManager | None = None,
    metrics: ServerMetrics | None = None,
    on_fatal: Callable[[FastTrackError], None] | None = None,
    load_before_serving: bool | None = None,
    settle: bool = False,
) -> FastAPI:
    """Build the app. The lifespan starts the manager, which loads ``settings.model`` in the background.

    ``predictor`` serves a model already loaded (tests); ``manager`` and ``metrics`` replace the defaults;
    ``on_fatal`` is called (from the loading thread) when the first load fails, e.g. to stop the server.
    ``load_before_serving`` (default: with several workers) makes start-up wait for the first load, so that a
    worker process takes no connection before it has a model: workers share one port, and a load balancer
    cannot tell a loading worker from a ready one. ``settle`` (the real server, whose entry point deferred garbage
    collection; not tests) freezes the heap after each model swap: see :func:`fasttrack.process.settle_heap`.
    """
    metrics = metrics if metrics is not None else (manager.metrics if manager is not None else ServerMetrics())
    manager = manager or ModelManager(
        settings, metrics, predictor=predictor, on_fatal=on_fatal, after_swap=process.settle_heap if settle else None
    )
    wait_for_model = settings.workers > 1 if load_before_serving is None else load_before_serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        if wait_for_model:
            await run_in_threadpool(manager.wait_ready, None)
        try:
            yield
        finally:
            manager.stop()
            if multiprocess_mode():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    app = ServingApp(
        telemetry=fastapi_telemetry(),
        title="FastTrack model server",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local files instead: see _offline_docs
        redoc_url=None,
    )
    _offline_docs(app)
    app.state.settings = settings
    app.state.manager = manager
    app.state.metrics = metrics
    for router in (predict.router, feedback.router, invocations.router, v2.router, ops.router):
        app.include_router(router)
    _add_error_handlers(app)
    # Innermost first: the lane, the load limits, then the access log around them; what a user adds after create_app
    # wraps them, and the HTTP metrics (ServingApp itself) wrap everything.
    fastlane.install(app, manager, settings)
    limits.install(app, settings, metrics)  # load limits: around the lane, inside access control
    auth.install(app, settings, metrics)  # access control: outside the lane and the load limits, inside the log
    app.http_metrics = metrics.http
    if settings.access_log:
        app.add_middleware(AccessLog)
    _document_the_model(app, manager, settings)
    return app


#: FastAPI's native telemetry turned off: what :func:`fastapi_telemetry` answers when there is nowhere to send it.
TELEMETRY_OFF: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}


def fastapi_telemetry() -> TelemetryConfig | None:
    """FastAPI's telemetry settings for a new app: its defaults (``None``) when OpenTelemetry is set up, else off.

    Set up means a tracer, meter or logger provider was set in this process (``opentelemetry-instrument`` does it
    before the program starts; so does code that configures the SDK before :func:`create_app`), or FastAPI is asked
    to configure one from the environment (``FASTAPI_OTEL_AUTO_CONFIGURE=true``). Otherwise FastAPI would look at
    the three global providers on every request to find them unset, about 14 µs of a prediction's ~250 µs. A
    provider set after the app was made is not seen: set OpenTelemetry up first.

    Whether a provider is set is FastAPI's own test (:func:`~fasttrack.serving.fastapi_private.telemetry_unconfigured`),
    so the two never disagree.
    """
    if os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").strip().lower() == "true":
        return None
    from opentelemetry import _logs, metrics, trace

    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    return TELEMETRY_OFF if telemetry_unconfigured(*providers) else None


class ServingApp(FastAPI):
    """The FastAPI app, whose 500s are logged once, and which records every HTTP request in its metrics.

    Starlette's outermost middleware answers an unexpected exception with the app's handler (see
    :func:`internal_error`), then raises it again "so that servers can log it": Uvicorn would log the traceback a
    second time, without the request id. An exception the handler answered stops here instead; any other (one
    raised by the handler itself, a failed lifespan) goes on to the server.

    :attr:`http_metrics` (set by :func:`create_app`) times every HTTP request here, outside the whole middleware
    stack, and records it under its route template (:func:`~fasttrack.serving.http_metrics.record_request`):
    requests a middleware refused count too, under the handler ``none``. Done here rather than in a middleware of
    its own because this frame exists anyway, and each frame costs a request twice, whenever it waits (for the
    shared model call, for instance): 12-15 µs per prediction as a middleware.
    """

    #: The HTTP metrics requests are recorded in (``None``: none are).
    http_metrics: HttpMetrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.http_metrics
        if metrics is None or scope["type"] != "http":
            try:
                await super().__call__(scope, receive, send)
            except Exception:
                if _ANSWERED not in scope:
                    raise
            return
        exchange = Exchange(send)
        try:
            await super().__call__(scope, receive, exchange.send)
        except BaseException as exc:
            record_request(metrics, scope, exchange)  # 500, unless the answer had started
            if isinstance(exc, Exception) and _ANSWERED in scope:
                return
            raise
        if exchange.answered:  # else the client went away before its whole body: nothing answered, nothing to count
            record_request(metrics, scope, exchange)


# ------------------------------------------------------------------------------------------------------ errors
def error_response(
    request: Request, status: int, message: str, details: list[dict[str, str]] | None = None
) -> Response:
    """An error in the shape of the API the request was for, with ``X-Model-Version`` when a model answered."""
    status, body = error_body(request.url.path, status, message, details)
    version = getattr(request.state, "model_version", None)
    headers = {MODEL_VERSION_HEADER: version} if version else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def request_id(scope: Scope) -> str:
    """The request's id: the client's ``X-Request-Id`` when it is a sane token, else a new random one.

    Made only when an answer needs it (a 500), so the requests that succeed pay nothing for it.
    """
    given = header(scope, REQUEST_ID_HEADER.lower().encode())
    if given is not None:
        text = given.decode("latin-1")
        if _SANE_REQUEST_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


def internal_error(request: Request, exc: BaseException) -> Response:
    """The 500 answer to an exception: "internal error" and a request id; the exception is logged with that id.

    The body holds nothing of the exception (no text, no type, no traceback, no path): those can tell a client
    about the server's internals. The id, in the body and in ``X-Request-Id``, finds the log record.
    """
    rid = request_id(request.scope)
    request.scope[_ANSWERED] = rid
    log.error("internal error %s on %s %s", rid, request.method, request.scope["path"], exc_info=exc)
    response = error_response(request, 500, f"internal error (request id {rid})")
    response.headers[REQUEST_ID_HEADER] = rid
    return response


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FastTrackError)
    async def fasttrack_error(request: Request, exc: FastTrackError) -> Response:
        status, message, details = domain_error(exc)
        if status == 500:  # a FastTrackError without a status of its own: a failure like any other
            return internal_error(request, exc)
        return error_response(request, status, message, details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        details = [
            {"field": ".".join(str(p) for p in error.get("loc", ())), "reason": str(error.get("msg", "invalid"))}
            for error in exc.errors()
        ]
        shown = "; ".join(f"{d['field']}: {d['reason']}" for d in details[:5])
        return error_response(request, 422, f"invalid request: {shown}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(request, exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return internal_error(request, exc)


# ----------------------------------------------------------------------------------------------------- OpenAPI
def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from local files, as FastAPI's docs show for self-hosting them.

    The JavaScript and CSS are the ones the ``fastapi-offline`` package bundles, served under ``STATIC_DOCS``:
    the pages work on a machine without internet access.
    """
    app.mount(STATIC_DOCS, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="static-docs")

    def page_parts(request: Request) -> tuple[str, str, str]:
        root = request.scope.get("root_path", "").rstrip("/")
        return f"{root}{app.openapi_url}", f"{root}{STATIC_DOCS}", app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi_url, static, title = page_parts(request)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        openapi_url, static, title = page_parts(request)
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{static}/redoc.standalone.js",
            redoc_favicon_url=f"{static}/favicon.png",
            with_google_fonts=False,
        )


def _document_the_model(app: FastAPI, manager: ModelManager, settings: Settings) -> None:
    """Make ``/openapi.json`` (and so ``/docs``) describe the served model's real features, with an example."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        current = manager.current
        key = (current.name, current.version) if current else None
        if cache.get("key") == key and "document" in cache:
            document: dict[str, Any] = cache["document"]
            return document
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (InvocationsIn, V2InferenceRequest):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        openapi_for(document, current.schema if current else None, settings.max_batch_rows, settings.extra_fields)
        cache.update(key=key, document=document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# ----------------------------------------------------------------------------------------------------- running
def configure_logging(settings: Settings) -> None:
    """Log FastTrack's messages at the configured level; keep libraries quiet."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fasttrack").setLevel(settings.log_level.upper())
    for noisy in ("alembic", "mlflow", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def app_from_env() -> FastAPI:
    """The app of one worker process (``--workers N``): settings from the environment the parent prepared."""
    process.defer_collection()  # until the model is loaded and its heap settled
    settings = get_settings()
    configure_logging(settings)
    return create_app(settings, settle=True)


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests (up to ``drain_timeout`` seconds).

    The model URI is resolved (and a registered version downloaded) before the port is bound, so an unknown model
    fails at once with one line. One worker loads the model in the background (``/health`` answers meanwhile)
    and stops the server with the error if that first load fails. Several workers are separate processes
    started by Uvicorn: the model is loaded and checked here first (so a broken one fails before binding), the
    settings pass through the environment, each worker takes connections only once its model is loaded, and
    metrics go through a fresh ``PROMETHEUS_MULTIPROC_DIR``.
    """
    process.defer_collection()  # start-up allocates a million objects to keep: none collected until settled
    import uvicorn

    from fasttrack.registry.resolve import resolve_model

    configure_logging(settings)
    auth.check(settings)  # a key file no worker could read is refused before anything is loaded or bound
    resolved = resolve_model(settings.model, settings)
    if settings.inference_log:  # a location no worker could write to is refused before the port is bound
        from fasttrack.monitoring.log_writer import open_store

        open_store(settings.inference_log)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,  # FastTrack's own access log (settings.access_log) replaces Uvicorn's
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": settings.drain_timeout,
        "lifespan": "on",
    }
    if settings.workers == 1:
        failure: list[FastTrackError] = []
        server: uvicorn.Server | None = None

        def fatal(error: FastTrackError) -> None:
            failure.append(error)
            if server is not None:
                server.should_exit = True

        server = uvicorn.Server(uvicorn.Config(create_app(settings, on_fatal=fatal, settle=True), **common))
        server.run()
        if failure:
            raise failure[0]
        return
    load_checked(resolved, ServerMetrics(), settings)
    process.resume_collection()  # this process only supervises the workers from here on (each settles its own)
    metrics_dir, made = _multiprocess_dir()
    try:
        _export(settings)
        uvicorn.run("fasttrack.serving.app:app_from_env", factory=True, workers=settings.workers, **common)
    finally:
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _multiprocess_dir() -> tuple[Path, bool]:
    """The folder worker processes write metrics to: ``PROMETHEUS_MULTIPROC_DIR`` emptied, or a new one."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder, False
    folder = Path(tempfile.mkdtemp(prefix="fasttrack-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder, True


def _export(settings: Settings) -> None:
    """Put every setting in the environment, where the worker processes' ``get_settings()`` reads them."""
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            # Mappings travel as JSON, the way pydantic-settings reads them back.
            text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
            os.environ[f"FASTTRACK_{name.upper()}"] = text
