"""MLflow's scoring protocol, ``POST /invocations``, so clients written for ``mlflow models serve`` work unchanged.

JSON bodies hold exactly one of ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` (and
optionally ``params``, ignored); ``text/csv`` bodies are a header row and data rows. The answer is
``{"predictions": [...]}``; errors have MLflow's shape ``{"error_code": "BAD_REQUEST", "message": "..."}``
(the app's error handler gives every error under this path that shape). Records are validated like ``/predict``,
except that fields the model never saw are ignored (and counted), as ``mlflow models serve`` ignores extra
columns.
``X-Prediction-Id`` carries the batch's base id for ``POST /feedback`` (row ``i``'s id is ``{base}-{i}``).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fasttrack.config import Settings
from fasttrack.errors import BadRequestError, UnsupportedMediaTypeError
from fasttrack.serving.payloads import InvocationsOut, MlflowErrorOut
from fasttrack.serving.routes.common import (
    PredictorDep,
    SettingsDep,
    check_record_values,
    check_rows,
    is_json,
    json_response,
    media_type,
    parse_json,
    predict_rows,
    prediction_headers,
    read_body,
)

router = APIRouter(tags=["mlflow scoring protocol"])

#: Lines (blank ones included) a CSV body may have per row it is allowed.
_BLANK_LINES: Final = 2

FORMATS: Final = ("dataframe_split", "dataframe_records", "instances", "inputs")
REQUIRED_INPUT_FORMAT: Final = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": MlflowErrorOut, "description": description}
    for code, description in {
        400: "Malformed body, or input that does not match the model's schema.",
        413: "Body or batch over the size limit.",
        415: "Content type other than JSON or CSV.",
        503: "No model loaded yet.",
    }.items()
}


@router.post(
    "/invocations",
    response_model=None,
    responses={200: {"model": InvocationsOut}, **_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InvocationsIn"}}},
        }
    },
    summary="Predict, MLflow's way",
)
async def invocations(request: Request, predictor: PredictorDep, settings: SettingsDep) -> Response:
    """Score a batch sent in one of MLflow's formats (JSON) or as CSV (``text/csv``)."""
    mime = media_type(request)
    if mime == "text/csv":
        records: list[Any] = _csv_records(await read_body(request, settings.max_body_bytes), settings)
    elif is_json(mime):
        body = await read_body(request, settings.max_body_bytes)
        check_record_values(body, settings, predictor)
        records = mlflow_records(parse_json(body), settings)
    else:
        raise UnsupportedMediaTypeError(
            f"This predictor only supports the following content types: ['text/csv', 'application/json']. "
            f"Got {request.headers.get('content-type')!r}."
        )
    check_rows(len(records), settings)
    # Fields the model never saw are ignored (and counted), as MLflow's scoring server ignores extra columns.
    batch = await predict_rows(predictor, records, extra="ignore")
    return json_response({"predictions": batch.values}, headers=prediction_headers(predictor, batch))


def mlflow_records(payload: Any, settings: Settings) -> list[Any]:
    """The records of an MLflow JSON scoring request, in row order (400 when its shape is wrong, 413 when it has
    more than ``max_batch_rows`` rows: counted before any record is built)."""
    if not isinstance(payload, dict):
        received = "a list" if isinstance(payload, list) else f"unexpected input type {type(payload).__name__!r}"
        raise BadRequestError(f"{REQUIRED_INPUT_FORMAT}. Received {received}.")
    present = [key for key in FORMATS if key in payload]
    if len(present) != 1:
        raise BadRequestError(f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {list(payload)}.")
    key = present[0]
    data = payload[key]
    if key == "dataframe_split":
        return _split_records(data, settings)
    if key == "dataframe_records":
        if not isinstance(data, list):
            raise BadRequestError("Dataframe records format must be a list of records.")
        return data
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    if isinstance(data, dict):
        return _columns_records(data, key, settings)
    raise BadRequestError(
        f"{key!r} must hold records (a list of objects) or columns (an object of lists) for this model, "
        "whose input is named features"
    )


def _split_records(data: Any, settings: Settings) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise BadRequestError("Dataframe split format must be a dictionary.")
    extra = set(data) - {"columns", "data", "index"}
    if "data" not in data or extra:
        raise BadRequestError(
            f"Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields. "
            f"Got {sorted(data)}."
        )
    rows, columns = data["data"], data.get("columns")
    if isinstance(rows, list):
        check_rows(len(rows), settings)
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BadRequestError("Dataframe split 'data' must be a list of rows (lists of values).")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequestError("Dataframe split 'columns' must be a list of column names.")
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise BadRequestError(f"Dataframe split row {number} has {len(row)} values for {len(columns)} columns.")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _columns_records(data: dict[str, Any], key: str, settings: Settings) -> list[dict[str, Any]]:
    if all(not isinstance(v, list) for v in data.values()):
        return [data]  # one row given as scalars
    if not all(isinstance(v, list) for v in data.values()):
        raise BadRequestError(f"{key!r} as columns must map every name to a list of values.")
    lengths = {len(v) for v in data.values()}
    if len(lengths) > 1:
        raise BadRequestError(f"{key!r} columns have different lengths: {sorted(lengths)}.")
    check_rows(max(lengths, default=0), settings)
    names = list(data)
    return [dict(zip(names, values, strict=True)) for values in zip(*data.values(), strict=True)]


def _csv_records(body: bytes, settings: Settings) -> list[dict[str, str]]:
    """Records of a CSV body: a header row, then one row per record (values as text, parsed per feature); 413 as
    soon as a row past ``max_batch_rows`` is read (the rest is never parsed)."""
    # The messages say where, never the parser's own words (they describe its internals, not the input).
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"Ensure that input is a valid UTF-8 encoded string: invalid byte at position {exc.start}"
        ) from None
    reader = csv.reader(io.StringIO(text))
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            # The header, then the rows; blank lines are skipped but not free: a body of newlines is refused too.
            if len(rows) > settings.max_batch_rows + 1 or reader.line_num > _BLANK_LINES * settings.max_batch_rows:
                check_rows(max(len(rows) - 1, reader.line_num // _BLANK_LINES), settings)
    except csv.Error:
        raise BadRequestError(f"Failed to parse input as CSV at line {reader.line_num}") from None
    if not rows:
        raise BadRequestError("Failed to parse input as CSV: no header row")
    header = [name.strip() for name in rows[0]]
    records: list[dict[str, str]] = []
    for number, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise BadRequestError(
                f"Failed to parse input as CSV: row {number} has {len(row)} fields, not {len(header)}"
            )
        records.append(dict(zip(header, row, strict=True)))
    return records
