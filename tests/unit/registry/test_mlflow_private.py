"""MLflow's private API that FastTrack uses (registry.mlflow_private): fails when MLflow changes it.

Each use is checked twice: what FastTrack calls still exists with the signature it calls, and what it builds is
what MLflow's public way builds.
"""

from __future__ import annotations

import inspect
import shutil
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from fasttrack.config import Settings
from fasttrack.registry import mlflow_private
from fasttrack.registry.runs import log_training
from fasttrack.registry.store import client
from fasttrack.training.train import TrainResult


def schema_of(db: Path) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str]]]:
    """Every table, index and trigger with its SQL, and the alembic revision, of a SQLite file.

    The SQL's lines are sorted: MLflow's migrations rebuild some tables with their constraints in an order
    that changes from one process to the next (it follows string hashing), the same constraints every time.
    """
    with sqlite3.connect(db) as connection:
        objects = connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    normalised = [
        (kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
        for kind, name, sql in objects
    ]
    return normalised, revision


def test_the_schema_helpers_are_still_there() -> None:
    from mlflow.store.db import utils

    assert list(inspect.signature(utils._initialize_tables).parameters) == ["engine"]
    assert list(inspect.signature(utils.create_sqlalchemy_engine).parameters) == ["db_uri"]


def test_the_built_schema_is_the_one_mlflow_makes(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs" / "mlflow.db"
    assert mlflow_private.build_tracking_schema(ours)
    theirs.parent.mkdir()
    SqlAlchemyStore(f"sqlite:///{theirs}", str(tmp_path / "artifacts")).engine.dispose()
    assert schema_of(ours) == schema_of(theirs)
    assert schema_of(ours)[1]  # migrated to a revision, not just the initial tables


# ------------------------------------------------------------------------------------- the registry tables, read


def test_the_names_copied_from_mlflow_are_its_own() -> None:
    from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
    from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME
    from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

    assert mlflow_private._WORKSPACE == DEFAULT_WORKSPACE_NAME
    assert mlflow_private._DELETED == STAGE_DELETED_INTERNAL
    assert mlflow_private.REGISTERED_MODEL_META == REGISTERED_MODEL_META_FILE_NAME


def test_the_reader_knows_the_revision_mlflow_creates(tmp_path: Path) -> None:
    """A new MLflow migration changes the revision: RegistryReader must then be checked again, and this fails."""
    db = tmp_path / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(tmp_path / "artifacts")).engine.dispose()
    assert schema_of(db)[1] == [(mlflow_private.REGISTRY_REVISION,)]


@pytest.fixture
def registry(good_result: TrainResult, settings: Settings) -> MlflowClient:
    """A real embedded store: toy 1-4 (2 deleted), other 1; toy@champion=1, toy@challenger=3, toy@gone deleted."""
    run = log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    mlflow_client = client(settings)
    for _ in range(3):
        mlflow_client.create_model_version("toy", source=run.model_uri, run_id=run.run_id)
    mlflow_client.create_registered_model("other")
    mlflow_client.create_model_version("other", source=run.model_uri, run_id=run.run_id)
    mlflow_client.delete_model_version("toy", "2")
    mlflow_client.set_registered_model_alias("toy", "challenger", "3")
    mlflow_client.set_registered_model_alias("toy", "gone", "4")
    mlflow_client.delete_registered_model_alias("toy", "gone")
    return mlflow_client


def mlflows_answer(mlflow_client: MlflowClient, ask: Callable[[], Any]) -> tuple[str, str] | None:
    """(version, download URI) as MLflow answers, ``None`` where it says the version or alias is not there."""
    try:
        mv = ask()
    except MlflowException as exc:
        assert exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"), exc
        return None
    return str(mv.version), mlflow_client.get_model_version_download_uri(mv.name, mv.version)


def ours(stored: mlflow_private.StoredVersion | None) -> tuple[str, str] | None:
    return None if stored is None else (stored.version, str(stored.storage_location or stored.source))


def test_the_reader_answers_as_mlflow_does(registry: MlflowClient, settings: Settings) -> None:
    reader = mlflow_private.RegistryReader.open(settings.embedded_store())
    assert reader is not None
    with reader:
        for name in ("toy", "other", "missing"):
            for version in ("1", "2", "3", "4", "5"):
                expected = mlflows_answer(registry, partial(registry.get_model_version, name, version))
                assert ours(reader.version(name, version)) == expected, (name, version)
            for alias in ("champion", "challenger", "gone", "never", "latest", "Latest"):
                expected = mlflows_answer(registry, partial(registry.get_model_version_by_alias, name, alias))
                assert ours(reader.alias(name, alias)) == expected, (name, alias)
            versions = registry.search_model_versions(f"name='{name}'")
            newest = max(versions, key=lambda mv: int(mv.version)) if versions else None
            expected = None if newest is None else mlflows_answer(registry, lambda mv=newest: mv)
            assert ours(reader.latest(name)) == expected, name
        # Not a comparison of nothing with nothing:
        assert [ours(reader.alias("toy", a)) is not None for a in ("champion", "challenger", "gone")] == [1, 1, 0]
        assert [getattr(reader.version("toy", v), "version", None) for v in "1234"] == ["1", None, "3", "4"]


def test_a_copied_version_is_what_mlflow_downloads(registry: MlflowClient, settings: Settings, tmp_path: Path) -> None:
    reader = mlflow_private.RegistryReader.open(settings.embedded_store())
    assert reader is not None
    with reader:
        stored = reader.version("toy", "3")
    assert stored is not None
    folder = mlflow_private.local_artifacts(stored)
    assert folder is not None
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    copy = mlflow_private.copy_version(stored, folder, tmp_path / "ours")
    downloaded = mlflow.artifacts.download_artifacts(artifact_uri="models:/toy/3", dst_path=str(tmp_path / "theirs"))
    assert files_of(copy) == files_of(Path(downloaded))
    assert mlflow_private.REGISTERED_MODEL_META in files_of(copy)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_stores_it_cannot_read_are_left_to_mlflow(registry: MlflowClient, settings: Settings, tmp_path: Path) -> None:
    assert mlflow_private.RegistryReader.open(tmp_path / "missing.db") is None
    (tmp_path / "text.db").write_text("not a database")
    assert mlflow_private.RegistryReader.open(tmp_path / "text.db") is None
    other = tmp_path / "other-revision.db"
    shutil.copy(settings.embedded_store(), other)
    with sqlite3.connect(other) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'someday'")
    assert mlflow_private.RegistryReader.open(other) is None
    remote = mlflow_private.StoredVersion("toy", "1", "models:/m-1", "s3://bucket/1/models/m-1/artifacts")
    assert mlflow_private.local_artifacts(remote) is None
