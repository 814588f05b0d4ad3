"""``POST /invocations``: MLflow's four JSON formats and CSV, MLflow's answer and error shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fasttrack.config import Settings
from fasttrack.serving.predictor import Predictor

AppClient = Callable[..., Any]
EXPECTED = {"predictions": ["positive", "negative"]}

FORMATS = {
    "dataframe_split": {
        "dataframe_split": {"columns": ["feature_1", "feature_2"], "data": [[5.3, 2.1], [1.0, 6.0]], "index": [7, 8]}
    },
    "dataframe_records": {
        "dataframe_records": [{"feature_1": 5.3, "feature_2": 2.1}, {"feature_1": 1, "feature_2": 6}]
    },
    "instances as records": {"instances": [{"feature_1": 5.3, "feature_2": 2.1}, {"feature_1": 1.0, "feature_2": 6.0}]},
    "instances as columns": {"instances": {"feature_1": [5.3, 1.0], "feature_2": [2.1, 6.0]}},
    "inputs as columns": {"inputs": {"feature_1": [5.3, 1.0], "feature_2": [2.1, 6.0]}, "params": {"ignored": 1}},
    "inputs as records": {"inputs": [{"feature_1": 5.3, "feature_2": 2.1}, {"feature_1": 1.0, "feature_2": 6.0}]},
}


@pytest.fixture
def client(serve_app: AppClient, settings: Settings, classifier: Predictor) -> Iterator[TestClient]:
    with serve_app(settings.model_copy(update={"max_batch_rows": 3}), classifier) as (test_client, _):
        yield test_client


@pytest.mark.parametrize("payload", FORMATS.values(), ids=FORMATS.keys())
def test_every_json_format(client: TestClient, payload: dict[str, Any]) -> None:
    response = client.post("/invocations", json=payload)
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED
    assert response.headers["X-Model-Version"] == "1"


def test_one_row_of_scalars(client: TestClient) -> None:
    assert client.post("/invocations", json={"inputs": {"feature_1": 5.3, "feature_2": 2.1}}).json() == {
        "predictions": ["positive"]
    }


def test_csv(client: TestClient) -> None:
    body = "feature_1,feature_2\n5.3,2.1\n1,6\n"
    response = client.post("/invocations", content=body, headers={"Content-Type": "text/csv; charset=utf-8"})
    assert response.json() == EXPECTED


def mlflow_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == ("BAD_REQUEST" if status < 500 else body["error_code"])
    message: str = body["message"]
    return message


ERRORS = [
    ({"dataframe_records": [{"feature_1": "abc", "feature_2": 2.1}]}, "feature_1: expected a number, got 'abc'"),
    ({"foo": []}, "exactly one of the input fields"),
    ({"dataframe_records": [], "inputs": []}, "exactly one of the input fields"),
    ({"dataframe_split": {"data": [[1, 2]]}}, "'columns' must be a list"),
    ({"dataframe_split": {"columns": ["feature_1"], "data": [[1, 2]]}}, "row 0 has 2 values for 1 columns"),
    ({"dataframe_records": {"feature_1": 1}}, "must be a list of records"),
    ({"inputs": {"feature_1": [1, 2], "feature_2": [1]}}, "different lengths"),
    ({"instances": [[1, 2]]}, "records (a list of objects) or columns"),
    ({"dataframe_records": []}, "empty batch"),
]


@pytest.mark.parametrize(("payload", "message"), ERRORS)
def test_errors_have_mlflows_shape(client: TestClient, payload: Any, message: str) -> None:
    assert message in mlflow_error(client.post("/invocations", json=payload), 400)


def test_a_list_body_is_refused_as_mlflow_does(client: TestClient) -> None:
    assert "Received a list" in mlflow_error(client.post("/invocations", json=[{"feature_1": 1}]), 400)


def test_transport_errors(client: TestClient) -> None:
    assert "malformed JSON" in mlflow_error(
        client.post("/invocations", content=b"{", headers={"Content-Type": "application/json"}), 400
    )
    assert "content types" in mlflow_error(
        client.post("/invocations", content=b"x", headers={"Content-Type": "application/xml"}), 415
    )
    assert "FASTTRACK_MAX_BATCH_ROWS" in mlflow_error(
        client.post("/invocations", json={"dataframe_records": [{"feature_1": 1, "feature_2": 2}] * 4}), 413
    )
    csv = client.post("/invocations", content="feature_1,feature_2\n1\n", headers={"Content-Type": "text/csv"})
    assert "row 1 has 1 fields" in mlflow_error(csv, 400)


def test_not_ready_has_mlflows_shape(serve_app: AppClient, settings: Settings, gated_load: Any) -> None:
    gated = gated_load(settings, "models:/sample/1")
    manager, metrics, release = gated.manager, gated.metrics, gated.release
    with serve_app(settings, manager=manager, metrics=metrics) as (client, _):
        try:
            response = client.post("/invocations", json=FORMATS["dataframe_records"])
            assert response.status_code == 503
            assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        finally:
            release.set()


def test_csv_reads_missing_markers_as_fasttrack_predict_does(client: TestClient) -> None:
    # NA in a numeric column is missing, as it is in a file scored with `fasttrack predict` (it was a 400).
    marked = client.post(
        "/invocations", content="feature_1,feature_2\n5.3,NA\n1.0, ? \n", headers={"Content-Type": "text/csv"}
    )
    empty = client.post(
        "/invocations", content="feature_1,feature_2\n5.3,\n1.0,\n", headers={"Content-Type": "text/csv"}
    )
    assert marked.status_code == 200, marked.text
    assert marked.json() == empty.json()


def test_columns_the_model_never_saw_are_ignored_as_mlflow_does(client: TestClient) -> None:
    records = [{"feature_1": 5.3, "feature_2": 2.1, "comment": "x"}, {"feature_1": 1, "feature_2": 6, "label": "n"}]
    response = client.post("/invocations", json={"dataframe_records": records})
    assert response.json() == EXPECTED
    metrics = client.get("/metrics").text
    assert 'fasttrack_ignored_field_total{field="__unknown__",model="sample",version="1"} 1.0' in metrics
    assert 'fasttrack_ignored_field_total{field="label",model="sample",version="1"} 1.0' in metrics


# ------------------------------------------------------------------------------ hostile bodies (issue 17)
def test_too_many_split_rows_are_413_before_records_are_built(client: TestClient) -> None:
    # The rows are counted before any is checked or turned into a record: the bad last row is never looked at.
    rows: list[Any] = [[5.3, 2.1]] * 4 + ["not a row"]
    answer = client.post(
        "/invocations", json={"dataframe_split": {"columns": ["feature_1", "feature_2"], "data": rows}}
    )
    assert answer.status_code == 413 and "batch of 5 rows" in answer.json()["message"]


def test_too_many_columns_rows_and_csv_rows_are_413(client: TestClient) -> None:
    columns = {"inputs": {"feature_1": [1.0] * 4, "feature_2": [2.0] * 4}}
    assert client.post("/invocations", json=columns).status_code == 413
    csv = "feature_1,feature_2\n" + "5.3,2.1\n" * 4 + "bad,row,with,too,many\n"
    answer = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert answer.status_code == 413 and "batch of 4 rows" in answer.json()["message"]
    blank = client.post(
        "/invocations", content="feature_1,feature_2\n" + "\n" * 100, headers={"content-type": "text/csv"}
    )
    assert blank.status_code == 413


def test_a_lone_surrogate_is_400_in_mlflow_shape(client: TestClient) -> None:
    answer = client.post(
        "/invocations", content=rb'{"dataframe_records": [{"\ud800": 1}]}', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST" and "lone surrogate" in answer.json()["message"]
