"""Reading training data from a database: a SQL query on a SQLAlchemy URL, with passwords kept out of sight.

``fasttrack train --sql "SELECT ..." --db postgresql://user@host/db`` (or ``sql:``/``db:`` in a config) reads the
query's result into a frame that then goes through the same cleaning as a file. Any database SQLAlchemy has a
dialect for works with its driver installed; SQLite needs nothing and PostgreSQL needs the ``sql`` extra
(``psycopg``). A password in the URL never appears in a message, a run's tags or a model's metadata: every
place shows :func:`redact_url`'s form; PostgreSQL also reads ``PGPASSWORD`` and ``~/.pgpass``, which keep it
out of the URL altogether.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd

from fasttrack.errors import DataError

#: Seconds to wait for a database connection before giving up (PostgreSQL).
CONNECT_TIMEOUT = 10
_MASK = "***"
# scheme://user:password@host...: the password is everything between the first ':' after the user and the last '@'
# before the path (SQLAlchemy's own parser reads it the same way).
_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@]*):(?P<password>[^/?#]*)@")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``postgresql://ann:***@db/sales``); other URLs unchanged."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}:{_MASK}@", url, count=1)


def _password(url: str) -> str | None:
    match = _PASSWORD.match(url)
    return match.group("password") if match and match.group("password") else None


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (as written and URL-decoded) and the URL itself redacted."""
    text = text.replace(url, redact_url(url))
    password = _password(url)
    if password:
        for form in {password, unquote(password)}:
            if form:
                text = text.replace(form, _MASK)
    return text


def read_sql(query: str, db: str) -> pd.DataFrame:
    """Run ``query`` on the database at SQLAlchemy URL ``db`` and return the result as a frame.

    Values get the types a file would give them: exact decimals become floats, dates and times ISO text (the
    schema has no date kind), UUIDs text. A bad URL, a missing driver or SQLite file, a refused connection, a
    failing query or an empty result raise one :class:`~fasttrack.errors.DataError` line without the password.
    ``postgresql://`` URLs use psycopg (the ``sql`` extra) when psycopg2, SQLAlchemy's default, is absent.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    safe = redact_url(db)
    if not query.strip():
        raise DataError("the SQL query is empty")
    try:
        url = make_url(db)
    except ArgumentError:
        raise DataError(
            f"not a database URL: {safe!r}; expected e.g. postgresql://user@host:5432/db or sqlite:///path/to.db"
        ) from None
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "postgresql":
        url = _postgres_driver(url)
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    elif backend == "sqlite":
        _check_sqlite_file(url.database, safe)
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        # No square brackets in messages: the CLI prints them through rich, which reads them as markup.
        hint = (
            "install FastTrack's sql extra (make install EXTRAS=sql, or pip install psycopg)"
            if backend == "postgresql"
            else f"install the Python driver for {backend}"
        )
        raise DataError(f"no database driver for {url.drivername} ({_first_line(exc)}): {hint}") from None
    except ArgumentError as exc:
        raise DataError(f"invalid database URL {safe}: {scrub(_first_line(exc), db)}") from None
    try:
        with engine.connect() as connection:
            try:
                frame = pd.read_sql(text(query), connection)
            except pd.errors.DatabaseError as exc:
                # pandas wraps the driver's error of a failing query; the original says what went wrong.
                raise (exc.__cause__ or exc) from None
    except DBAPIError as exc:
        # The driver's own message (connection refused, authentication failed, syntax error, no such table).
        detail = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
        what = "cannot connect to" if exc.connection_invalidated or _is_connect_error(exc) else "query failed on"
        raise DataError(f"{what} {safe}: {scrub(detail, db)}") from None
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise DataError(f"query failed on {safe}: {scrub(_first_line(exc), db)}") from None
    finally:
        engine.dispose()
    if frame.shape[1] == 0:
        raise DataError(f"the query returned no columns ({safe})")
    if len(frame) == 0:
        raise DataError(f"the query returned no rows ({safe})")
    return _plain_types(frame)


def _postgres_driver(url: Any) -> Any:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg (3) when only it is installed."""
    if url.drivername != "postgresql":
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
        return url.set(drivername="postgresql+psycopg")
    return url


def _check_sqlite_file(database: str | None, safe: str) -> None:
    # SQLite creates a missing database file on connect: say "not found" instead of querying an empty one.
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if not path.is_file():
        raise DataError(f"database file not found: {path} (from {safe})")


def _is_connect_error(exc: Any) -> bool:
    text = str(exc.orig or exc).lower()
    return any(
        word in text
        for word in ("connection refused", "could not connect", "connection failed", "authentication failed", "timeout")
    )


def _plain_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimals to floats; dates, times and UUIDs to text: the types a CSV file of the same data would give."""
    frame = frame.copy()
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_datetime64_any_dtype(series.dtype) or isinstance(series.dtype, pd.PeriodDtype):
            frame[column] = series.map(lambda v: v.isoformat() if pd.notna(v) else None)
            continue
        if series.dtype != object:
            continue
        present = series.dropna()
        if present.empty:
            continue
        if all(isinstance(v, decimal.Decimal) for v in present):
            frame[column] = pd.to_numeric(series.map(_as_float), errors="coerce")
        elif all(isinstance(v, dt.date | dt.time | uuid.UUID) for v in present):
            frame[column] = series.map(_as_text)
    return frame


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, decimal.Decimal) else None


def _as_text(value: Any) -> str | None:
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value) if isinstance(value, uuid.UUID) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
