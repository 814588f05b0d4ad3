"""Operating the server: liveness, readiness, what is served, Prometheus metrics and a forced registry check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from fasttrack.errors import UnsupportedMediaTypeError
from fasttrack.serving.manager import REFUSED_BEFORE, ReloadResult
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.payloads import ERROR_RESPONSES, ErrorOut, HealthOut, ModelOut, ReadyOut, ReloadOut
from fasttrack.serving.routes.common import ManagerDep, PredictorDep, json_response, media_type

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut, summary="Liveness")
async def health() -> dict[str, str]:
    """The process answers (whether or not a model is loaded yet)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "No model loaded yet."}},
    summary="Readiness",
)
async def ready(manager: ManagerDep) -> Response:
    """A model is loaded and serving (503 before, and while a failed first load leaves none)."""
    predictor = manager.current
    if predictor is None:
        error = manager.load_reason
        return json_response({"status": "loading", "error": error}, status_code=503)
    return json_response({"status": "ready", "model": predictor.name, "version": predictor.version})


@router.get("/model", response_model=ModelOut, responses={503: ERROR_RESPONSES[503]}, summary="The model served")
async def model(predictor: PredictorDep) -> Response:
    """Name, version, alias, run, training time, metrics, labels, and every feature with its type and range."""
    return json_response(predictor.describe())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (all worker processes merged when there are several; drift and live metrics computed)."""
    server_metrics: ServerMetrics = request.app.state.metrics
    # In the thread pool: drift scores are computed now (about a millisecond per feature), off the event loop.
    return Response(await run_in_threadpool(server_metrics.render), media_type=CONTENT_TYPE_LATEST)


def json_only(request: Request) -> None:
    """Refuse (415) a request without ``Content-Type: application/json``: one a web page can send unasked.

    A page in an operator's browser can POST to any address the browser reaches (``fetch`` in ``no-cors`` mode, or
    a form) with no CORS preflight only when the body is a form, ``text/plain``, or has no content type at all;
    ``application/json`` needs the server's consent first, which this server never gives. So asking for it keeps
    such pages from forcing reloads, whether or not API keys are on.
    """
    if media_type(request) != "application/json":
        given = request.headers.get("content-type")
        shown = "none" if given is None else repr(given)
        raise UnsupportedMediaTypeError(
            f"{request.url.path} needs 'Content-Type: application/json' (got {shown}) so that a web page cannot "
            "send it; the body may be empty or {}"
        )


@router.post(
    "/admin/reload",
    response_model=ReloadOut,
    responses={415: {"model": ErrorOut, "description": "Content type other than application/json."}},
    dependencies=[Depends(json_only)],
    summary="Check the registry now",
)
async def reload(manager: ManagerDep) -> dict[str, Any]:
    """Resolve the model URI now; load, check and swap in a new version if there is one.

    Send it with ``Content-Type: application/json`` (the body may be empty or ``{}``): anything else is refused
    with 415, so that a web page open in an operator's browser cannot send it.

    The answer says what happened: ``reloaded``, ``unchanged``, or ``refused`` (the new version failed to load or
    check; the old one keeps serving), with a short reason. What exactly failed (the exception, the model cache's
    paths) is in the server's log, never in the answer. A version refused before is tried again.
    """
    result = await run_in_threadpool(manager.reload, force=True)
    return {
        "outcome": result.outcome,
        "model": result.model,
        "version": result.version,
        "candidate": result.candidate,
        "error": reload_reason(result),
    }


def reload_reason(result: ReloadResult) -> str | None:
    """A refused reload's reason as a client may see it: what failed, without server paths or exception text.

    The error's ``public`` reason (a file of the model folder that changed, a graph that does not open) is shown
    when it has one; the rest is in the server's log.
    """
    if result.outcome != "refused":
        return None
    more = f": {result.reason}" if result.reason else ""
    if result.candidate is None:
        if result.reason:
            return f"cannot fetch the new version{more}; the server log says more"
        return "cannot check the registry for a new version; the server log says why"
    if result.error == REFUSED_BEFORE:
        return f"version {result.candidate} was refused before"
    if result.reason:
        return f"cannot load version {result.candidate}{more}; the server log says more"
    return f"cannot load version {result.candidate}: it failed to load or to pass its check; the server log says why"
