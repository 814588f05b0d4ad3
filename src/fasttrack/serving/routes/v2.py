"""The Open Inference Protocol (V2), as KServe, MLServer and Triton's clients speak it.

A request carries one input tensor per feature (the ``pd`` content type: the tensors are the columns of a
table), each of shape ``[N]`` or ``[N, 1]``; values come as JSON ``data`` or, as Triton's clients send them by
default, as binary tensor data after the JSON header (``Inference-Header-Content-Length``). The answer has the
output ``predict`` (labels or values, ``[N, 1]``) and, when asked for by name, ``predict_proba`` (``[N, classes]``,
classifiers), always as JSON. In binary float tensors NaN stands for a missing value (JSON data uses null). Errors
have the protocol's shape ``{"error": "..."}``. ``X-Prediction-Id`` carries the batch's base id for ``POST /feedback``
(row ``i``'s id is ``{base}-{i}``).
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from fasttrack import __version__
from fasttrack.config import Settings
from fasttrack.errors import BadRequestError, ModelNotFoundError, ModelNotReadyError
from fasttrack.serving.manager import ModelManager
from fasttrack.serving.payloads import (
    V2_DATATYPES,
    V2ErrorOut,
    V2InferenceRequest,
    V2InferenceResponse,
    V2ModelMetadata,
    V2RequestInput,
    V2ServerMetadata,
)
from fasttrack.serving.predictor import Predictor
from fasttrack.serving.routes.common import (
    ManagerDep,
    SettingsDep,
    check_record_values,
    check_rows,
    json_response,
    predict_rows,
    prediction_headers,
    read_body,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

HEADER_LENGTH: Final = "inference-header-content-length"
PREDICT: Final = "predict"
PREDICT_PROBA: Final = "predict_proba"
_NUMPY: Final = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": V2ErrorOut, "description": "A malformed request or input that does not match the model."},
    404: {"model": V2ErrorOut, "description": "No such model or version here."},
    503: {"model": V2ErrorOut, "description": "No model loaded yet."},
}


def served(manager: ModelManager, request: Request, name: str, version: str | None = None) -> Predictor:
    """The predictor if it is the model (and version) asked for: 404 for another one, 503 before any is loaded."""
    predictor = manager.current
    if predictor is None:
        raise ModelNotReadyError(
            "the model is still loading"
            if manager.load_reason is None
            else f"no model is loaded: {manager.load_reason}"
        )
    if name != predictor.name:
        raise ModelNotFoundError(f"model {name!r} is not served here; this server serves {predictor.name!r}")
    if version is not None and version != predictor.version:
        raise ModelNotFoundError(f"version {version} of {name!r} is not served here; version {predictor.version} is")
    request.state.model_version = predictor.version
    return predictor


@router.get("", response_model=V2ServerMetadata, summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    return {"name": "fasttrack", "version": __version__, "extensions": []}


@router.get("/health/live", summary="Server liveness")
async def live() -> dict[str, bool]:
    """The server answers."""
    return {"live": True}


@router.get("/health/ready", summary="Server readiness", responses={503: {"description": "No model loaded yet."}})
async def ready(manager: ManagerDep) -> Response:
    """A model is loaded (503 before)."""
    return json_response({"ready": manager.ready}, status_code=200 if manager.ready else 503)


@router.get(
    "/models/{name}",
    response_model=V2ModelMetadata,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Model metadata",
)
async def model_metadata(name: str, manager: ManagerDep, request: Request) -> dict[str, Any]:
    """The model's inputs (one tensor per feature) and outputs."""
    return _metadata(served(manager, request, name))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=V2ModelMetadata,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Model version metadata",
)
async def model_version_metadata(name: str, version: str, manager: ManagerDep, request: Request) -> dict[str, Any]:
    """The model version's inputs and outputs."""
    return _metadata(served(manager, request, name, version))


@router.get("/models/{name}/ready", responses=_ERRORS, summary="Model readiness")
async def model_ready(name: str, manager: ManagerDep, request: Request) -> dict[str, Any]:
    """The model is loaded and serving."""
    predictor = served(manager, request, name)
    return {"name": predictor.name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=_ERRORS, summary="Model version readiness")
async def model_version_ready(name: str, version: str, manager: ManagerDep, request: Request) -> dict[str, Any]:
    """The model version is loaded and serving."""
    predictor = served(manager, request, name, version)
    return {"name": predictor.name, "ready": True}


_INFER_DOC: dict[str, Any] = {
    "response_model": None,
    "responses": {200: {"model": V2InferenceResponse}, **_ERRORS},
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2InferenceRequest"}}},
        }
    },
}


@router.post("/models/{name}/infer", summary="Predict", **_INFER_DOC)
async def infer(name: str, request: Request, manager: ManagerDep, settings: SettingsDep) -> Response:
    """Predict: one input tensor per feature, ``predict`` (and ``predict_proba`` when asked) out."""
    return await _infer(served(manager, request, name), request, settings)


@router.post("/models/{name}/versions/{version}/infer", summary="Predict with a model version", **_INFER_DOC)
async def infer_version(
    name: str, version: str, request: Request, manager: ManagerDep, settings: SettingsDep
) -> Response:
    """Predict with this version (404 when another version is served)."""
    predictor = served(manager, request, name, version)
    return await _infer(predictor, request, settings)


