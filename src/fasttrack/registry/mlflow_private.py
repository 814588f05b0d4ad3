"""The one module that uses MLflow's private API, each use for a measured reason.

MLflow promises nothing about what is here, so every use has a fallback to MLflow's public way when it is
missing, and tests/unit/registry/test_mlflow_private.py fails when MLflow changes any of it (a signature, or what
it builds), so that an MLflow upgrade is checked here first.

* :func:`build_tracking_schema`: MLflow's own schema creation (``mlflow.store.db.utils._initialize_tables`` and
  ``create_sqlalchemy_engine``) run on a file nobody else sees yet, with SQLite's syncing off. MLflow creates a new
  SQLite store by running its initial DDL and then every one of its schema migrations (about 70) on the store
  itself, syncing the file at every commit: 1-2 s of a first ``fasttrack train`` on a two-core VM, of which
  0.5-1.2 s was waiting for the disk.
* :class:`RegistryReader` and :func:`copy_version`: the embedded store's registry tables read with the standard
  library's ``sqlite3``, and a registered version copied from its local artifact folder as MLflow's download would.
  ``import mlflow`` costs a server seconds of start-up and about 160 MB (bench/startup.py, ``models:/NAME@ALIAS``
  with polling on: 266 MB through MLflow, 105 MB without); with these, serving ``models:/NAME@ALIAS`` from the
  embedded store, and polling it, never imports MLflow. They answer only for the schema revision they were checked
  against (:data:`REGISTRY_REVISION`); any other store is left to MLflow.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

log = logging.getLogger(__name__)

#: The alembic revision of MLflow's schema (as MLflow 3.17 creates it) whose registry tables RegistryReader reads.
REGISTRY_REVISION = "dc11669786a5"
#: MLflow's workspace of a store that has none (``mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME``).
_WORKSPACE = "default"
#: The stage MLflow gives a deleted version it keeps a row of
#: (``mlflow.entities.model_registry.model_version_stages.STAGE_DELETED_INTERNAL``).
_DELETED = "Deleted_Internal"
#: The file MLflow's download of ``models:/NAME/VERSION`` adds to the folder
#: (``mlflow.store.artifact.models_artifact_repo.REGISTERED_MODEL_META_FILE_NAME``).
REGISTERED_MODEL_META = "registered_model_meta"


def build_tracking_schema(db: Path) -> bool:
    """Create MLflow's tracking and registry schema, migrated to its latest revision, in a new SQLite file ``db``.

    The file is written with ``synchronous=OFF`` and an in-memory journal, as MLflow's own ``fs2db`` does when
    it builds a database: only safe on a file no other process uses yet, which the caller syncs as a whole before
    it becomes a store (:func:`fasttrack.registry.store.create_embedded_store`). Returns ``False``, doing nothing,
    when MLflow's helpers are missing (another MLflow version): MLflow then creates the store itself when opened.
    """
    try:
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine
    except ImportError:  # pragma: no cover - tests/unit/registry/test_mlflow_private.py fails first
        return False
    engine = create_sqlalchemy_engine(f"sqlite:///{db}")  # type: ignore[no-untyped-call]

    def unsynced(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA journal_mode=MEMORY")

    sqlalchemy.event.listen(engine, "connect", unsynced)
    try:
        _initialize_tables(engine)  # type: ignore[no-untyped-call]
    finally:
        engine.dispose()
    return True


@dataclass(frozen=True)
class StoredVersion:
    """A registered version as the registry tables hold it."""

    name: str
    version: str
    source: str | None
    storage_location: str | None


class RegistryReader:
    """Read-only answers from an embedded store's registry tables, as ``MlflowClient`` would give them.

    ``version``, ``alias`` and ``latest`` answer what ``get_model_version``, ``get_model_version_by_alias`` and the
    newest of ``search_model_versions`` answer (``None`` where MLflow raises "not found"): deleted versions are not
    there, ``@latest`` is MLflow's alias for the newest version. Opened with :meth:`open`, which gives ``None`` for
    a store it cannot answer for.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @classmethod
    def open(cls, db: Path) -> RegistryReader | None:
        """A reader on the SQLite store ``db``, or ``None`` when it is missing, unreadable or at another revision."""
        if not db.is_file():
            return None
        try:
            connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error:
            return None
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            row = None
        if row is None or row[0] != REGISTRY_REVISION:
            connection.close()
            log.debug("%s is not at MLflow schema revision %s: MLflow reads it", db, REGISTRY_REVISION)
            return None
        return cls(connection)

    def __enter__(self) -> RegistryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def registered(self, name: str) -> bool:
        """Whether registered model ``name`` exists, with or without versions (``get_registered_model``)."""
        row = self._connection.execute(
            "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (_WORKSPACE, name)
        ).fetchone()
        return row is not None

    def version(self, name: str, version: str) -> StoredVersion | None:
        """Version ``version`` of ``name``, unless deleted or never registered."""
        row = self._connection.execute(
            "SELECT name, version, source, storage_location FROM model_versions"
            " WHERE workspace = ? AND name = ? AND version = ? AND current_stage != ?",
            (_WORKSPACE, name, int(version), _DELETED),
        ).fetchone()
        return _stored(row)

    def alias(self, name: str, alias: str) -> StoredVersion | None:
        """The version alias ``alias`` of ``name`` points at (``None`` when it is not set)."""
        if alias.lower() == "latest":
            return self.latest(name)
        row = self._connection.execute(
            "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? AND alias = ?",
            (_WORKSPACE, name, alias),
        ).fetchone()
        return self.version(name, str(row[0])) if row is not None else None

    def latest(self, name: str) -> StoredVersion | None:
        """The newest version of ``name`` that is not deleted (``None`` when it has none)."""
        row = self._connection.execute(
            "SELECT name, version, source, storage_location FROM model_versions"
            " WHERE workspace = ? AND name = ? AND current_stage != ? ORDER BY version DESC LIMIT 1",
            (_WORKSPACE, name, _DELETED),
        ).fetchone()
        return _stored(row)


def _stored(row: tuple[Any, ...] | None) -> StoredVersion | None:
    if row is None:
        return None
    name, version, source, storage_location = row
    return StoredVersion(name=name, version=str(version), source=source, storage_location=storage_location)


def local_artifacts(stored: StoredVersion) -> Path | None:
    """The local folder holding a version's model, where MLflow's download would read it; ``None`` if not local.

    MLflow downloads a registered version from its storage location, else its source
    (``get_model_version_download_uri``); the embedded store keeps both as ``file://`` URIs or paths.
    """
    location = stored.storage_location or stored.source or ""
    parts = urlsplit(location)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        folder = Path(unquote(parts.path))
    elif parts.scheme == "" and location:
        folder = Path(location)
    else:
        return None
    return folder if (folder / "MLmodel").is_file() else None


def copy_version(stored: StoredVersion, folder: Path, into: Path) -> Path:
    """Copy a registered version's model ``folder`` into ``into`` as ``mlflow.artifacts.download_artifacts`` of
    ``models:/NAME/VERSION`` makes it: the same files, and its ``registered_model_meta``. Returns the copy."""
    copy = into / folder.name
    shutil.copytree(folder, copy)
    with (copy / REGISTERED_MODEL_META).open("w", encoding="utf-8") as meta:
        yaml.safe_dump(
            {"model_name": stored.name, "model_version": stored.version},
            meta,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=True,
        )
    return copy
