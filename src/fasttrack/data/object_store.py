"""Object stores (S3 and S3-compatible stores such as MinIO, Google Cloud Storage) as fsspec sees them.

Data sources and MLflow artifact stores may be object-store URLs (``s3://bucket/key``, ``gs://bucket/key``).
Endpoints and credentials come from the standard variables and files: ``AWS_ENDPOINT_URL`` (or MLflow's
``MLFLOW_S3_ENDPOINT_URL``) for a MinIO or other S3-compatible server, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE`` / ``~/.aws``, and Google's application default credentials for
``gs://``. This module adds the three things FastTrack needs on top: bounded retries (the SDKs' defaults retry an
unreachable endpoint for a long time), the object's identity for lineage (ETag, version id), and one readable
line for every way the store can refuse a request.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

#: URL schemes that name an object store (s3a is Hadoop's name for s3; gcs is gcsfs's alias of gs).
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs"})

# Defaults applied only where the user has not set the variable: a few attempts, then one clear error.
_NETWORK_DEFAULTS = {
    # botocore (s3fs, MLflow's S3 artifact store): total attempts per request, retries included.
    "AWS_MAX_ATTEMPTS": "3",
    # MLflow's REST client: with its defaults (7 retries, backoff factor 2, 120 s timeout) an unreachable
    # tracking server takes minutes to report.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# Seconds to wait for a TCP connection to an object store before the attempt counts as failed.
_CONNECT_TIMEOUT = 5


def apply_network_defaults() -> None:
    """Bound retries and timeouts of the AWS SDK and MLflow's HTTP client, unless the user has set them.

    Every variable set here is one the SDKs document (``AWS_MAX_ATTEMPTS``, ``MLFLOW_HTTP_REQUEST_*``); a value
    already in the environment always wins. Idempotent; called before FastTrack first talks to a store.
    """
    for name, value in _NETWORK_DEFAULTS.items():
        os.environ.setdefault(name, value)


def is_object_store_url(source: str) -> bool:
    """Whether ``source`` is an object-store URL (``s3://``, ``gs://``, ...)."""
    return urlsplit(source).scheme.lower() in OBJECT_STORE_SCHEMES if "://" in source else False


def storage_options(url: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsspec options for ``url``: for S3, the endpoint MLflow users set and a short connect timeout.

    ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` are read by botocore itself; ``MLFLOW_S3_ENDPOINT_URL`` (what
    MLflow users of MinIO set) is passed on when neither is set, so one variable serves data and artifacts.
    ``overrides`` (the caller's own options) win over everything here.
    """
    options: dict[str, Any] = {}
    if urlsplit(url).scheme.lower() in ("s3", "s3a"):
        endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        if endpoint and not (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")):
            options["endpoint_url"] = endpoint
        options["config_kwargs"] = {"connect_timeout": _CONNECT_TIMEOUT}
    options.update(overrides or {})
    return options


def object_identity(info: dict[str, Any]) -> dict[str, str]:
    """The store's identity of an object from fsspec's ``info()``: ETag, version id (when versioning is on).

    s3fs reports ``ETag`` and, in a versioned bucket, ``VersionId``; gcsfs reports ``etag`` and ``generation``.
    Quotes around ETags are dropped. Stores that report neither give an empty mapping.
    """
    identity: dict[str, str] = {}
    etag = info.get("ETag") or info.get("etag")
    if etag:
        identity["etag"] = str(etag).strip('"')
    version = info.get("VersionId") or info.get("generation")
    if version and str(version) != "null":  # S3 reports "null" for objects written before versioning
        identity["version_id"] = str(version)
    return identity


def error_message(exc: BaseException, url: str | None = None) -> str | None:
    """One readable line for an object-store failure (on ``url`` when known), or ``None`` when it is not one.

    Covers what s3fs, gcsfs, botocore and MLflow's S3 artifact store raise: a missing bucket or key, refused
    or missing credentials, an unreachable endpoint, a timeout.
    """
    text = _first_line(exc)
    code = _client_error_code(exc)
    cause = exc.__cause__
    cause_code = _client_error_code(cause) if cause is not None else None
    name = type(exc).__name__
    on = f" for {url}" if url else ""
    if code == "NoSuchBucket" or cause_code == "NoSuchBucket" or "bucket does not exist" in text.lower():
        bucket = f": {_bucket(url)} (reading {url})" if url else f" ({text})"
        return f"bucket not found{bucket}; check the bucket name and the endpoint"
    if code in ("NoSuchKey", "404") or (isinstance(exc, FileNotFoundError) and cause_code in (None, "NoSuchKey")):
        return f"file not found: {url}" if url else f"object not found ({text})"
    if code in _CREDENTIAL_CODES or cause_code in _CREDENTIAL_CODES or isinstance(exc, PermissionError):
        return (
            f"the object store refused access{on} ({text}): check the credentials "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        )
    if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
        return (
            f"no usable object-store credentials{on} ({text}): "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ProxyConnectionError"):
        return f"cannot reach the object store{on} ({text}); check AWS_ENDPOINT_URL and the network"
    if name == "ReadTimeoutError" or isinstance(exc, TimeoutError):
        return f"the object store did not answer in time{on} ({text})"
    if code is not None:
        return f"the object store refused the request{on}: {text}"
    return None


_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403", "401"}
)


def is_object_store_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from an object-store client (botocore, s3fs, gcsfs, Google's auth)."""
    module = type(exc).__module__ or ""
    return module.startswith(("botocore", "aiobotocore", "s3fs", "gcsfs", "google.auth", "google.api_core"))


def _client_error_code(exc: BaseException | None) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _bucket(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
