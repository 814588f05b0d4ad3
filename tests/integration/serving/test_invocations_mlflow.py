"""``POST /invocations`` answers what ``mlflow models serve`` would: the same predictions as ``mlflow.pyfunc``.

For each payload, MLflow's own scoring-server parser turns it into the frame ``mlflow models serve`` would score,
and the ``mlflow.pyfunc`` model (loaded from the same registered version) predicts it; FastTrack's answer must be
equal. Errors keep MLflow's shape.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Server, mlflow_client

pytestmark = pytest.mark.integration


def pyfunc_predictions(home: Path, uri: str, payload: dict[str, Any] | str) -> list[Any]:
    """What ``mlflow models serve`` answers: MLflow's parser, then ``pyfunc.predict``."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input

    mlflow_client(home)
    model = mlflow.pyfunc.load_model(uri)
    schema = model.metadata.get_input_schema()
    if isinstance(payload, str):
        data = parse_csv_input(io.StringIO(payload), schema)
    else:
        data = infer_and_parse_data(payload, schema)
    return list(model.predict(data).tolist())


def equal(ours: list[Any], theirs: list[Any]) -> bool:
    """Labels equal; numbers within rel 1e-4: the server runs the ONNX graph (float32), which registration
    checked against scikit-learn on the held-out rows with that tolerance (fasttrack.export.check)."""
    if len(ours) != len(theirs):
        return False
    return all(
        math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) if isinstance(a, float) else a == b
        for a, b in zip(ours, theirs, strict=True)
    )


CLASSIFIER_PAYLOADS: list[dict[str, Any] | str] = [
    {"dataframe_split": {"columns": ["feature_1", "feature_2"], "data": [[5.3, 2.1], [1.0, 6.0], [3.3, 3.0]]}},
    {"dataframe_records": [{"feature_1": 5.3, "feature_2": 2.1}, {"feature_1": 2, "feature_2": 3}]},
    {"instances": [{"feature_1": 4.0, "feature_2": 3.9}, {"feature_1": 4.1, "feature_2": 3.2}]},
    {"inputs": {"feature_1": [5.3, 1.0, -3.0], "feature_2": [2.1, 6.0, 9.5]}},
    "feature_1,feature_2\n5.3,2.1\n1.0,6.0\n4.5,3.4\n",
]
REGRESSION_PAYLOADS: list[dict[str, Any] | str] = [
    {"dataframe_split": {"columns": ["x"], "data": [[3.1], [0.0], [-7.25]]}},
    {"dataframe_records": [{"x": 3.1}, {"x": 10}]},
    {"instances": [{"x": 1.5}]},
    {"inputs": {"x": [3.1, 4.2]}},
    "x\n3.1\n-2\n",
]
MIXED_PAYLOADS: list[dict[str, Any] | str] = [
    {
        "dataframe_split": {
            "columns": ["amount", "colour", "member"],
            "data": [[30.0, "red", True], [75.5, "blue", False], [50.0, "green", True]],
        }
    },
    {"dataframe_records": [{"amount": 42.0, "colour": "green", "member": False}]},
]


def ask(server: Server, payload: dict[str, Any] | str) -> httpx.Response:
    if isinstance(payload, str):
        return httpx.post(server.url + "/invocations", content=payload, headers={"Content-Type": "text/csv"})
    return httpx.post(server.url + "/invocations", json=payload)


def test_the_servers_run_the_onnx_graph(classifier_server: Server, regression_server: Server) -> None:
    for server in (classifier_server, regression_server):
        assert httpx.get(server.url + "/model").json()["backend"] == "onnx"


@pytest.mark.parametrize("payload", CLASSIFIER_PAYLOADS)
def test_classifier_answers_equal_pyfunc(classifier_server: Server, model_home: Path, payload: Any) -> None:
    response = ask(classifier_server, payload)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pyfunc_predictions(model_home, "models:/sample/1", payload)


@pytest.mark.parametrize("payload", REGRESSION_PAYLOADS)
def test_regressor_answers_equal_pyfunc(regression_server: Server, model_home: Path, payload: Any) -> None:
    response = ask(regression_server, payload)
    assert response.status_code == 200, response.text
    ours = response.json()["predictions"]
    assert equal(ours, pyfunc_predictions(model_home, "models:/sample-regression/1", payload)), ours


@pytest.mark.parametrize("payload", MIXED_PAYLOADS)
def test_every_feature_kind_answers_equal_pyfunc(mixed_server: Server, model_home: Path, payload: Any) -> None:
    response = ask(mixed_server, payload)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pyfunc_predictions(model_home, "models:/mixed/1", payload)


def test_errors_have_mlflows_shape(classifier_server: Server) -> None:
    response = httpx.post(classifier_server.url + "/invocations", json={"records": []})
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "BAD_REQUEST" and "exactly one of the input fields" in body["message"]
    wrong = httpx.post(
        classifier_server.url + "/invocations", json={"dataframe_records": [{"feature_1": "x", "feature_2": 1}]}
    )
    assert wrong.status_code == 400 and "feature_1" in wrong.json()["message"]
