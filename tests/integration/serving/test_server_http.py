"""A real ``fasttrack serve`` over HTTP: every endpoint and form, and one case of each client error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support import Server

from .conftest import BODY_LIMIT

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
OTHER = {"feature_1": 1.0, "feature_2": 6.0}


def post(server: Server, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    return (
        httpx.post(server.url + path, json=body, timeout=30, **kwargs)
        if body is not None
        else httpx.post(server.url + path, timeout=30, **kwargs)
    )


# -------------------------------------------------------------------------------------------- the briefs' API
def test_post_one_record_answers_exactly_as_the_brief_says(classifier_server: Server) -> None:
    response = post(classifier_server, "/predict", RECORD)
    assert response.status_code == 200
    assert response.content == b'{"prediction":"positive"}'
    assert response.headers["X-Model-Version"] == "1"


def test_probabilities_and_batches(classifier_server: Server) -> None:
    one = post(classifier_server, "/predict?probabilities=true", RECORD).json()
    assert one["prediction"] == "positive" and one["probabilities"]["positive"] > 0.5
    assert post(classifier_server, "/predict", [RECORD, OTHER]).json() == {"predictions": ["positive", "negative"]}
    many = post(classifier_server, "/predict?probabilities=true", [RECORD, OTHER]).json()
    assert many["predictions"] == ["positive", "negative"] and len(many["probabilities"]) == 2


def test_get_forms(classifier_server: Server, regression_server: Server) -> None:
    response = httpx.get(classifier_server.url + "/predict?feature_1=5.3&feature_2=2.1")
    assert response.content == b'{"prediction":"positive"}' and response.headers["X-Model-Version"] == "1"
    value = httpx.get(regression_server.url + "/predict?x=3.1").json()["prediction"]
    assert isinstance(value, float) and value == pytest.approx(7.2, abs=0.5)
    assert post(regression_server, "/predict", {"x": 3.1}).json() == {"prediction": value}


def test_invocations_and_v2_answer_too(classifier_server: Server) -> None:
    split = {"dataframe_split": {"columns": ["feature_1", "feature_2"], "data": [[5.3, 2.1], [1.0, 6.0]]}}
    answer = post(classifier_server, "/invocations", split)
    assert answer.json() == {"predictions": ["positive", "negative"]} and answer.headers["X-Model-Version"] == "1"
    csv = post(
        classifier_server,
        "/invocations",
        content="feature_1,feature_2\n5.3,2.1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert csv.json() == {"predictions": ["positive"]}
    v2 = {
        "inputs": [
            {"name": "feature_1", "shape": [1, 1], "datatype": "FP64", "data": [5.3]},
            {"name": "feature_2", "shape": [1, 1], "datatype": "FP64", "data": [2.1]},
        ]
    }
    assert post(classifier_server, "/v2/models/sample/infer", v2).json()["outputs"][0]["data"] == ["positive"]


def test_operations(classifier_server: Server) -> None:
    url = classifier_server.url
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/ready").json() == {"status": "ready", "model": "sample", "version": "1"}
    assert httpx.get(url + "/v2/health/live").status_code == 200
    model = httpx.get(url + "/model").json()
    assert (model["name"], model["version"], model["alias"]) == ("sample", "1", "champion")
    assert model["run_id"] and model["trained_at"] and model["metrics"]["roc_auc"] > 0.5
    assert [f["name"] for f in model["features"]] == ["feature_1", "feature_2"]
    assert model["labels"] == ["negative", "positive"]


def test_docs_need_no_internet(classifier_server: Server) -> None:
    page = httpx.get(classifier_server.url + "/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in page and "cdn." not in page
    assert httpx.get(classifier_server.url + "/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    schema = httpx.get(classifier_server.url + "/openapi.json").json()["components"]["schemas"]["PredictionRecord"]
    assert set(schema["properties"]) == {"feature_1", "feature_2", "label"}  # the target: accepted, ignored
    features = httpx.get(classifier_server.url + "/model").json()["features"]
    assert schema["examples"] == [{f["name"]: f["example"] for f in features}]  # typical values of the training data
    assert 3 < schema["examples"][0]["feature_1"] < 5


def test_a_local_folder_every_feature_kind_and_unusual_values(mixed_server: Server) -> None:
    url = mixed_server.url
    assert httpx.get(url + "/ready").json()["version"] == "local"
    for record in ({"colour": "red", "member": True}, {"amount": None, "colour": "blue", "member": False}):
        assert post(mixed_server, "/predict", record).json()["prediction"] in ("yes", "no")
    assert post(mixed_server, "/predict", {"amount": 1e9, "colour": "purple", "member": True}).status_code == 200
    metrics = httpx.get(url + "/metrics").text
    assert 'fasttrack_unseen_category_total{feature="colour",model="mixed",version="local"} 1.0' in metrics
    assert 'fasttrack_out_of_range_total{feature="amount",model="mixed",version="local"} 1.0' in metrics


# ---------------------------------------------------------------------------------------- the error table
def details(response: httpx.Response) -> list[tuple[str, str]]:
    return [(d["field"], d["reason"]) for d in response.json()["details"]]


ERROR_TABLE = [
    ("unknown field", {**RECORD, "colour": "red"}, [("colour", "unknown field")]),
    ("missing required field", {"feature_1": 5.3}, [("feature_2", "field required")]),
    ("wrong type", {"feature_1": "abc", "feature_2": 2.1}, [("feature_1", "expected a number, got 'abc'")]),
    ("empty batch", [], [("body", "empty batch: send at least one record")]),
]


@pytest.mark.parametrize(("case", "body", "expected"), ERROR_TABLE, ids=[row[0] for row in ERROR_TABLE])
def test_error_table(classifier_server: Server, case: str, body: Any, expected: list[tuple[str, str]]) -> None:
    response = post(classifier_server, "/predict", body)
    assert response.status_code == 422
    assert details(response) == expected
    assert isinstance(response.json()["error"], str)


def test_an_object_for_a_category(mixed_server: Server) -> None:
    response = post(mixed_server, "/predict", {"amount": 1.0, "colour": {"name": "red"}, "member": True})
    assert response.status_code == 422
    assert details(response) == [("colour", "expected a category (text), got {'name': 'red'}")]


def test_nan_is_missing_and_infinity_refused(classifier_server: Server) -> None:
    headers = {"Content-Type": "application/json"}
    nan = post(classifier_server, "/predict", content='{"feature_1": NaN, "feature_2": 2.1}', headers=headers)
    assert nan.status_code == 200  # a missing value, which the model imputes
    response = post(classifier_server, "/predict", content='{"feature_1": Infinity, "feature_2": 2.1}', headers=headers)
    assert response.status_code == 422
    assert details(response)[0][0] == "feature_1" and "finite" in details(response)[0][1]


def test_malformed_json(classifier_server: Server) -> None:
    response = post(
        classifier_server, "/predict", content=b'{"feature_1": 5.3,', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"].startswith("malformed JSON")


def test_wrong_content_type(classifier_server: Server) -> None:
    response = post(classifier_server, "/predict", content=b"feature_1=5.3", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_body_over_the_size_limit(classifier_server: Server) -> None:
    body = b'{"feature_1": 5.3, "feature_2": 2.1, "pad": "' + b"x" * BODY_LIMIT + b'"}'
    response = post(classifier_server, "/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over the limit" in response.json()["error"]


def test_batch_over_the_row_limit(classifier_server: Server) -> None:
    response = post(classifier_server, "/predict", [RECORD] * 10_001)
    assert response.status_code == 413 and "10001 rows" in response.json()["error"]
    assert post(classifier_server, "/predict", [RECORD] * 10_000).status_code == 200


def test_no_client_input_is_a_500(classifier_server: Server) -> None:
    weird = [
        b"null",
        b'"text"',
        b"[[1, 2]]",
        b'{"feature_1": 1e400, "feature_2": 1}',
        b'{"feature_1": 123456789012345678901234567890, "feature_2": 1}',
        b'{"feature_1": [], "feature_2": {}}',
        b'{"": 1}',
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,
    ]
    for body in weird:
        response = post(classifier_server, "/predict", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (body[:40], response.status_code, response.text)
