"""Typed request and response bodies of the HTTP API, and the OpenAPI description built from the loaded model.

The features a model takes are only known once it is loaded, so the request schema of ``/predict`` is made from
the training schema and the feature rules (:mod:`fasttrack.features.openapi`, with an example from the training
data) and patched into the OpenAPI document by :func:`openapi_for`. The Open Inference Protocol (V2) bodies are
parsed with these models too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from fasttrack.config import ExtraFields
from fasttrack.data.schema import Label, Schema
from fasttrack.features.openapi import describe, query_type, record_schema

# ------------------------------------------------------------------------------------------------- /predict
RECORD_SCHEMA = "PredictionRecord"


class PredictionOut(BaseModel):
    """One prediction: a label (classifiers) or a number (regressors)."""

    prediction: Label
    probabilities: dict[str, float] | None = Field(
        None, description="Class probabilities by label, with `?probabilities=true` (classifiers)."
    )
    id: str | None = Field(None, description="The prediction's id for POST /feedback, with `?ids=true`.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"prediction": "positive"},
                {"prediction": 7.21},
                {"prediction": "positive", "id": "5f0c3b6e9d8a4c2b8e1f7a6d3c2b1a09"},
            ]
        },
    )


class BatchPredictionOut(BaseModel):
    """Predictions for a batch, in input order."""

    predictions: list[Label]
    probabilities: list[dict[str, float]] | None = Field(
        None, description="Class probabilities per row, with `?probabilities=true` (classifiers)."
    )
    ids: list[str] | None = Field(
        None, description="The predictions' ids for POST /feedback (`{base}-{row}`), with `?ids=true`."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"predictions": ["positive", "negative"]}]})


class ErrorDetail(BaseModel):
    """One problem with a request: which field and why."""

    field: str
    reason: str


class ErrorOut(BaseModel):
    """An error: one readable line, and the problems per field (input validation)."""

    error: str
    details: list[ErrorDetail] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "input does not match the model's schema: feature_1: expected a number, got 'abc'",
                    "details": [{"field": "feature_1", "reason": "expected a number, got 'abc'"}],
                }
            ]
        }
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed JSON or a body of the wrong shape."},
    413: {"model": ErrorOut, "description": "Body or batch over the size limit."},
    415: {"model": ErrorOut, "description": "Content type other than JSON."},
    422: {"model": ErrorOut, "description": "Input does not match the model's schema (each field named)."},
    503: {"model": ErrorOut, "description": "No model loaded yet."},
}


# ------------------------------------------------------------------------------------------------ /feedback
_ID = "5f0c3b6e9d8a4c2b8e1f7a6d3c2b1a09"


class FeedbackIn(BaseModel):
    """The true label of one prediction, sent once it is known."""

    id: str = Field(
        min_length=1,
        max_length=200,
        description="The prediction's id: `X-Prediction-Id` of a one-record answer, or `{base}-{row}` for a batch.",
    )
    label: Label | None = Field(
        description="What the prediction should have been: the true class (classifiers) or value (regressors)."
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": _ID, "label": "positive"}]})


class FeedbackBatchIn(BaseModel):
    """Several true labels at once."""

    items: list[FeedbackIn]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"items": [{"id": f"{_ID}-0", "label": "positive"}, {"id": f"{_ID}-1", "label": "negative"}]}]
        },
    )


#: What POST /feedback accepts: one label, a list of them, or {"items": [...]}.
FeedbackBody = FeedbackIn | list[FeedbackIn] | FeedbackBatchIn
#: Its name among the OpenAPI document's schemas.
FEEDBACK_SCHEMA = "FeedbackBody"
FEEDBACK_EXAMPLES: dict[str, dict[str, Any]] = {
    "one label": {"value": {"id": _ID, "label": "positive"}},
    "a list": {"value": [{"id": f"{_ID}-0", "label": "positive"}, {"id": f"{_ID}-1", "label": "negative"}]},
    "items": {"value": {"items": [{"id": f"{_ID}-0", "label": 7.3}]}},
}


class FeedbackItemOut(BaseModel):
    """What happened to one label: joined with its prediction, or why not."""

    id: str
    outcome: Literal["matched", "unknown", "expired", "duplicate", "invalid"]
    predicted: Label | None = Field(None, description="The prediction the label was joined with, when known.")
    reason: str | None = Field(None, description="Why the label was not joined (every outcome but matched).")


class LiveOut(BaseModel):
    """The live metrics after this feedback (``null`` until enough labels were joined)."""

    samples: int = Field(description="Labels joined in the live window.")
    accuracy: float | None = None
    rmse: float | None = None
    mae: float | None = None


class FeedbackOut(BaseModel):
    """The answer to POST /feedback: always 200, one item per label sent, in order, and the counts per outcome."""

    model: str
    version: str
    received: int
    counts: dict[str, int]
    items: list[FeedbackItemOut]
    live: LiveOut

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "sample",
                    "version": "1",
                    "received": 2,
                    "counts": {"matched": 1, "unknown": 1, "expired": 0, "duplicate": 0, "invalid": 0},
                    "items": [
                        {"id": _ID, "outcome": "matched", "predicted": "positive"},
                        {
                            "id": "0123",
                            "outcome": "unknown",
                            "reason": "unknown id: not issued by this server, or older than the last 10000 predictions",
                        },
                    ],
                    "live": {"samples": 1, "accuracy": None},
                }
            ]
        }
    )


# --------------------------------------------------------------------------------------------- /invocations
class DataframeSplit(BaseModel):
    """pandas' ``split`` orientation."""

    columns: list[str] | None = None
    data: list[list[Any]]
    index: list[Any] | None = None


