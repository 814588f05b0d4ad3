"""MLflow's private API that FastTrack uses (registry.mlflow_private): fails when MLflow changes it.

Each use is checked twice: what FastTrack calls still exists with the signature it calls, and what it builds is
what MLflow's public way builds.
"""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from fasttrack.registry import mlflow_private


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
