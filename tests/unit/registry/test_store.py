"""The embedded store: made on first use, in one piece, and left alone once it exists (registry.store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fasttrack.config import Settings
from fasttrack.registry import store


def test_the_store_is_made_in_one_piece(tmp_path: Path) -> None:
    db = tmp_path / "home" / "mlflow.db"
    assert store.create_embedded_store(db)
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]  # no temporary file left behind
    with sqlite3.connect(db) as connection:  # the unsynced journal mode was for the build only
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone()


def test_an_existing_store_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert store.create_embedded_store(db)
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE kept (x INTEGER)")
    assert not store.create_embedded_store(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT name FROM sqlite_master WHERE name = 'kept'").fetchone() == ("kept",)


def test_a_store_made_meanwhile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes creating the store at once: the second one's link fails and the first one's file stays."""
    db = tmp_path / "mlflow.db"
    real_link = store.os.link

    def racing_link(source: Path, target: Path) -> None:
        target.write_bytes(b"the other process's store")
        real_link(source, target)

    monkeypatch.setattr(store.os, "link", racing_link)
    assert not store.create_embedded_store(db)
    assert db.read_bytes() == b"the other process's store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_the_client_makes_the_embedded_store(settings: Settings) -> None:
    assert not (settings.home / "mlflow.db").exists()
    mlflow_client = store.client(settings)
    assert (settings.home / "mlflow.db").is_file()
    assert mlflow_client.search_experiments(max_results=1)[0].name == "Default"


def test_checking_the_embedded_store_makes_nothing(settings: Settings) -> None:
    assert store.check_tracking(settings) == settings.embedded_store_uri()
    assert not settings.home.exists()  # made on first use, not by a check


def test_a_store_in_use_does_not_become_the_next_settings_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow writes the URI it is given into MLFLOW_TRACKING_URI; another home in the same process keeps its own."""
    import mlflow

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    first, second = Settings(home=tmp_path / "first"), Settings(home=tmp_path / "second")
    assert store.configure(first) == first.embedded_store_uri()
    assert mlflow.get_tracking_uri() == first.embedded_store_uri()
    assert second.resolved_tracking_uri() == second.embedded_store_uri()
    assert store.configure(second) == second.embedded_store_uri()

    # A URI the user set stays theirs.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    store.configure(first)
    assert store.os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"
