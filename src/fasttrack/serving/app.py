"""The HTTP layer: ``create_app(settings)`` builds the FastAPI app; the lifespan loads the model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import Response

from fasttrack.config import Settings
from fasttrack.errors import FastTrackError, SchemaValidationError
from fasttrack.serving.predictor import Prediction, Predictor, Record

log = logging.getLogger(__name__)


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json", headers=headers)


def create_app(settings: Settings, predictor: Predictor | None = None) -> FastAPI:
    """Build the app. With no ``predictor`` given, the lifespan loads ``settings.model`` (or the default)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.predictor = predictor or Predictor.load(settings.model, settings)
        current: Predictor = app.state.predictor
        log.info("serving %s version %s", current.name, current.version)
        yield

    app = FastAPI(title="FastTrack model server", lifespan=lifespan)

    @app.exception_handler(FastTrackError)
    async def _domain_error(request: Request, exc: FastTrackError) -> Response:
        body: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, SchemaValidationError):
            body["details"] = [{"field": v.field, "reason": v.reason} for v in exc.violations]
        return _json(body, status_code=exc.status_code)

    def _predictor(request: Request) -> Predictor:
        current: Predictor = request.app.state.predictor
        return current

    def _answer(predictor: Predictor, rows: list[Prediction], single: bool) -> Response:
        def one(p: Prediction) -> dict[str, Any]:
            return (
                {"prediction": p.value}
                if p.probabilities is None
                else {
                    "prediction": p.value,
                    "probabilities": p.probabilities,
                }
            )

        if single:
            content: Any = one(rows[0])
        else:
            content = {"predictions": [r.value for r in rows]}
            if rows and rows[0].probabilities is not None:
                content["probabilities"] = [r.probabilities for r in rows]
        return _json(content, headers={"X-Model-Version": predictor.version})

    @app.post("/predict")
    def predict(
        request: Request,
        body: Annotated[Record | list[Record], Body(examples=[{"feature_1": 5.3, "feature_2": 2.1}])],
        probabilities: Annotated[bool, Query(description="Add class probabilities (classifiers).")] = False,
    ) -> Response:
        """Predict one record (an object) or a batch (an array of objects)."""
        predictor = _predictor(request)
        single = isinstance(body, dict)
        records = [body] if isinstance(body, dict) else body
        return _answer(predictor, predictor.predict(records, probabilities=probabilities), single)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready(request: Request) -> Response:
        """Readiness: a model is loaded."""
        current = getattr(request.app.state, "predictor", None)
        if current is None:
            return _json({"status": "loading"}, status_code=503)
        return _json({"status": "ready", "model": current.name, "version": current.version})

    return app


def run(settings: Settings) -> None:
    """Serve with Uvicorn until interrupted."""
    import uvicorn

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        log_level=settings.log_level,
    )