async def _infer(predictor: Predictor, request: Request, settings: Settings) -> Response:
    body = await read_body(request, settings.max_body_bytes)
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequestError(f"bad {HEADER_LENGTH} header: {header_length!r}")
        split = int(header_length)
        header, binary = body[:split], memoryview(body)[split:]
    else:
        header, binary = body, memoryview(b"")
    check_record_values(header, settings, predictor)
    try:
        inference = V2InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadRequestError(f"malformed inference request: {problems}") from None
    content_type = (inference.parameters or {}).get("content_type")
    if content_type not in (None, "pd"):
        raise BadRequestError(f"content type {content_type!r} is not served: send one tensor per feature ('pd')")
    wanted = [o.name for o in inference.outputs] if inference.outputs else [PREDICT]
    unknown = [
        o for o in wanted if o not in (PREDICT, PREDICT_PROBA) or (o == PREDICT_PROBA and not predictor.is_classifier)
    ]
    if unknown:
        available = [PREDICT, PREDICT_PROBA] if predictor.is_classifier else [PREDICT]
        raise BadRequestError(f"unknown outputs {unknown}; this model has {available}")
    records = _records(inference.inputs, binary, settings)
    batch = await predict_rows(predictor, records, probabilities=PREDICT_PROBA in wanted, extra=settings.extra_fields)
    rows = len(batch.values)
    outputs: list[dict[str, Any]] = []
    for name in wanted:
        if name == PREDICT:
            outputs.append(
                {"name": PREDICT, "shape": [rows, 1], "datatype": _datatype(batch.values), "data": batch.values}
            )
        elif batch.probabilities is not None:
            outputs.append(
                {
                    "name": PREDICT_PROBA,
                    "shape": list(batch.probabilities.shape),
                    "datatype": "FP64",
                    "parameters": {"classes": batch.classes},
                    "data": batch.probabilities.ravel().tolist(),
                }
            )
    answer: dict[str, Any] = {"model_name": predictor.name, "model_version": predictor.version, "outputs": outputs}
    if inference.id is not None:
        answer["id"] = inference.id
    return json_response(answer, headers=prediction_headers(predictor, batch))


def _records(inputs: list[V2RequestInput], binary: memoryview, settings: Settings) -> list[dict[str, Any]]:
    """The rows of a table sent as one tensor per column (each tensor's declared shape is checked, its rows
    counted against ``max_batch_rows``, before its data is decoded)."""
    if not inputs:
        raise BadRequestError("no inputs: send one tensor per feature")
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in inputs:
        if tensor.name in columns:
            raise BadRequestError(f"input {tensor.name!r} is given more than once")
        shape = tensor.shape
        if not shape or len(shape) > 2 or any(n < 0 for n in shape) or (len(shape) == 2 and shape[1] != 1):
            raise BadRequestError(
                f"input {tensor.name!r} has shape {shape}: send one value per row, shape [N] or [N, 1]"
            )
        check_rows(shape[0], settings)
        values, offset = _values(tensor, binary, offset)
        if len(values) != shape[0]:
            raise BadRequestError(f"input {tensor.name!r} has {len(values)} values for shape {shape}")
        columns[tensor.name] = values
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise BadRequestError(f"inputs have different numbers of rows: {sorted(lengths)}")
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _values(tensor: V2RequestInput, binary: memoryview, offset: int) -> tuple[list[Any], int]:
    """A tensor's values, flat, from JSON ``data`` or from the binary part; and the offset of the next tensor."""
    datatype = tensor.datatype.upper()
    if datatype != "BYTES" and datatype not in _NUMPY:
        raise BadRequestError(f"input {tensor.name!r} has datatype {tensor.datatype!r}, which is not supported")
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise BadRequestError(f"input {tensor.name!r} has neither data nor binary_data_size")
        values = _flatten(tensor.data)
    else:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadRequestError(f"input {tensor.name!r}: binary_data_size {size!r} does not fit the body")
        chunk = binary[offset : offset + size]
        offset += size
        if datatype == "BYTES":
            values = _deserialize_bytes(chunk, tensor.name)
        else:
            itemsize = _NUMPY[datatype].itemsize
            if size % itemsize:
                raise BadRequestError(f"input {tensor.name!r}: {size} bytes is not a whole number of {datatype}")
            values = np.frombuffer(chunk, dtype=_NUMPY[datatype]).tolist()
            if datatype.startswith("FP"):
                # A float tensor cannot hold null: NaN is how a missing value travels (as in the pd codec).
                values = [None if v != v else v for v in values]  # noqa: PLR0124
    if datatype == "BYTES":
        try:
            values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        except UnicodeDecodeError:
            raise BadRequestError(f"input {tensor.name!r} is not UTF-8 text") from None
    return values, offset


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _deserialize_bytes(chunk: memoryview, name: str) -> list[Any]:
    """BYTES elements in binary form: each a 4-byte little-endian length, then that many bytes."""
    values: list[Any] = []
    position = 0
    while position < len(chunk):
        if position + 4 > len(chunk):
            raise BadRequestError(f"input {name!r}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", chunk, position)
        position += 4
        if position + length > len(chunk):
            raise BadRequestError(f"input {name!r}: truncated BYTES element")
        values.append(bytes(chunk[position : position + length]))
        position += length
    return values


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, str) for v in values):
        return "BYTES"
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    return "FP64"


def _metadata(predictor: Predictor) -> dict[str, Any]:
    inputs = [{"name": f.name, "datatype": V2_DATATYPES[f.kind], "shape": [-1, 1]} for f in predictor.schema.features]
    labels = predictor.labels
    outputs: list[dict[str, Any]] = [
        {"name": PREDICT, "datatype": _datatype(labels) if labels else "FP64", "shape": [-1, 1]}
    ]
    if labels is not None:
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(labels)]})
    return {
        "name": predictor.name,
        "versions": [predictor.version],
        "platform": f"fasttrack-{predictor.runtime.name}",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"content_type": "pd"},
    }
