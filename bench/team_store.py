"""The team store under concurrent writers: the same load on an MLflow server backed by PostgreSQL and by SQLite.

The load is tests/integration/test_team_store.py's (``tests/team_load.py``): seeded versions, then at once a
retraining pipeline and a person registering more, a model server following ``@champion`` (polling every second)
with a client calling it, and people promoting versions with ``--force``; real ``fasttrack`` processes against a
real ``mlflow server`` with ``--workers`` Uvicorn workers (2, as docker-compose.yml runs it). PostgreSQL is a
throw-away cluster of the Debian package (tests/services.py); SQLite a file next to the server.

Each round runs the load once per backend, in an order that alternates. The table counts, per backend and round:
commands that failed, requests the tracking server answered with a 5xx (FastTrack's clients retry those, so a
command can succeed after one), lines saying "database is locked" (server and clients), failed database operations
in the server's log, versions registered out of those expected, requests to the model server that failed, whether
the model server ended on the final champion, and the wall time.

Then, per backend, a long reader: a transaction that reads the store and stays open for ``--hold`` seconds (what a
backup of the SQLite file or an analyst's query does), started while ``fasttrack models promote --force`` runs: the
promotion's exit code and wall time, the 5xx answers and "database is locked" lines. SQLite (MLflow uses it without
WAL, with a 20 s busy timeout) lets no writer commit while a reader holds the file; PostgreSQL's readers block no
writer.

Run: ``.venv/bin/python bench/team_store.py [--rounds 3] [--trainers 2] [--trainings 2] [--promoters 3]
[--rounds-per-person 2] [--workers 2] [--hold 60] [--json FILE]``. Needs PostgreSQL (``make postgresql``). Not
part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from services import Postgres, run_mlflow, run_postgres  # noqa: E402
from support import run_cli  # noqa: E402
from team_load import LOCKED, SERVER_ERROR, TeamLoad, run_team_load, write_data  # noqa: E402

console = Console(width=160)


def measure(backend: str, postgres: Postgres, round_: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the load on ``backend`` (``postgresql`` or ``sqlite``) and what it counted."""
    with tempfile.TemporaryDirectory(prefix=f"fasttrack-team-{backend}-") as tmp:
        workdir = Path(tmp)
        database = postgres.create_database(f"bench_{round_}") if backend == "postgresql" else None
        with run_mlflow(workdir, backend=database, workers=args.workers) as server:
            assert server.log is not None
            load = run_team_load(
                server,
                server.log,
                workdir,
                seeds=3,
                trainers=args.trainers,
                trainings=args.trainings,
                promoters=args.promoters,
                rounds=args.rounds_per_person,
            )
        return summary(backend, load, expected=3 + args.trainers * args.trainings)


def summary(backend: str, load: TeamLoad, *, expected: int) -> dict[str, Any]:
    return {
        "backend": backend,
        "commands": len(load.commands()),
        "failed": len(load.failed()),
        "failed_output": [command.output[-400:] for command in load.failed()][:3],
        "server_5xx": len(load.server_errors()),
        "locked": len(load.locked()),
        "store_failures": len(load.store_failures()),
        "registered": len(load.registered()),
        "expected": expected,
        "request_failures": len(load.request_failures),
        "requests": load.requests,
        "followed": load.followed,
        "seconds": round(load.seconds, 1),
    }


@contextmanager
def reader(backend: str, store: Path | Postgres, seconds: float) -> Iterator[threading.Event]:
    """A read transaction on the store, open for ``seconds`` from when this block starts (the event is set once it
    holds its snapshot or lock); it ends on its own, the block waits for it."""
    holding = threading.Event()

    def hold() -> None:
        if backend == "sqlite":
            assert isinstance(store, Path)
            connection = sqlite3.connect(store, isolation_level=None)
            connection.execute("BEGIN")
            connection.execute("SELECT count(*) FROM model_versions").fetchall()  # takes the SHARED lock
            holding.set()
            time.sleep(seconds)
            connection.execute("COMMIT")
            connection.close()
            return
        import psycopg

        assert isinstance(store, Postgres)
        with psycopg.connect(store.url()) as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            connection.execute("SELECT count(*) FROM model_versions").fetchall()
            holding.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    holding.wait(30)
    try:
        yield holding
    finally:
        thread.join(seconds + 60)


