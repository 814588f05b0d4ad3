"""The briefs' API: ``POST /predict`` (one record or a batch) and ``GET /predict?feature=value``.

One record ``{"feature_1": 5.3, "feature_2": 2.1}`` answers ``{"prediction": "positive"}`` (a number for
regressors); a JSON array of records answers ``{"predictions": [...]}``; ``?probabilities=true`` adds the class
probabilities (classifiers). Every answer carries the served version in ``X-Model-Version`` and the prediction id
in ``X-Prediction-Id`` (for a batch, the base id: row ``i``'s id is ``{base}-{i}``); ``?ids=true`` also puts the
ids in the body (``"id"``, or ``"ids"`` for a batch). ``POST /feedback`` takes the true labels by these ids.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from fasttrack.config import Settings
from fasttrack.errors import BadRequestError, SchemaValidationError, Violation
from fasttrack.serving.payloads import ERROR_RESPONSES, RECORD_SCHEMA, BatchPredictionOut, PredictionOut
from fasttrack.serving.predictor import PredictionBatch, Predictor
from fasttrack.serving.routes.common import (
    PredictorDep,
    SettingsDep,
    check_record_values,
    check_rows,
    parse_json,
    predict_rows,
    prediction_headers,
    read_body,
    require_json,
)

router = APIRouter(tags=["predict"])

#: Query parameters of GET /predict that are options, not features.
_OPTIONS = frozenset({"probabilities", "ids"})

ProbabilitiesQuery = Annotated[bool, Query(description="Add the class probabilities (classifiers only).")]
IdsQuery = Annotated[
    bool, Query(description="Add the prediction ids to the body (`id`, or `ids` for a batch), for POST /feedback.")
]
_VERSION_HEADER = {
    "X-Model-Version": {"description": "The model version that answered.", "schema": {"type": "string"}},
    "X-Prediction-Id": {
        "description": "The prediction's id for POST /feedback; for a batch the base id, row i's id being "
        "`{base}-{i}`.",
        "schema": {"type": "string"},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": PredictionOut | BatchPredictionOut,
        "description": "One prediction (for one record) or a list of predictions (for a batch).",
        "headers": _VERSION_HEADER,
    },
    **ERROR_RESPONSES,
}
# The request body is read as bytes (to answer 400/413/415 precisely); its schema is the model's record type,
# filled in with the served model's real features by payloads.openapi_for.
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{RECORD_SCHEMA}"}}},
    }
}


def _content(batch: PredictionBatch, single: bool, ids: bool) -> bytes:
    if single:
        one: dict[str, Any] = {"prediction": batch.values[0]}
        if batch.probabilities is not None:
            one["probabilities"] = batch.probability_records()[0]
        if ids:
            one["id"] = batch.ids[0]
        return orjson.dumps(one, option=orjson.OPT_SERIALIZE_NUMPY)
    many: dict[str, Any] = {"predictions": batch.values}
    if batch.probabilities is not None:
        many["probabilities"] = batch.probability_records()
    if ids:
        many["ids"] = batch.ids
    return orjson.dumps(many, option=orjson.OPT_SERIALIZE_NUMPY)


async def predict_body(
    predictor: Predictor, settings: Settings, body: bytes, *, probabilities: bool = False, ids: bool = False
) -> tuple[bytes, dict[str, str]]:
    """The answer to a ``POST /predict`` body (already read): the JSON bytes and the headers.

    The one implementation of the endpoint, shared by the route and by the fast lane
    (:mod:`fasttrack.serving.fastlane`); raises ``FastTrackError`` (400, 413, 422, ...) for the caller to render.
    """
    check_record_values(body, settings, predictor)
    parsed = parse_json(body)
    if isinstance(parsed, dict):
        batch = await predict_rows(
            predictor, [parsed], probabilities=probabilities, single=True, extra=settings.extra_fields
        )
        return _content(batch, True, ids), prediction_headers(predictor, batch)
    if not isinstance(parsed, list):
        raise BadRequestError(
            f"expected a JSON object (one record) or an array of records, got {type(parsed).__name__}"
        )
    check_rows(len(parsed), settings)
    batch = await predict_rows(predictor, parsed, probabilities=probabilities, extra=settings.extra_fields)
    return _content(batch, False, ids), prediction_headers(predictor, batch)


def _answer(batch: PredictionBatch, single: bool, ids: bool, headers: dict[str, str]) -> Response:
    return Response(_content(batch, single, ids), media_type="application/json", headers=headers)


@router.post(
    "/predict",
    response_model=None,
    responses=_RESPONSES,
    openapi_extra=_BODY_DOC,
    summary="Predict one record or a batch",
)
async def predict(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    probabilities: ProbabilitiesQuery = False,
    ids: IdsQuery = False,
) -> Response:
    """Predict one record (a JSON object of feature values) or a batch (a JSON array of such objects).

    Values are checked against the training schema: a field the model never saw (unless
    `FASTTRACK_EXTRA_FIELDS=ignore`), an absent field the training data always had, a value its feature cannot
    take, or an empty batch answer 422 naming each field and why. Columns of the training data the model does
    not use (identifiers, the target) are ignored, so a row of the training file is accepted as it is. The
    prediction id is in `X-Prediction-Id` (a batch's base id: row i's id is `{base}-{i}`), and in the body with
    `?ids=true`.
    """
    require_json(request)
    body = await read_body(request, settings.max_body_bytes)
    content, headers = await predict_body(predictor, settings, body, probabilities=probabilities, ids=ids)
    return Response(content, media_type="application/json", headers=headers)


@router.get(
    "/predict",
    response_model=None,
    responses={200: {"model": PredictionOut, "headers": _VERSION_HEADER}, **ERROR_RESPONSES},
    summary="Predict one record given as query parameters",
)
async def predict_query(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    probabilities: ProbabilitiesQuery = False,
    ids: IdsQuery = False,
) -> Response:
    """Predict one record from the query string, e.g. ``GET /predict?x=3.1`` or ``?feature_1=5.3&feature_2=2.1``.

    Values are text, read by each feature's kind like any other text (an empty value is missing).
    """
    record: dict[str, str] = {}
    repeated: list[Violation] = []
    for key, value in request.query_params.multi_items():
        if key in _OPTIONS:
            continue
        if key in record:
            repeated.append(Violation(key, "given more than once"))
        record[key] = value
    if repeated:
        raise SchemaValidationError(repeated)
    batch = await predict_rows(
        predictor, [record], probabilities=probabilities, single=True, extra=settings.extra_fields
    )
    return _answer(batch, True, ids, prediction_headers(predictor, batch))
