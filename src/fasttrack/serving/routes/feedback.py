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

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fasttrack.errors import PayloadTooLargeError
from fasttrack.serving.feedback import FeedbackResult
from fasttrack.serving.payloads import (
    ERROR_RESPONSES,
    FEEDBACK_EXAMPLES,
    FeedbackBatchIn,
    FeedbackBody,
    FeedbackOut,
)
from fasttrack.serving.predictor import Predictor
from fasttrack.serving.routes.common import (
    INLINE_ROWS,
    ManagerDep,
    PredictorDep,
    SettingsDep,
    json_response,
    version_header,
)

router = APIRouter(tags=["feedback"])


@router.post(
    "/feedback",
    response_model=None,
    responses={
        200: {"model": FeedbackOut, "description": "What happened to each label (never an error for unknown ids)."},
        413: ERROR_RESPONSES[413],
        422: {**ERROR_RESPONSES[422], "description": "A body that is not one label, a list of them or {items}."},
        503: ERROR_RESPONSES[503],
    },
    summary="Send the true labels of earlier predictions",
)
async def feedback(
    body: Annotated[FeedbackBody, Body(openapi_examples=FEEDBACK_EXAMPLES)],
    predictor: PredictorDep,
    manager: ManagerDep,
    settings: SettingsDep,
) -> Response:
    """Join true labels with the predictions they belong to, by prediction id, for the live metrics.

    Labels are the true class (classifiers) or value (regressors). Each is answered ``matched``, ``unknown``
    (never issued here, or already out of the window), ``expired`` (older than the TTL), ``duplicate`` (its label
    came already) or ``invalid`` (not one of the model's labels, or not a finite number); outcomes are counted in
    ``fasttrack_feedback_total`` and the live accuracy, RMSE and MAE are exported once enough labels were joined.
    """
    items = body.items if isinstance(body, FeedbackBatchIn) else body if isinstance(body, list) else [body]
    if len(items) > settings.feedback_max_items:
        predictor.metrics.feedback_limited("items", len(items))
        raise PayloadTooLargeError(
            f"feedback of {len(items)} labels is over the limit of {settings.feedback_max_items} per request "
            "(FASTTRACK_FEEDBACK_MAX_ITEMS): send them in several requests"
        )
    pairs = [(item.id, item.label) for item in items]
    if len(pairs) <= INLINE_ROWS:
        result = manager.feedback(predictor, pairs)
    else:
        result = await run_in_threadpool(manager.feedback, predictor, pairs)
    return json_response(_answer(predictor, result), headers=version_header(predictor))


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
