"""MLflow's, the network's and object stores' failures as one-line FastTrack errors (registry.errors)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from fasttrack.config import Settings
from fasttrack.errors import ConfigError, ModelNotFoundError, RegistryError
from fasttrack.registry import errors, store, versions
from support import free_port


def test_the_error_codes_are_mlflows() -> None:
    for name in errors.NOT_FOUND | errors.ALREADY_EXISTS:
        assert ErrorCode.Name(ErrorCode.Value(name)) == name  # raises for a name MLflow does not define


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("RESOURCE_DOES_NOT_EXIST", ModelNotFoundError),
        ("NOT_FOUND", ModelNotFoundError),
        ("INTERNAL_ERROR", RegistryError),
    ],
)
def test_mlflow_errors_are_told_apart_by_their_code(code: str, kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught, errors.registry_errors("reading toy version 7"):
        raise MlflowException("Model Version (name=toy, version=7) not found\nmore detail", ErrorCode.Value(code))
    assert str(caught.value) == "reading toy version 7: Model Version (name=toy, version=7) not found"
    assert type(caught.value) is kind


def test_other_exceptions_pass_unchanged() -> None:
    with pytest.raises(ValueError, match="not ours"), errors.registry_errors("listing models"):
        raise ValueError("not ours")
    with pytest.raises(ConfigError, match="already one line"), errors.registry_errors("listing models"):
        raise ConfigError("already one line")


def test_an_unreachable_tracking_server_fails_fast_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    unreachable = settings.model_copy(update={"tracking_uri": url})
    started = time.monotonic()
    try:
        with pytest.raises(RegistryError) as caught:
            versions.list_versions(unreachable)
    finally:
        store.configure(settings)  # MLflow's process-wide URIs: not left pointing at a closed port
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert message == (
        f"listing models: cannot reach the tracking server at {url} (Connection refused); is it running? "
        "(MLFLOW_TRACKING_URI)"
    )


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (ClientError({"Error": {"Code": "NoSuchBucket", "Message": "no bucket"}}, "GetObject"), "bucket not found"),
        (ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "unknown key"}}, "PutObject"), "credentials"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "cannot reach the object store"),
    ],
)
def test_artifact_store_errors_become_registry_errors(exc: Exception, needle: str) -> None:
    with pytest.raises(RegistryError, match=needle) as caught, errors.registry_errors("downloading the model"):
        raise exc
    assert str(caught.value).startswith("downloading the model: ")


def test_telling_errors_apart_never_imports_mlflow() -> None:
    """A server that resolves models without MLflow must not import it to report a failure either."""
    script = (
        "import sys\n"
        "from fasttrack.errors import RegistryError\n"
        "from fasttrack.registry.errors import registry_errors\n"
        "try:\n"
        "    with registry_errors('reading the store'):\n"
        "        raise OSError('disk gone')\n"
        "except RegistryError as exc:\n"
        "    print(exc)\n"
        "print('mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["reading the store: disk gone", "False"]


def test_a_full_disk_is_one_line_whatever_wraps_it(tmp_path: Path) -> None:
    """ENOSPC from a file write, SQLite's SQLITE_FULL (a real one: a database that may not grow) under SQLAlchemy's
    wrapping, and the text-only failures of ``shutil.copytree`` (a model copied into the cache) all say so in one
    line, not SQLAlchemy's statement or a list of every file."""
    import errno
    import os
    import shutil
    import sqlite3

    import sqlalchemy

    full = errors.registry_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/home/x/model.pkl"), "saving")
    assert isinstance(full, RegistryError)
    assert str(full) == (
        "saving: no space left on the device writing /home/x/model.pkl (No space left on device); free some space "
        "and try again"
    )

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'small.db'}")
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised, engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
        connection.exec_driver_sql("PRAGMA max_page_count = 3")
        connection.exec_driver_sql("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    assert isinstance(raised.value.orig, sqlite3.Error) and "\n" in str(raised.value)
    sql = errors.registry_error(raised.value, "recording the run")
    assert str(sql) == (
        "recording the run: no space left on the device of the SQLite store (database or disk is full); free some space"
    )

    failures = [(f"/a/{n}", f"/b/{n}", f"[Errno 28] No space left on device: '/a/{n}' -> '/b/{n}'") for n in "xyz"]
    copied = errors.registry_error(shutil.Error(failures), "resolving models:/m/1")
    assert str(copied) == (
        "resolving models:/m/1: no space left on the device writing /b/x (No space left on device); free some space "
        "and try again"
    )
    other = errors.registry_error(shutil.Error([("/a/x", "/b/x", "[Errno 13] Permission denied: '/b/x'")]), "copying")
    assert str(other) == "copying: copying /a/x: [Errno 13] Permission denied: '/b/x'"
