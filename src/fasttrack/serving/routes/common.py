"""What every router shares: dependencies (settings, manager, the served predictor) and body handling.

Prediction and feedback routes read the body bytes themselves so that each failure gets its own clear status: a
body over the limit is 413, a content type other than JSON 415, malformed JSON 400, and only then does the model's
schema decide (422). JSON is parsed with orjson; answers are orjson bytes in a plain ``Response``.

A body within the byte limit can still hold millions of tiny values (``[[0],[0],...]``: 16 MiB is four million
rows), and parsing it builds a Python object per value, holding the event loop for seconds and the memory for
good. :func:`check_json_values` counts, before parsing, how many values a big body can hold at most (its commas and
brackets, counted at memory speed) and refuses one that holds more than a batch of ``max_batch_rows`` rows ever
needs (413), so the parse of an accepted body is bounded by the row limit, not by the byte limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Final

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fasttrack.config import ExtraFields, Settings
from fasttrack.errors import (
    BadRequestError,
    FastTrackError,
    ModelNotReadyError,
    PayloadTooLargeError,
    SchemaValidationError,
    UnsupportedMediaTypeError,
)
from fasttrack.serving.manager import ModelManager
from fasttrack.serving.predictor import PredictionBatch, Predictor

MODEL_VERSION_HEADER: Final = "X-Model-Version"
#: The id of the prediction (one record), or the base id of a batch's predictions: row i's id is "{base}-{i}".
PREDICTION_ID_HEADER: Final = "X-Prediction-Id"
#: Batches up to this many rows are predicted on the event loop; larger ones in the thread pool, so a big batch
#: does not hold up other requests (the thread hop costs more than predicting a few rows).
INLINE_ROWS: Final = 256
#: A body declared over the limit is still read (and dropped) up to this size, so the client gets its 413
#: instead of a connection reset; anything bigger is cut off.
DRAIN_LIMIT: Final = 64 * 1024 * 1024
_MLFLOW_CODES: Final = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    503: "TEMPORARILY_UNAVAILABLE",
}
#: How deep JSON may nest: orjson's limit, and what it says when a body goes deeper.
MAX_DEPTH: Final = 1024
_TOO_DEEP: Final = "depth limit exceeded"
#: JSON values a body may hold per field of a row, and the fewest fields a row is allowed (see :func:`json_budget`).
VALUES_PER_FIELD: Final = 4
MIN_FIELDS: Final = 16
#: Values every body may hold beyond its rows (the envelope of /invocations and V2, outputs, parameters).
ENVELOPE_VALUES: Final = 4096


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_manager(request: Request) -> ModelManager:
    """The app's model manager."""
    manager: ModelManager = request.app.state.manager
    return manager


async def get_predictor(request: Request) -> Predictor:
    """The predictor serving now (read once: the request finishes on it even if a new version is swapped in)."""
    manager: ModelManager = request.app.state.manager
    predictor = manager.current
    if predictor is None:
        if manager.load_error is not None:
            raise ModelNotReadyError(f"no model is loaded: {manager.load_reason}")
        raise ModelNotReadyError("the model is still loading; retry when GET /ready answers 200")
    request.state.model_version = predictor.version
    return predictor


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def error_body(path: str, status: int, message: str, details: list[dict[str, str]] | None = None) -> tuple[int, bytes]:
    """An error's status and JSON body in the shape of the API ``path`` belongs to.

    ``{"error", "details"}`` for the briefs' API, MLflow's ``{"error_code", "message"}`` under ``/invocations``
    (whose clients expect 400 for input that does not fit the model, where the others answer 422), and
    ``{"error"}`` under ``/v2`` (the Open Inference Protocol).
    """
    body: dict[str, Any]
    if path == "/invocations":
        code = _MLFLOW_CODES.get(status) or ("BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        if status == 422:
            status = 400
        body = {"error_code": code, "message": message}
    elif path == "/v2" or path.startswith("/v2/"):
        body = {"error": message}
    else:
        body = {"error": message, "details": details or []}
    try:
        return status, orjson.dumps(body)
    except TypeError:  # text from the request that is not Unicode (a lone surrogate): shown escaped, never a 500
        return status, orjson.dumps(_escaped(body))


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def domain_error(exc: FastTrackError) -> tuple[int, str, list[dict[str, str]] | None]:
    """A ``FastTrackError``'s status, message and per-field details (schema violations)."""
    details = None
    if isinstance(exc, SchemaValidationError):
        details = [{"field": v.field, "reason": v.reason} for v in exc.violations]
    return exc.status_code, str(exc), details


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer serialised by orjson (numpy values included; NaN becomes null)."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def version_header(predictor: Predictor) -> dict[str, str]:
    """The header every prediction answer carries."""
    return {MODEL_VERSION_HEADER: predictor.version}


def prediction_headers(predictor: Predictor, batch: PredictionBatch) -> dict[str, str]:
    """The served version, and the prediction id (one record) or the batch's base id, for ``POST /feedback``."""
    headers = {MODEL_VERSION_HEADER: predictor.version}
    if batch.prediction_id is not None:
        headers[PREDICTION_ID_HEADER] = batch.prediction_id
    return headers


def media_type(request: Request) -> str | None:
    """The request's media type, lower case and without parameters (``None`` when not given)."""
    header = request.headers.get("content-type")
    if header is None:
        return None
    return header.split(";", 1)[0].strip().lower()


def is_json(mime: str | None) -> bool:
    """Whether a media type is JSON (a missing one is taken as JSON, as curl users often omit it)."""
    return mime is None or mime == "application/json" or mime.endswith("+json")


def require_json(request: Request) -> None:
    """Refuse (415) a body whose content type is not JSON."""
    mime = media_type(request)
    if not is_json(mime):
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Type {request.headers.get('content-type')!r}: send application/json"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 when over ``limit`` bytes (declared or actual)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        size = int(declared)
        if size > limit:
            await _drain(request)
            raise PayloadTooLargeError(f"request body of {size} bytes is over the limit of {limit} bytes")
        return await request.body()
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            await _drain(request, total)
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, already: int = 0) -> None:
    total = already
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > DRAIN_LIMIT:
                return
    except Exception:  # the client went away or the stream was consumed: nothing left to drain
        return