def long_reader(backend: str, postgres: Postgres, args: argparse.Namespace) -> dict[str, Any]:
    """Two versions trained, then ``models promote --force`` while a reader holds the store for ``--hold`` s."""
    with tempfile.TemporaryDirectory(prefix=f"fasttrack-reader-{backend}-") as tmp:
        workdir = Path(tmp)
        database = postgres.create_database("bench_reader") if backend == "postgresql" else None
        with run_mlflow(workdir, backend=database, workers=args.workers) as server:
            assert server.log is not None
            data = write_data(workdir / "data.csv")
            env = server.env()
            for _ in range(2):
                trained = run_cli("train", "--data", str(data), "--target", "label", "--name", "held",
                                  "--model", "linear", "--cv-folds", "0", home=workdir / "trainer", **env)  # fmt: skip
                assert trained.returncode == 0, trained.stderr
            store: Path | Postgres = database if database is not None else workdir / "mlflow.db"
            with reader(backend, store, args.hold):
                started = time.monotonic()
                promoted = run_cli("models", "promote", "held", "--challenger", "2", "--force",
                                   home=workdir / "person", timeout=600, **env)  # fmt: skip
                promote_seconds = time.monotonic() - started
            log = server.log.read_text(encoding="utf-8", errors="replace")
        return {
            "backend": backend,
            "hold_s": args.hold,
            "promote_exit": promoted.returncode,
            "promote_s": round(promote_seconds, 1),
            "promote_error": promoted.stderr.strip().splitlines()[-1][:200] if promoted.returncode else "",
            "server_5xx": sum(1 for line in log.splitlines() if SERVER_ERROR.search(line)),
            "locked": log.count(LOCKED) + (promoted.stdout + promoted.stderr).count(LOCKED),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of the load per backend")
    parser.add_argument("--trainers", type=int, default=2, help="trainers at the same time (a pipeline, people)")
    parser.add_argument("--trainings", type=int, default=2, help="trainings by each trainer, one after the other")
    parser.add_argument("--promoters", type=int, default=3, help="people promoting at the same time")
    parser.add_argument("--rounds-per-person", type=int, default=2, help="promotions by each person, in a row")
    parser.add_argument("--workers", type=int, default=2, help="Uvicorn workers of the tracking server")
    parser.add_argument("--hold", type=float, default=60, help="seconds the long reader holds the store (0: skip)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    readers: list[dict[str, Any]] = []
    with run_postgres() as postgres:
        for round_ in range(args.rounds):
            order = ("postgresql", "sqlite") if round_ % 2 == 0 else ("sqlite", "postgresql")
            for backend in order:
                result = {"round": round_ + 1, **measure(backend, postgres, round_, args)}
                console.print(result)
                results.append(result)
        if args.hold > 0:
            for backend in ("postgresql", "sqlite"):
                readers.append(long_reader(backend, postgres, args))
                console.print(readers[-1])

    table = Table(
        title=f"{args.trainers} trainers x {args.trainings} trainings, "
        f"{args.promoters} people x {args.rounds_per_person} promotions, "
        f"a model server polling @champion; mlflow server --workers {args.workers}",
        title_justify="left",
    )
    columns = ("backend", "round", "failed", "server_5xx", "locked", "store_failures", "registered",
               "request_failures", "followed", "seconds")  # fmt: skip
    for column in columns:
        table.add_column(column.replace("_", " "), justify="left" if column == "backend" else "right")
    for result in sorted(results, key=lambda r: (r["backend"], r["round"])):
        cells = [str(result[c]) for c in columns]
        cells[columns.index("failed")] = f"{result['failed']}/{result['commands']}"
        cells[columns.index("registered")] = f"{result['registered']}/{result['expected']}"
        cells[columns.index("request_failures")] = f"{result['request_failures']}/{result['requests']}"
        table.add_row(*cells)
    console.print(table)
    if readers:
        held = Table(title=f"models promote --force while a reader holds the store for {args.hold:g} s",
                     title_justify="left")  # fmt: skip
        keys = ("backend", "promote_exit", "promote_s", "server_5xx", "locked", "promote_error")
        for key in keys:
            held.add_column(key.replace("_", " "), justify="left" if key in ("backend", "promote_error") else "right")
        for row in readers:
            held.add_row(*(str(row[k]) for k in keys))
        console.print(held)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"command": sys.argv, "results": results, "long_reader": readers}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
