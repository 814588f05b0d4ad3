"""The embedded store is created with MLflow's own schema, in one piece (tracking.create_embedded_store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from fasttrack.config import Settings
from fasttrack.registry import tracking


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


def test_the_store_has_the_schema_mlflow_makes(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours" / "mlflow.db", tmp_path / "theirs" / "mlflow.db"
    assert tracking.create_embedded_store(ours)
    theirs.parent.mkdir()
    SqlAlchemyStore(f"sqlite:///{theirs}", str(tmp_path / "artifacts")).engine.dispose()
    assert schema_of(ours) == schema_of(theirs)
    assert schema_of(ours)[1]  # migrated to a revision, not just the initial tables
    assert sorted(p.name for p in ours.parent.iterdir()) == ["mlflow.db"]  # no temporary file left behind
    with sqlite3.connect(ours) as connection:  # the unsynced journal mode was for the build only
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_an_existing_store_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert tracking.create_embedded_store(db)
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE kept (x INTEGER)")
    assert not tracking.create_embedded_store(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT name FROM sqlite_master WHERE name = 'kept'").fetchone() == ("kept",)


def test_a_store_made_meanwhile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes creating the store at once: the second one's link fails and the first one's file stays."""
    db = tmp_path / "mlflow.db"
    real_link = tracking.os.link

    def racing_link(source: Path, target: Path) -> None:
        target.write_bytes(b"the other process's store")
        real_link(source, target)

    monkeypatch.setattr(tracking.os, "link", racing_link)
    assert not tracking.create_embedded_store(db)
    assert db.read_bytes() == b"the other process's store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_the_client_makes_the_embedded_store(settings: Settings) -> None:
    assert not (settings.home / "mlflow.db").exists()
    mlflow_client = tracking.client(settings)
    assert (settings.home / "mlflow.db").is_file()
    assert mlflow_client.search_experiments(max_results=1)[0].name == "Default"
