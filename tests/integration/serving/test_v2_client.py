"""A real Open Inference Protocol client (Triton's ``tritonclient[http]``) against a real ``fasttrack serve``."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient import http

from support import Server

pytestmark = pytest.mark.integration


def client_for(server: Server) -> object:
    return http.InferenceServerClient(url=server.url.removeprefix("http://"), connection_timeout=10, network_timeout=30)


def feature(name: str, values: np.ndarray, binary: bool) -> object:
    datatype = "BYTES" if values.dtype == object else "BOOL" if values.dtype == bool else "FP64"
    tensor = http.InferInput(name, [len(values), 1], datatype)
    tensor.set_data_from_numpy(values.reshape(-1, 1), binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "json tensors"])
def test_round_trip(classifier_server: Server, binary: bool) -> None:
    client = client_for(classifier_server)
    assert client.is_server_live() and client.is_server_ready()  # type: ignore[attr-defined]
    assert client.is_model_ready("sample") and client.is_model_ready("sample", "1")  # type: ignore[attr-defined]
    assert not client.is_model_ready("sample", "7")  # type: ignore[attr-defined]
    meta = client.get_model_metadata("sample")  # type: ignore[attr-defined]
    assert [i["name"] for i in meta["inputs"]] == ["feature_1", "feature_2"]
    inputs = [
        feature("feature_1", np.array([5.3, 1.0]), binary),
        feature("feature_2", np.array([2.1, 6.0]), binary),
    ]
    outputs = [http.InferRequestedOutput("predict"), http.InferRequestedOutput("predict_proba")]
    result = client.infer("sample", inputs, outputs=outputs, request_id="42")  # type: ignore[attr-defined]
    assert result.get_response()["id"] == "42"
    labels = result.as_numpy("predict")
    assert labels.shape == (2, 1)
    assert [v.decode() if isinstance(v, bytes) else v for v in labels.ravel()] == ["positive", "negative"]
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_every_feature_kind(mixed_server: Server) -> None:
    client = client_for(mixed_server)
    inputs = [
        feature("amount", np.array([30.0, np.nan]), True),  # NaN: a missing value
        feature("colour", np.array(["red", "blue"], dtype=object), True),
        feature("member", np.array([True, False]), True),
    ]
    result = client.infer("mixed", inputs, model_version="local")  # type: ignore[attr-defined]
    assert result.as_numpy("predict").shape == (2, 1)


def test_errors_reach_the_client(classifier_server: Server) -> None:
    from tritonclient.utils import InferenceServerException

    client = client_for(classifier_server)
    wrong = [feature("feature_1", np.array([5.3]), True)]
    with pytest.raises(InferenceServerException, match="feature_2: field required"):
        client.infer("sample", wrong)  # type: ignore[attr-defined]
    with pytest.raises(InferenceServerException, match="not served here"):
        client.infer("other", wrong)  # type: ignore[attr-defined]
