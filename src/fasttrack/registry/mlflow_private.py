"""The one module that uses MLflow's private API, each use for a measured reason.

MLflow promises nothing about what is here, so every use has a fallback to MLflow's public way when it is
missing, and tests/unit/registry/test_mlflow_private.py fails when MLflow changes any of it (a signature, or what
it builds), so that an MLflow upgrade is checked here first.

* :func:`build_tracking_schema`: MLflow's own schema creation (``mlflow.store.db.utils._initialize_tables`` and
  ``create_sqlalchemy_engine``) run on a file nobody else sees yet, with SQLite's syncing off. MLflow creates a new
  SQLite store by running its initial DDL and then every one of its schema migrations (about 70) on the store
  itself, syncing the file at every commit: 1-2 s of a first ``fasttrack train`` on a two-core VM, of which
  0.5-1.2 s was waiting for the disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
