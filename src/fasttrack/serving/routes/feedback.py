"""``POST /feedback``: the true labels of earlier predictions, joined by id into the live accuracy (or RMSE, MAE).

Every prediction answer carries its id in ``X-Prediction-Id`` (for a batch, the base id: row ``i``'s id is
``{base}-{i}``; ``?ids=true`` lists them in the body). When the truth is known, send it back: one
``{"id": ..., "label": ...}``, a list of them, or ``{"items": [...]}``. The answer is always 200 and says, for
every label in order, whether it was ``matched`` with its prediction or why not (``unknown``, ``expired``,
``duplicate``, ``invalid``), with the counts per outcome: an id the server does not know is an answer, not an error.

The predictions are remembered in the process that made them (the last ``FASTTRACK_FEEDBACK_CAPACITY``, for
``FASTTRACK_FEEDBACK_TTL`` seconds when set): with ``--workers N > 1`` a label must reach the worker that made the
prediction, so live accuracy wants one worker (or sticky routing); elsewhere the id is ``unknown``. With the
inference log on (``FASTTRACK_INFERENCE_LOG``), every label but the ``invalid`` ones is also logged with its outcome,
and the log joins labels to predictions across workers and restarts (docs/inference-log.md).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from fasttrack.config import Settings
from fasttrack.errors import PayloadTooLargeError
from fasttrack.serving.feedback import FeedbackResult
from fasttrack.serving.payloads import (
    ERROR_RESPONSES,
    FEEDBACK_EXAMPLES,
    FEEDBACK_SCHEMA,
    FeedbackBatchIn,
    FeedbackBody,
    FeedbackIn,
    FeedbackOut,
)
from fasttrack.serving.predictor import Predictor
from fasttrack.serving.routes.common import (
    INLINE_ROWS,
    ManagerDep,
    PredictorDep,
    SettingsDep,
    check_json_values,
    json_budget,
    json_response,
    parse_json,
    read_body,
    require_json,
    version_header,
)

router = APIRouter(tags=["feedback"])

#: The fields of one label (``id``, ``label``): the bound on a body's JSON values is made for them alone.
_FIELDS: Final = 2
_BODY: Final = TypeAdapter[FeedbackBody](FeedbackBody)


@router.post(
    "/feedback",
    response_model=None,
    responses={
        200: {"model": FeedbackOut, "description": "What happened to each label (never an error for unknown ids)."},
        400: ERROR_RESPONSES[400],
        413: ERROR_RESPONSES[413],
        415: ERROR_RESPONSES[415],
        422: {**ERROR_RESPONSES[422], "description": "A body that is not one label, a list of them or {items}."},
        503: ERROR_RESPONSES[503],
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{FEEDBACK_SCHEMA}"},
                    "examples": FEEDBACK_EXAMPLES,
                }
            },
        }
    },
    summary="Send the true labels of earlier predictions",
)
async def feedback(request: Request, predictor: PredictorDep, manager: ManagerDep, settings: SettingsDep) -> Response:
    """Join true labels with the predictions they belong to, by prediction id, for the live metrics.

    Labels are the true class (classifiers) or value (regressors). Each is answered ``matched``, ``unknown``
    (never issued here, or already out of the window), ``expired`` (older than the TTL), ``duplicate`` (its label
    came already) or ``invalid`` (not one of the model's labels, or not a finite number); outcomes are counted in
    ``fasttrack_feedback_total`` and the live accuracy, RMSE and MAE are exported once enough labels were joined.
    """
    body = await feedback_body(request, settings, predictor)
    items = body.items if isinstance(body, FeedbackBatchIn) else body if isinstance(body, list) else [body]
    pairs = [(item.id, item.label) for item in items]
    if len(pairs) <= INLINE_ROWS:
        result = manager.feedback(predictor, pairs)
    else:
        result = await run_in_threadpool(manager.feedback, predictor, pairs)
    return json_response(_answer(predictor, result), headers=version_header(predictor))


async def feedback_body(
    request: Request, settings: Settings, predictor: Predictor
) -> FeedbackIn | list[FeedbackIn] | FeedbackBatchIn:
    """The labels a ``POST /feedback`` body carries, read as the prediction routes read theirs.

    Bodies over ``max_body_bytes`` are 413 (declared or sent), content types other than JSON 415, malformed JSON
    400, a body that may hold more values than ``feedback_max_items`` labels need 413 before it is parsed, more
    labels than that 413 (counted in ``fasttrack_feedback_limited_total``) before they are validated, and one of
    the wrong shape 422 naming the field (as FastAPI's own validation would). Parsed by orjson, like the others.
    """
    require_json(request)
    raw = await read_body(request, settings.max_body_bytes)
    limit = settings.feedback_max_items
    check_json_values(raw, json_budget(limit, _FIELDS, min_fields=0), limit, "FASTTRACK_FEEDBACK_MAX_ITEMS")
    parsed = parse_json(raw)
    # Counted before validation, which costs far more than parsing for each label.
    items = parsed.get("items") if isinstance(parsed, dict) else parsed
    if isinstance(items, list) and len(items) > limit:
        predictor.metrics.feedback_limited("items", len(items))
        raise PayloadTooLargeError(
            f"feedback of {len(items)} labels is over the limit of {limit} per request "
            "(FASTTRACK_FEEDBACK_MAX_ITEMS): send them in several requests"
        )
    try:
        return _BODY.validate_python(parsed)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def _answer(predictor: Predictor, result: FeedbackResult) -> dict[str, Any]:
    live = predictor.feedback.metrics()
    return {
        "model": predictor.name,
        "version": predictor.version,
        "received": len(result.items),
        "counts": result.counts,
        "items": [_item(item.id, item.outcome, item.predicted, item.reason) for item in result.items],
        "live": {"samples": live.samples, "accuracy": live.accuracy, "rmse": live.rmse, "mae": live.mae},
    }


def _item(prediction_id: str, outcome: str, predicted: Any, reason: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": prediction_id, "outcome": outcome}
    if predicted is not None:
        answer["predicted"] = predicted
    if reason is not None:
        answer["reason"] = reason
    return answer
