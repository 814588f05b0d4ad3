"""Reading data with a SQL query (SQLite here; PostgreSQL in tests/integration/test_postgres.py)."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import pytest

from fasttrack.config import TrainConfig
from fasttrack.data.clean import CleanOptions
from fasttrack.data.ingest import ingest_query
from fasttrack.data.sql import _plain_types, read_sql, redact_url, scrub
from fasttrack.errors import ConfigError, DataError


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file with a small ``people`` table (text dates, an integer id, a float, a label)."""
    path = tmp_path / "people.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE people (id INTEGER, age REAL, city TEXT, joined TEXT, label TEXT)")
        rows = [
            (i, 20.0 + i % 30, ["Oslo", "Lima", "Pune"][i % 3], f"2024-01-{1 + i % 28:02d}", "yes" if i % 2 else "no")
            for i in range(40)
        ]
        connection.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)", rows)
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://ann:s3cret@db.example:5432/sales", "postgresql://ann:***@db.example:5432/sales"),
        (
            "postgresql+psycopg://ann:p%40ss@db/sales?sslmode=require",
            "postgresql+psycopg://ann:***@db/sales?sslmode=require",
        ),
        ("postgresql://ann@db/sales", "postgresql://ann@db/sales"),
        ("sqlite:///data/x.db", "sqlite:///data/x.db"),
        ("mysql+pymysql://root:@localhost/x", "mysql+pymysql://root:***@localhost/x"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_scrub_removes_the_password_in_any_form() -> None:
    url = "postgresql://ann:p%40ss@db/sales"
    text = f"failed for {url}: password p@ss and p%40ss rejected"
    assert scrub(text, url) == "failed for postgresql://ann:***@db/sales: password *** and *** rejected"


def test_read_sql_returns_the_query_result(db: str) -> None:
    frame = read_sql("SELECT city, age, label FROM people WHERE age > 40 ORDER BY id", db)
    assert list(frame.columns) == ["city", "age", "label"]
    assert len(frame) == 9
    assert frame["age"].dtype == "float64"


def test_ingest_query_cleans_fingerprints_and_records_lineage(db: str) -> None:
    result = ingest_query("SELECT * FROM people", db, target="label", options=CleanOptions())
    assert "id" not in result.frame.columns  # an identifier column, dropped as a file's would be
    assert result.report.rows_in == 40
    assert result.source == db
    assert result.lineage == {"kind": "sql", "db": db, "query": "SELECT * FROM people"}
    again = ingest_query("SELECT * FROM people", db, target="label", options=CleanOptions())
    assert again.fingerprint == result.fingerprint


@pytest.mark.parametrize(
    ("query", "url", "needles"),
    [
        ("SELECT * FROM nope", None, ["query failed", "no such table: nope"]),
        ("SELEC * FROM people", None, ["query failed", "syntax error"]),
        ("SELECT * FROM people WHERE 1 = 0", None, ["no rows"]),
        ("   ", None, ["query is empty"]),
        ("SELECT 1", "sqlite:///{tmp}/missing.db", ["database file not found", "missing.db"]),
        ("SELECT 1", "not a url", ["not a database URL"]),
        ("SELECT 1", "nosuchdialect://u:hunter2@h/db", ["no database driver", "nosuchdialect"]),
    ],
)
def test_failures_are_one_line_without_the_password(
    query: str, url: str | None, needles: list[str], db: str, tmp_path: Path
) -> None:
    target = db if url is None else url.format(tmp=tmp_path)
    with pytest.raises(DataError) as caught:
        read_sql(query, target)
    message = str(caught.value)
    assert "\n" not in message
    assert "hunter2" not in message
    for needle in needles:
        assert needle in message
    if url is None or url.startswith("sqlite"):
        assert not (tmp_path / "missing.db").exists()  # SQLite did not create the file it was asked to read


def test_plain_types_give_what_a_file_would() -> None:
    frame = pd.DataFrame(
        {
            "price": [decimal.Decimal("1.50"), None, decimal.Decimal("2")],
            "day": [dt.date(2024, 1, 2), dt.date(2024, 1, 3), None],
            "at": pd.to_datetime(["2024-01-02 03:04:05", None, "2024-01-03 00:00:00"]),
            "key": [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)],
            "n": [1, 2, 3],
        }
    )
    plain = _plain_types(frame)
    assert plain["price"].dtype == "float64"
    assert plain["price"].tolist()[0] == 1.5 and pd.isna(plain["price"].tolist()[1])
    assert plain["day"].tolist()[:2] == ["2024-01-02", "2024-01-03"] and pd.isna(plain["day"].tolist()[2])
    assert plain["at"].tolist()[0] == "2024-01-02T03:04:05"
    assert plain["key"].tolist()[0] == "00000000-0000-0000-0000-000000000001"
    assert plain["n"].tolist() == [1, 2, 3]


def test_train_config_takes_a_query_instead_of_a_file() -> None:
    cfg = TrainConfig.load(sql="SELECT * FROM t", db="postgresql://ann:s3cret@db/x", target="y", name="m")
    assert cfg.data is None
    assert cfg.resolved_name() == "m"
    assert cfg.source == "postgresql://ann:***@db/x"
    # What leaves the process (run params, model metadata) never has the password; the object itself keeps it.
    assert cfg.model_dump(mode="json")["db"] == "postgresql://ann:***@db/x"
    assert "s3cret" not in cfg.model_dump_json()
    assert cfg.db == "postgresql://ann:s3cret@db/x"


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"sql": "SELECT 1"}, "sql and db go together"),
        ({"db": "sqlite:///x.db"}, "sql and db go together"),
        ({"data": "x.csv", "sql": "SELECT 1", "db": "sqlite:///x.db"}, "not both"),
        ({}, "no data source"),
    ],
)
def test_train_config_needs_exactly_one_source(values: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        TrainConfig.load(target="y", **values)


def test_a_query_needs_a_model_name() -> None:
    cfg = TrainConfig.load(sql="SELECT 1", db="sqlite:///x.db", target="y")
    with pytest.raises(ConfigError, match="--name"):
        cfg.resolved_name()
