"""Session-wide services for the integration tests: S3 (moto), PostgreSQL and an MLflow server on both.

Each starts once per test session, on the first test that asks for it, and stops at the end of the session.
A service that cannot start fails the tests that need it (see ``tests/services.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services import MlflowServer, Moto, Postgres, run_mlflow, run_moto, run_postgres


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """A real S3-compatible server (moto_server) that checks credentials: where the data sets are."""
    with run_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def artifact_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """The MLflow server's object store (moto_server, presigned URLs working, credentials not checked)."""
    with run_moto(tmp_path_factory.mktemp("artifact-store"), check_credentials=False) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on a throw-away cluster with password authentication."""
    with run_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, artifact_store: Moto, postgres: Postgres
) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` as a team runs it: PostgreSQL backend (its own database on ``postgres``), artifacts
    in a bucket of ``artifact_store``."""
    database = postgres.create_database("mlflow_session")
    with run_mlflow(tmp_path_factory.mktemp("mlflow-server"), artifact_store, backend=database) as server:
        yield server
