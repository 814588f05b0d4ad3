"""Object-store helpers: options from the standard variables, object identity, one-line errors.

The same paths run against a real S3-compatible server in tests/integration/test_object_store.py; these check
the mapping of every error kind without one.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from fasttrack.data import object_store


def client_error(code: str, message: str = "refused") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "GetObject")


def test_mlflow_endpoint_variable_serves_data_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000")
    options = object_store.storage_options("s3://bucket/key.csv")
    assert options["endpoint_url"] == "http://minio:9000"
    # botocore reads AWS_ENDPOINT_URL itself, and it wins.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://other:9000")
    assert "endpoint_url" not in object_store.storage_options("s3://bucket/key.csv")
    assert object_store.storage_options("gs://bucket/key.csv") == {}
    assert object_store.storage_options("s3://b/k", {"anon": True})["anon"] is True


def test_network_defaults_never_override_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"AWS_MAX_ATTEMPTS": "10"}
    monkeypatch.setattr(object_store.os, "environ", environ)  # this test's own environment, restored after
    object_store.apply_network_defaults()
    assert environ["AWS_MAX_ATTEMPTS"] == "10"
    assert environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert int(environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 60


@pytest.mark.parametrize(
    ("info", "identity"),
    [
        ({"ETag": '"abc"', "VersionId": "v1", "size": 3}, {"etag": "abc", "version_id": "v1"}),
        ({"ETag": '"abc"', "VersionId": "null"}, {"etag": "abc"}),
        ({"etag": "CJ3x", "generation": "1700000000"}, {"etag": "CJ3x", "version_id": "1700000000"}),
        ({"size": 3}, {}),
    ],
)
def test_object_identity(info: dict[str, str], identity: dict[str, str]) -> None:
    assert object_store.object_identity(info) == identity


def _with_cause(exc: Exception, cause: Exception) -> Exception:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (client_error("NoSuchBucket", "The specified bucket does not exist"), "bucket not found: s3://data "),
        (
            _with_cause(FileNotFoundError("The specified bucket does not exist"), client_error("NoSuchBucket")),
            "bucket not found",
        ),
        (FileNotFoundError("data/x.csv"), "file not found: s3://data/x.csv"),
        (client_error("NoSuchKey"), "file not found"),
        (client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist"), "AWS_ACCESS_KEY_ID"),
        (client_error("SignatureDoesNotMatch"), "refused"),
        (PermissionError("Forbidden"), "check the credentials"),
        (NoCredentialsError(), "no usable object-store credentials"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "cannot reach the object store"),
        (client_error("SlowDown", "reduce your request rate"), "refused the request for s3://data/x.csv"),
    ],
)
def test_errors_become_one_line(exc: Exception, needle: str) -> None:
    message = object_store.error_message(exc, "s3://data/x.csv")
    assert message is not None and needle in message
    assert "\n" not in message


def test_other_errors_are_not_object_store_errors() -> None:
    assert object_store.error_message(ValueError("bad"), "s3://data/x.csv") is None
    assert object_store.is_object_store_error(NoCredentialsError())
    assert not object_store.is_object_store_error(ValueError("bad"))
