"""``POST /predict`` and ``GET /predict``: the briefs' answers, byte for byte, and one case of each client error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fasttrack.config import Settings
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor

AppClient = Callable[..., Any]
RECORD = {"feature_1": 5.3, "feature_2": 2.1}
OTHER = {"feature_1": 1.0, "feature_2": 6.0}


@pytest.fixture
def client(serve_app: AppClient, settings: Settings, classifier: Predictor) -> Iterator[TestClient]:
    small = settings.model_copy(update={"max_batch_rows": 5, "max_body_bytes": 4096})
    with serve_app(small, classifier) as (test_client, _):
        yield test_client


def test_one_record_answers_exactly_as_the_brief_says(client: TestClient) -> None:
    response = client.post("/predict", json=RECORD)
    assert response.status_code == 200
    assert response.content == b'{"prediction":"positive"}'
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["content-type"] == "application/json"


def test_probabilities(client: TestClient) -> None:
    body = client.post("/predict?probabilities=true", json=RECORD).json()
    assert body["prediction"] == "positive"
    assert set(body["probabilities"]) == {"negative", "positive"}
    assert body["probabilities"]["positive"] > 0.5
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


def test_a_batch(client: TestClient) -> None:
    assert client.post("/predict", json=[RECORD, OTHER]).json() == {"predictions": ["positive", "negative"]}
    body = client.post("/predict", params={"probabilities": "true"}, json=[RECORD, OTHER]).json()
    assert body["predictions"] == ["positive", "negative"]
    assert len(body["probabilities"]) == 2 and body["probabilities"][1]["negative"] > 0.5


def test_get_with_query_parameters(client: TestClient) -> None:
    response = client.get("/predict", params={"feature_1": "5.3", "feature_2": "2.1"})
    assert response.content == b'{"prediction":"positive"}'
    assert response.headers["X-Model-Version"] == "1"
    assert "probabilities" in client.get("/predict?feature_1=5.3&feature_2=2.1&probabilities=true").json()


def test_get_of_the_second_brief(serve_app: AppClient, settings: Settings, regressor: Predictor) -> None:
    with serve_app(settings, regressor) as (client, _):
        value = client.get("/predict?x=3.1").json()["prediction"]
        assert isinstance(value, float) and value == pytest.approx(7.2, abs=0.5)
        assert client.post("/predict", json={"x": 3.1}).json() == {"prediction": value}
        wrong = client.post("/predict?probabilities=true", json={"x": 3.1})
        assert wrong.status_code == 400 and "regressor" in wrong.json()["error"]


def test_nullable_features_may_be_missing_or_null(serve_app: AppClient, settings: Settings, mixed: Predictor) -> None:
    with serve_app(settings, mixed) as (client, _):
        for record in ({"colour": "red", "member": True}, {"amount": None, "colour": "red", "member": True}):
            response = client.post("/predict", json=record)
            assert response.status_code == 200, response.text
            assert response.json()["prediction"] in ("yes", "no")
        assert client.get("/predict?amount=&colour=red&member=true").status_code == 200


def test_unusual_values_are_served_and_counted(serve_app: AppClient, settings: Settings, mixed: Predictor) -> None:
    with serve_app(settings, mixed) as (client, metrics):
        response = client.post("/predict", json={"amount": 1e6, "colour": "purple", "member": False})
        assert response.status_code == 200
        labels = {"model": "mixed", "version": "1"}
        sample = metrics.registry.get_sample_value
        assert sample("fasttrack_unseen_category_total", {**labels, "feature": "colour"}) == 1
        assert sample("fasttrack_out_of_range_total", {**labels, "feature": "amount"}) == 1


def detail(response: Any) -> list[tuple[str, str]]:
    return [(d["field"], d["reason"]) for d in response.json()["details"]]


# One case per row of the error table: status, the field named and why.
ERRORS = [
    ("unknown field", {**RECORD, "colour": "red"}, 422, [("colour", "unknown field")]),
    ("missing required field", {"feature_1": 5.3}, 422, [("feature_2", "field required")]),
    ("wrong type", {"feature_1": "abc", "feature_2": 2.1}, 422, [("feature_1", "expected a number, got 'abc'")]),
    ("empty batch", [], 422, [("body", "empty batch: send at least one record")]),
    ("not a record", [RECORD, "x"], 422, [("[1]", "expected an object, got 'x'")]),
]


@pytest.mark.parametrize(("case", "body", "status", "expected"), ERRORS, ids=[e[0] for e in ERRORS])
def test_client_errors_name_the_field(
    client: TestClient, case: str, body: Any, status: int, expected: list[tuple[str, str]]
) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == status
    assert detail(response) == expected
    assert response.json()["error"].startswith("input does not match the model's schema")
    assert response.headers["X-Model-Version"] == "1"


def test_an_object_for_a_category(serve_app: AppClient, settings: Settings, mixed: Predictor) -> None:
    with serve_app(settings, mixed) as (client, _):
        response = client.post("/predict", json={"amount": 1, "colour": {"a": 1}, "member": True})
        assert response.status_code == 422
        assert detail(response) == [("colour", "expected a category (text), got {'a': 1}")]


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", '"inf"'])
def test_infinity_is_refused(client: TestClient, literal: str) -> None:
    body = f'{{"feature_1": {literal}, "feature_2": 2.1}}'
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    [(field, reason)] = detail(response)
    assert field == "feature_1" and reason.startswith("expected a finite number")


@pytest.mark.parametrize("value", ["null", "NaN", '"NA"', '""', '" ? "'])
def test_a_missing_value_is_served_and_counted(
    serve_app: AppClient, settings: Settings, classifier: Predictor, value: str
) -> None:
    # The feature always had a value in training: the field must be there, but its value may be missing (the
    # pipeline imputes it, as it would a missing value of a file scored with `fasttrack predict`).
    with serve_app(settings, classifier) as (client, _):
        body = f'{{"feature_1": 5.3, "feature_2": {value}}}'
        response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        metrics = client.get("/metrics").text
    assert 'fasttrack_missing_value_total{feature="feature_2",model="sample",version="1"} 1.0' in metrics


def test_numbers_as_text_are_numbers(client: TestClient) -> None:
    response = client.post("/predict", json={"feature_1": "5.3", "feature_2": " 2.1 "})
    assert response.json() == client.post("/predict", json=RECORD).json()


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"feature_1": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON")
    assert client.post("/predict", content=b"", headers={"Content-Type": "application/json"}).status_code == 400
    scalar = client.post("/predict", json=3)
    assert scalar.status_code == 400 and "object (one record) or an array" in scalar.json()["error"]


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post("/predict", content=b"feature_1=5.3", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    # no content type at all is read as JSON (curl users often leave it out)
    assert client.post("/predict", content=b'{"feature_1": 5.3, "feature_2": 2.1}').status_code == 200


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = b'{"feature_1": 5.3, "feature_2": 2.1, "pad": "' + b"x" * 5000 + b'"}'
    response = client.post("/predict", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "limit of 4096 bytes" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"feature_1": 5.3, "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_batch_over_the_row_limit_is_413(client: TestClient) -> None:
    response = client.post("/predict", json=[RECORD] * 6)
    assert response.status_code == 413
    assert "FASTTRACK_MAX_BATCH_ROWS" in response.json()["error"]


def test_query_errors(client: TestClient) -> None:
    repeated = client.get("/predict?feature_1=1&feature_1=2&feature_2=1")
    assert repeated.status_code == 422 and detail(repeated) == [("feature_1", "given more than once")]
    assert detail(client.get("/predict?feature_1=abc&feature_2=1")) == [("feature_1", "expected a number, got 'abc'")]
    bad_flag = client.get("/predict?feature_1=1&feature_2=1&probabilities=maybe")
    assert bad_flag.status_code == 422 and detail(bad_flag)[0][0] == "query.probabilities"


def test_big_batches_are_predicted_off_the_event_loop(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings, classifier) as (client, metrics):
        body = client.post("/predict", json=[RECORD] * 1000).json()
        assert body["predictions"] == ["positive"] * 1000
        rows = metrics.registry.get_sample_value("fasttrack_prediction_rows_total", {"model": "sample", "version": "1"})
        assert rows == 1000


def test_prediction_metrics_are_exposed(client: TestClient) -> None:
    client.post("/predict", json=RECORD)
    client.post("/predict", json={"feature_1": "x"})
    text = client.get("/metrics").text
    assert 'fasttrack_predictions_total{model="sample",outcome="success",version="1"} 1.0' in text
    assert 'fasttrack_predictions_total{model="sample",outcome="invalid",version="1"} 1.0' in text
    assert 'fasttrack_predicted_label_total{label="positive",model="sample",version="1"} 1.0' in text
    assert 'http_requests_total{handler="/predict",method="POST",status="2xx"} 1.0' in text


def test_metrics_are_per_app() -> None:
    assert ServerMetrics().registry is not ServerMetrics().registry


# ------------------------------------------------------------------------------ hostile bodies (issue 17)
@pytest.mark.parametrize("depth", [970, 1000, 1023])
def test_json_nested_just_under_the_parser_limit_is_422_not_500(client: TestClient, depth: int) -> None:
    # The fast lane (a Content-Length within the limit) and the route (chunked) alike; 2 kB fit the 4 kB limit.
    body = b"[" * depth + b"]" * depth
    for answer in (
        client.post("/predict", content=body, headers={"content-type": "application/json"}),
        client.post("/predict", content=iter([body]), headers={"content-type": "application/json"}),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["details"] == [{"field": "body", "reason": "expected an object, got [[[[...]]]]"}]


@pytest.mark.parametrize(
    "body", [rb'{"\ud800": 1}', rb'{"feature_1": "\udc00", "feature_2": 1}', rb'[{"feature_1": 1, "\udbff": 2}]']
)
def test_a_lone_surrogate_is_400_naming_where(client: TestClient, body: bytes) -> None:
    answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "lone surrogate" in answer.json()["error"]