class InvocationsIn(BaseModel):
    """MLflow's scoring protocol: exactly one of the four input fields (or a CSV body, ``text/csv``)."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    instances: list[dict[str, Any]] | dict[str, list[Any]] | None = None
    inputs: dict[str, list[Any]] | list[dict[str, Any]] | None = None
    params: dict[str, Any] | None = Field(None, description="Accepted and ignored (the model takes none).")


class InvocationsOut(BaseModel):
    """MLflow's scoring answer."""

    predictions: list[Any]


class MlflowErrorOut(BaseModel):
    """MLflow's error shape (as ``mlflow models serve`` answers)."""

    error_code: str
    message: str


# ------------------------------------------------------------------------------------------------------ ops
class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    """Readiness: the model served, once one is loaded."""

    status: Literal["ready", "loading"]
    model: str | None = None
    version: str | None = None
    error: str | None = Field(None, description="Why the first load failed, while no model is served.")


class ReloadOut(BaseModel):
    """What a registry check did: swapped a new version in, found nothing new, or refused a broken version."""

    outcome: Literal["reloaded", "unchanged", "refused", "not_followed"]
    model: str | None
    version: str | None = Field(description="The version being served after the check.")
    candidate: str | None = Field(None, description="The version the registry pointed at.")
    error: str | None = Field(
        None, description="Why a reload was refused, in short (the details are in the server's log)."
    )


class FeatureOut(BaseModel):
    """One input feature as the training data had it."""

    name: str
    kind: Literal["numeric", "categorical", "boolean"]
    dtype: str
    nullable: bool
    example: str | float | bool | None
    min: float | None = None
    max: float | None = None
    integer: bool | None = None
    categories: list[str] | None = None


class CalibrationOut(BaseModel):
    """A classifier's recorded calibration as the server judges it (FASTTRACK_CALIBRATION_MAX_ERROR)."""

    error: float | None = Field(description="Expected calibration error on the held-out rows (None: not recorded).")
    trusted: bool = Field(description="Whether fasttrack_estimated_accuracy is exported for this version.")
    reason: str


class ModelOut(BaseModel):
    """The model being served."""

    name: str
    version: str
    alias: str | None
    uri: str
    run_id: str | None
    trained_at: str
    task: Literal["classification", "regression"]
    target: str
    estimator: str
    backend: str
    primary_metric: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    labels: list[Label] | None
    features: list[FeatureOut]
    input_example: list[dict[str, Any]] = Field(
        description="One record made of each feature's typical value (never a row of the training data)."
    )
    data: dict[str, Any] = Field(description="The training data's fingerprint, rows and columns (not its source).")
    libraries: dict[str, str]
    calibration: CalibrationOut | None = Field(
        None, description="Classifiers: whether the accuracy is estimated from the confidences before labels arrive."
    )


# ------------------------------------------------------------------------------- Open Inference Protocol (V2)
class V2Tensor(BaseModel):
    """A tensor's description (metadata)."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class V2RequestInput(BaseModel):
    """One input tensor: here, one feature column (``pd`` content type)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="Row-major values; absent when sent as binary data.")