def json_budget(rows: int, fields: int, min_fields: int = MIN_FIELDS) -> int:
    """The most JSON values a body of ``rows`` rows of ``fields`` fields may hold (see :func:`check_json_values`).

    Generous on purpose: ``VALUES_PER_FIELD`` values per field (a record's key and value, text holding commas or
    brackets), at least ``min_fields`` fields (columns a client sends that the model ignores), and an envelope.
    """
    return rows * VALUES_PER_FIELD * (max(fields, min_fields) + 1) + ENVELOPE_VALUES


def check_json_values(body: bytes | memoryview, budget: int, rows: int, setting: str) -> None:
    """Refuse (413) a body that may hold more than ``budget`` JSON values, before it is parsed (``rows`` and
    ``setting``: the row limit the budget was made from, and its setting, for the message).

    Every JSON value but the first of an array or object follows a comma, and every array or object starts with a
    bracket, so commas + brackets + 1 is at least the number of values (text holding commas only adds to it). A
    body too short to exceed the budget (each value takes two bytes at least) is not even counted: single records
    pay nothing. Counting 16 MiB takes a few milliseconds; parsing the four million values it can hold, seconds.
    """
    if len(body) <= 2 * budget:
        return
    raw = bytes(body) if isinstance(body, memoryview) else body
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1
    if values > budget:
        raise PayloadTooLargeError(
            f"request body holds up to {values} JSON values, more than {rows} rows may carry ({budget}; "
            f"{setting}): send fewer rows per request"
        )


def check_record_values(body: bytes | memoryview, settings: Settings, predictor: Predictor) -> None:
    """:func:`check_json_values` for a body of records of ``predictor``'s model, at most ``max_batch_rows``.

    A record's fields: the model's features and the training data's other columns (ignored when sent).
    """
    schema = predictor.schema
    fields = len(schema.features) + len(schema.dropped_columns) + 1
    budget = json_budget(settings.max_batch_rows, fields)
    check_json_values(body, budget, settings.max_batch_rows, "FASTTRACK_MAX_BATCH_ROWS")


def parse_json(body: bytes) -> Any:
    """Parse a JSON body (400 when malformed or empty).

    Bodies orjson refuses but Python's parser reads (``NaN``, ``Infinity``, integers beyond 64 bits) are let
    through, so that validation names the field and the value instead of calling the whole body malformed; text
    with a lone surrogate (``"\\ud800"``, which no Unicode text holds) is refused, naming where it is. The answer
    says where the body stops being JSON, not the parser's own message. Duplicate keys in an object: the last one
    wins (as in orjson, Python's ``json`` and JavaScript's ``JSON.parse``).
    """
    if not body.strip():
        raise BadRequestError("empty body: send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        line, column = exc.lineno, exc.colno
        if exc.msg == _TOO_DEEP:  # no request needs that depth; Python's parser would give up there too
            raise BadRequestError(
                f"malformed JSON: nested deeper than {MAX_DEPTH} levels at line {line}, column {column}"
            ) from None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        pass
    else:
        where = _lone_surrogate(parsed)
        if where is not None:
            field, text = where
            raise BadRequestError(f"malformed JSON: {field} holds a lone surrogate ({text}), which is not Unicode text")
        return parsed
    try:
        body.decode("utf-8")  # orjson places a bad byte at the start of the body: say where it is
    except UnicodeDecodeError as bad:
        raise BadRequestError(f"malformed JSON: not UTF-8 at byte {bad.start}") from None
    raise BadRequestError(f"malformed JSON at line {line}, column {column}")


def _lone_surrogate(value: Any) -> tuple[str, str] | None:
    """Where a parsed body holds text with a lone surrogate (``$`` path, the bad character escaped), if it does.

    Walked without recursion: the body may be nested as deep as Python's parser goes.
    """
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            bad = _surrogate(item)
            if bad is not None:
                return path, bad
        elif isinstance(item, dict):
            for key, child in item.items():
                bad = _surrogate(key)
                if bad is not None:
                    return f"{path} key {ascii(key)[:60]}", bad
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def _surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return ascii(text[exc.start])[1:-1]
    return None


async def predict_rows(
    predictor: Predictor,
    records: Sequence[Any],
    *,
    probabilities: bool = False,
    single: bool = False,
    extra: ExtraFields = "refuse",
) -> PredictionBatch:
    """Predict on the event loop for small batches (sharing model calls with concurrent requests: see
    ``Coalescer``), in the thread pool for big ones (``single``: one record answered as one prediction, whose id
    is plain rather than ``{base}-0``; ``extra``: refuse or ignore fields the model never saw)."""
    if len(records) <= INLINE_ROWS:
        return await predictor.predict_together(records, probabilities=probabilities, single=single, extra=extra)
    return await run_in_threadpool(predictor.predict, records, probabilities=probabilities, single=single, extra=extra)


def check_rows(count: int, settings: Settings) -> None:
    """Refuse (413) a batch over ``max_batch_rows``."""
    if count > settings.max_batch_rows:
        raise PayloadTooLargeError(
            f"batch of {count} rows is over the limit of {settings.max_batch_rows} (FASTTRACK_MAX_BATCH_ROWS)"
        )
