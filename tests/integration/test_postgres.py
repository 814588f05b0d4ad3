"""Database ingestion against a real PostgreSQL server: train from a query, lineage, and refusals in one line.

The server is the Debian ``postgresql`` package's, on a throw-away cluster (``tests/services.py``); ``make test``
installs the package when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from services import Postgres
from support import REPO, one_line_error, run_cli

pytestmark = pytest.mark.integration

QUERY = "SELECT feature_1, feature_2, price, label FROM samples WHERE feature_2 IS NOT NULL"


@pytest.fixture(scope="module")
def samples(postgres: Postgres) -> Postgres:
    """The bundled sample data in a ``samples`` table, with a NUMERIC and a DATE column as databases have."""
    from sqlalchemy import create_engine, text

    frame = pd.read_csv(REPO / "data" / "sample" / "classification.csv")
    engine = create_engine(postgres.url(driver="postgresql+psycopg"))
    try:
        with engine.begin() as connection:
            frame.to_sql("samples", connection, if_exists="replace", index=False)
            connection.execute(text("ALTER TABLE samples ADD COLUMN price NUMERIC(10, 2)"))
            connection.execute(text("ALTER TABLE samples ADD COLUMN day DATE"))
            connection.execute(
                text("UPDATE samples SET price = round((feature_1 * 10)::numeric, 2), day = '2024-05-01'")
            )
    finally:
        engine.dispose()
    return postgres


def test_train_from_a_query_records_the_query_never_the_password(samples: Postgres, tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = samples.url()  # plain postgresql://: FastTrack picks psycopg, the driver the sql extra installs
    trained = run_cli(
        "train", "--sql", QUERY, "--db", url, "--target", "label", "--name", "pgsample",
        "--model", "linear", "--cv-folds", "0", home=home,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "registered pgsample version 1" in trained.stdout
    assert samples.password not in trained.stdout + trained.stderr

    shown = run_cli("models", "show", "pgsample", "1", home=home)
    assert shown.returncode == 0, shown.stderr
    redacted = samples.url(password="***")
    assert f"db: {redacted}" in shown.stdout
    assert f"query: {QUERY}" in shown.stdout
    assert "kind: sql" in shown.stdout and "fingerprint: " in shown.stdout
    # Nowhere in the store: not in the run's params or tags, not in the model folder.
    store = (home / "mlflow.db").read_bytes() + b"".join(
        p.read_bytes() for p in (home / "artifacts").rglob("*") if p.is_file()
    )
    assert samples.password.encode() not in store
    assert redacted.encode() in store

    # NUMERIC became a number, as a file's column would be.
    ingested = run_cli("ingest", "--sql", "SELECT price, day, label FROM samples", "--db", url, "--target", "label",
                       home=home)  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert "price" in ingested.stdout and "numeric" in ingested.stdout


def test_the_password_can_stay_out_of_the_url(samples: Postgres, tmp_path: Path) -> None:
    # libpq's own variable: the URL names the user only.
    result = run_cli(
        "ingest", "--sql", "SELECT * FROM samples LIMIT 50", "--db", samples.url(password=""),
        home=tmp_path / "home", PGPASSWORD=samples.password,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rows: 50 in" in result.stdout


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("wrong password", ["cannot connect to", "password authentication failed"]),
        ("no such table", ["query failed on", 'relation "nothing" does not exist']),
        ("closed port", ["cannot connect to", "127.0.0.1"]),
    ],
)
def test_refusals_are_one_line_without_the_password(
    samples: Postgres, tmp_path: Path, case: str, needles: list[str]
) -> None:
    from support import free_port

    secret = "wrong-" + samples.password
    url, query = samples.url(), "SELECT * FROM samples"
    if case == "wrong password":
        url = samples.url(password=secret)
    elif case == "no such table":
        query = "SELECT * FROM nothing"
    else:
        url = Postgres(samples.host, free_port(), samples.user, secret).url()
    result = run_cli("ingest", "--sql", query, "--db", url, home=tmp_path / "home")
    one_line_error(result, *needles, ":***@")
    assert secret not in result.stderr + result.stdout
    assert samples.password not in result.stderr