class V2RequestOutput(BaseModel):
    """An output asked for by name: ``predict`` or ``predict_proba``."""

    name: str
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    """An inference request."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput]
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    """One output tensor."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class V2InferenceResponse(BaseModel):
    """An inference response."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2ResponseOutput]


class V2ModelMetadata(BaseModel):
    """A model's metadata: one input tensor per feature."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[V2Tensor]
    outputs: list[V2Tensor]
    parameters: dict[str, Any] | None = None


class V2ServerMetadata(BaseModel):
    """The server's metadata."""

    name: str
    version: str
    extensions: list[str]


class V2ErrorOut(BaseModel):
    """The protocol's error shape."""

    error: str


# ---------------------------------------------------------------------------------------------------- OpenAPI
#: The V2 tensor type of each feature kind.
V2_DATATYPES = {"numeric": "FP64", "boolean": "BOOL", "categorical": "BYTES"}


def openapi_for(
    document: dict[str, Any], schema: Schema | None, max_batch_rows: int, extra: ExtraFields = "refuse"
) -> dict[str, Any]:
    """Patch the OpenAPI document with the served model's features (or a generic record while none is loaded).

    The record's schema is generated from the feature rules (:func:`fasttrack.features.openapi.record_schema`).
    """
    components = document.setdefault("components", {}).setdefault("schemas", {})
    feedback = TypeAdapter[FeedbackBody](FeedbackBody).json_schema(ref_template="#/components/schemas/{model}")
    components.update(feedback.pop("$defs", {}))
    components[FEEDBACK_SCHEMA] = {"title": FEEDBACK_SCHEMA, **feedback}
    if schema is None:
        components[RECORD_SCHEMA] = {
            "title": RECORD_SCHEMA,
            "type": "object",
            "description": "One input record: feature name -> value (the features appear once a model is loaded).",
            "additionalProperties": True,
        }
        example: dict[str, Any] = {"feature_1": 5.3, "feature_2": 2.1}
    else:
        components[RECORD_SCHEMA] = record_schema(schema, extra=extra, title=RECORD_SCHEMA)
        example = schema.example_record()
    ref = {"$ref": f"#/components/schemas/{RECORD_SCHEMA}"}
    paths = document.get("paths", {})
    post = paths.get("/predict", {}).get("post")
    if post is not None:
        post["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            ref,
                            {"type": "array", "items": ref, "minItems": 1, "maxItems": max_batch_rows},
                        ]
                    },
                    "examples": {
                        "one record": {"value": example},
                        "a batch": {"value": [example, example]},
                    },
                }
            },
        }
    get = paths.get("/predict", {}).get("get")
    if get is not None and schema is not None:
        fixed = [p for p in get.get("parameters", []) if p.get("name") == "probabilities"]
        get["parameters"] = [
            {
                "name": f.name,
                "in": "query",
                "required": not f.nullable,
                # Query values are text, read by the feature's rules like any other text: a numeric feature also
                # takes "true" or " 3 ", a nullable one a missing marker. A JSON type would say less than that.
                "description": f"{describe(f)} (written as text, as a {query_type(f)} or as the rules read text)",
                "schema": {"type": "string"},
                **({"example": f.example} if f.example is not None else {}),
            }
            for f in schema.features
        ] + fixed
    invocations = paths.get("/invocations", {}).get("post")
    if invocations is not None:
        names = list(example)
        content = invocations.setdefault("requestBody", {}).setdefault("content", {})
        content.setdefault("application/json", {})["examples"] = {
            "dataframe_split": {"value": {"dataframe_split": {"columns": names, "data": [list(example.values())]}}},
            "dataframe_records": {"value": {"dataframe_records": [example]}},
            "instances": {"value": {"instances": [example]}},
            "inputs": {"value": {"inputs": {k: [v] for k, v in example.items()}}},
        }
        content["text/csv"] = {
            "schema": {"type": "string"},
            "example": ",".join(names) + "\n" + ",".join("" if v is None else str(v) for v in example.values()),
        }
    if schema is not None:
        v2_example = {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {"name": f.name, "shape": [1, 1], "datatype": V2_DATATYPES[f.kind], "data": [f.example]}
                for f in schema.features
            ],
            "outputs": [{"name": "predict"}],
        }
        for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
            infer = paths.get(path, {}).get("post")
            if infer is not None:
                body = infer.setdefault("requestBody", {}).setdefault("content", {}).setdefault("application/json", {})
                body["example"] = v2_example
    return document
