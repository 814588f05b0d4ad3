"""The Open Inference Protocol (V2): health, metadata, JSON and binary inference, the protocol's error shape.

A real V2 client (``tritonclient``) talks to a real server in tests/integration/serving/test_v2_client.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fasttrack.config import Settings
from fasttrack.serving.predictor import Predictor

AppClient = Callable[..., Any]


def tensor(name: str, values: list[Any], datatype: str = "FP64", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "shape": shape or [len(values), 1], "datatype": datatype, "data": values}


TWO_ROWS = {
    "parameters": {"content_type": "pd"},
    "inputs": [tensor("feature_1", [5.3, 1.0]), tensor("feature_2", [2.1, 6.0], shape=[2])],
}


@pytest.fixture
def client(serve_app: AppClient, settings: Settings, classifier: Predictor) -> Iterator[TestClient]:
    with serve_app(settings, classifier) as (test_client, _):
        yield test_client


def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "fasttrack"
    assert client.get("/v2/models/sample/ready").json() == {"name": "sample", "ready": True}
    assert client.get("/v2/models/sample/versions/1/ready").status_code == 200


def test_model_metadata_has_one_input_per_feature(client: TestClient, mixed: Predictor, serve_app: AppClient) -> None:
    meta = client.get("/v2/models/sample").json()
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [
        {"name": "feature_1", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "feature_2", "datatype": "FP64", "shape": [-1, 1]},
    ]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert meta["outputs"][0]["datatype"] == "BYTES"
    assert client.get("/v2/models/sample/versions/1").json() == meta


def test_infer_with_json_data(client: TestClient) -> None:
    response = client.post("/v2/models/sample/infer", json={"id": "r1", **TWO_ROWS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("sample", "1", "r1")
    assert body["outputs"] == [
        {"name": "predict", "shape": [2, 1], "datatype": "BYTES", "data": ["positive", "negative"]}
    ]
    assert response.headers["X-Model-Version"] == "1"
    versioned = client.post("/v2/models/sample/versions/1/infer", json=TWO_ROWS)
    assert versioned.json()["outputs"] == body["outputs"]


def test_infer_with_probabilities(client: TestClient) -> None:
    request = {**TWO_ROWS, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    outputs = {o["name"]: o for o in client.post("/v2/models/sample/infer", json=request).json()["outputs"]}
    proba = outputs["predict_proba"]
    assert proba["shape"] == [2, 2] and proba["parameters"]["classes"] == ["negative", "positive"]
    rows = np.asarray(proba["data"]).reshape(2, 2)
    assert np.allclose(rows.sum(axis=1), 1.0) and rows[0, 1] > 0.5


def binary_request(inputs: list[tuple[str, str, bytes, int]]) -> tuple[bytes, dict[str, str]]:
    """A request in the binary tensor extension, as Triton's clients send it by default."""
    header = {
        "inputs": [
            {"name": name, "shape": [rows, 1], "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}
            for name, datatype, raw, rows in inputs
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(raw for _, _, raw, _ in inputs), {"Inference-Header-Content-Length": str(len(head))}


def test_infer_with_binary_tensors(client: TestClient) -> None:
    first = np.array([5.3, 1.0], dtype="<f8").tobytes()
    second = np.array([2.1, 6.0], dtype="<f4").tobytes()
    body, headers = binary_request([("feature_1", "FP64", first, 2), ("feature_2", "FP32", second, 2)])
    response = client.post("/v2/models/sample/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["positive", "negative"]


def test_binary_bytes_and_bool_tensors(serve_app: AppClient, settings: Settings, mixed: Predictor) -> None:
    words = b"".join(struct.pack("<I", len(w)) + w for w in (b"red", b"blue"))
    body, headers = binary_request(
        [
            ("amount", "FP64", np.array([40.0, np.nan]).tobytes(), 2),
            ("colour", "BYTES", words, 2),
            ("member", "BOOL", np.array([True, False]).tobytes(), 2),
        ]
    )
    with serve_app(settings, mixed) as (client, _):
        response = client.post("/v2/models/mixed/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        expected = mixed.predict(
            [{"amount": 40.0, "colour": "red", "member": True}, {"colour": "blue", "member": False}]
        )
        assert response.json()["outputs"][0]["data"] == expected.values


def v2_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    message: str = body["error"]
    return message


ERRORS = [
    ({"inputs": [tensor("feature_1", ["abc"]), tensor("feature_2", [1.0])]}, 422, "feature_1: expected a number"),
    ({"inputs": [tensor("feature_1", [1.0])]}, 422, "feature_2: field required"),
    ({"inputs": [tensor("feature_1", [1.0, 2.0]), tensor("feature_2", [1.0])]}, 400, "different numbers of rows"),
    ({"inputs": [tensor("feature_1", [1.0, 2.0], shape=[1, 2]), tensor("feature_2", [1.0])]}, 400, "one value per row"),
    ({"inputs": [tensor("feature_1", [1.0], shape=[3, 1])]}, 400, "has 1 values for shape [3, 1]"),
    ({"inputs": [tensor("feature_1", [1.0], datatype="FP8")]}, 400, "not supported"),
    ({"inputs": [tensor("feature_1", [1.0]), tensor("feature_1", [1.0])]}, 400, "more than once"),
    ({"inputs": []}, 400, "no inputs"),
    ({**TWO_ROWS, "parameters": {"content_type": "np"}}, 400, "content type 'np'"),
    ({**TWO_ROWS, "outputs": [{"name": "logits"}]}, 400, "unknown outputs ['logits']"),
    ({"nothing": 1}, 400, "malformed inference request: inputs: Field required"),
]


@pytest.mark.parametrize(("request_body", "status", "message"), ERRORS)
def test_errors_have_the_protocols_shape(client: TestClient, request_body: Any, status: int, message: str) -> None:
    assert message in v2_error(client.post("/v2/models/sample/infer", json=request_body), status)


def test_other_models_and_versions_are_404(client: TestClient) -> None:
    assert "not served here" in v2_error(client.post("/v2/models/other/infer", json=TWO_ROWS), 404)
    assert "version 1 is" in v2_error(client.post("/v2/models/sample/versions/9/infer", json=TWO_ROWS), 404)
    assert "not served here" in v2_error(client.get("/v2/models/other"), 404)
    v2_error(client.get("/v2/models/sample/versions/2/ready"), 404)


def test_bad_binary_parts(client: TestClient) -> None:
    body, headers = binary_request([("feature_1", "FP64", b"\x00" * 7, 1), ("feature_2", "FP64", b"\x00" * 8, 1)])
    assert "whole number" in v2_error(client.post("/v2/models/sample/infer", content=body, headers=headers), 400)
    headers["Inference-Header-Content-Length"] = "99999"
    assert "bad inference-header-content-length" in v2_error(
        client.post("/v2/models/sample/infer", content=body, headers=headers), 400
    )


def test_training_columns_are_ignored_and_unknown_ones_follow_the_setting(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with_target = {**TWO_ROWS, "inputs": [*TWO_ROWS["inputs"], tensor("label", ["a", "b"], "BYTES")]}
    unknown = {**TWO_ROWS, "inputs": [*TWO_ROWS["inputs"], tensor("colour", ["a", "b"], "BYTES")]}
    with serve_app(settings, classifier) as (client, _):
        assert client.post("/v2/models/sample/infer", json=with_target).status_code == 200
        refused = client.post("/v2/models/sample/infer", json=unknown)
        assert refused.status_code == 422
        assert "colour: unknown field" in refused.json()["error"]
    with serve_app(settings.model_copy(update={"extra_fields": "ignore"}), classifier) as (client, _):
        assert client.post("/v2/models/sample/infer", json=unknown).status_code == 200


def test_text_tensors_are_read_like_any_text(client: TestClient) -> None:
    # BYTES tensors hold text: numbers as text are numbers, markers are missing (the same rules as a CSV file).
    as_text = {"inputs": [tensor("feature_1", ["5.3", "1.0"], "BYTES"), tensor("feature_2", ["2.1", "NA"], "BYTES")]}
    response = client.post("/v2/models/sample/infer", json=as_text)
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------ hostile bodies (issue 17)
def test_a_tensor_shaped_past_the_row_limit_is_413_before_its_data_is_read(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    # The declared shape decides: the 40 bytes sent would be a truncated tensor (400) if they were decoded first.
    with serve_app(settings.model_copy(update={"max_batch_rows": 10}), classifier) as (client, _):
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "feature_1",
                        "shape": [4193804],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 40},
                    }
                ]
            }
        ).encode()
        answer = client.post(
            "/v2/models/sample/infer",
            content=header + struct.pack("<I", 0) * 10,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert answer.status_code == 413 and "4193804 rows" in answer.json()["error"]


def test_a_tensor_of_another_shape_is_400_before_its_data_is_read(client: TestClient) -> None:
    body = {"inputs": [tensor("feature_1", [1.0, 2.0], shape=[1, 2]), tensor("feature_2", [1.0], shape=[1])]}
    answer = client.post("/v2/models/sample/infer", json=body)
    assert answer.status_code == 400 and "shape [N] or [N, 1]" in answer.json()["error"]
