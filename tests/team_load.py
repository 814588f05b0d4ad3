"""A team's load on one MLflow server, as real processes: a retraining pipeline and a person registering versions,
a model server following ``@champion``, and people promoting versions, all at once.

:func:`run_team_load` drives it and returns a :class:`TeamLoad` that says what every process printed, what the
tracking server logged and answered, and what the model server served. ``tests/integration/test_team_store.py``
runs it against PostgreSQL, where nothing may fail; ``bench/team_store.py`` runs it against PostgreSQL and SQLite
side by side and counts what fails. Every loop is bounded, every process talks to loopback only.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services import MlflowServer
from support import mixed_frame, run_cli, serve

#: What SQLite says when a writer waited too long for another (MLflow answers it as 503 TEMPORARILY_UNAVAILABLE).
LOCKED = "database is locked"
#: The access-log line of a request the tracking server answered with a 5xx (Uvicorn's format in MLflow's log config:
#: ``... 127.0.0.1:50420 - "POST /api/2.0/mlflow/... HTTP/1.1" 503 Service Unavailable``).
SERVER_ERROR = re.compile(r'"[A-Z]+ (?P<path>\S+) HTTP/[\d.]+" (?P<status>5\d\d)\b')
#: Lines of the tracking server's own log that mean a write failed inside it.
STORE_FAILURE = re.compile(r"OperationalError|TEMPORARILY_UNAVAILABLE|SQLAlchemy database error|Traceback")
#: One row of the generated data's features, for the model server's clients.
ROW = {"amount": 50.0, "colour": "red", "member": True}


@dataclass(frozen=True)
class Command:
    """One finished ``fasttrack`` command: its arguments, exit code and output."""

    role: str
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Everything it printed."""
        return self.stdout + self.stderr


@dataclass
class TeamLoad:
    """What happened: the commands, the tracking server's log, what the model server served."""

    name: str
    seeds: list[Command]
    trainings: list[Command]
    promotions: list[tuple[str, Command]]
    server_log: str
    model_server_log: str = ""
    served: list[str] = field(default_factory=list)
    requests: int = 0
    request_failures: list[str] = field(default_factory=list)
    champion: str | None = None
    followed: bool = False
    seconds: float = 0.0

    def commands(self) -> list[Command]:
        """Every command of the load (the seed trainings too)."""
        return [*self.seeds, *self.trainings, *(command for _, command in self.promotions)]

    def failed(self) -> list[Command]:
        """The commands that exited non-zero."""
        return [command for command in self.commands() if command.returncode != 0]

    def registered(self) -> dict[str, str]:
        """Version -> run id, as the trainings printed them (``registered NAME version N``, ``run ID``)."""
        versions: dict[str, str] = {}
        for command in [*self.seeds, *self.trainings]:
            version = re.search(rf"registered {re.escape(self.name)} version (\d+)", command.stdout)
            run = re.search(r"^run ([0-9a-f]{32}) ", command.stdout, re.MULTILINE)
            if version and run:
                versions[version.group(1)] = run.group(1)
        return versions

    def promoted(self) -> list[str]:
        """The versions whose promotion said it moved the alias."""
        return [
            version
            for version, command in self.promotions
            if command.returncode == 0 and f"{self.name}@champion -> version {version}" in command.stdout
        ]

    def locked(self) -> list[str]:
        """Every line, of any process, saying ``database is locked``."""
        texts = [self.server_log, self.model_server_log, *(command.output for command in self.commands())]
        return [line for text in texts for line in text.splitlines() if LOCKED in line]

    def server_errors(self) -> list[str]:
        """The requests the tracking server answered with a 5xx (clients may have retried them unseen)."""
        return [line for line in self.server_log.splitlines() if SERVER_ERROR.search(line)]

    def store_failures(self) -> list[str]:
        """Lines of the tracking server's log that report a failed database operation."""
        return [line for line in self.server_log.splitlines() if STORE_FAILURE.search(line)]


def write_data(path: Path, rows: int = 1500) -> Path:
    """Small generated data (numeric with gaps, categorical, boolean; target ``label``) as a CSV file: enough rows
    that a version's held-out part clears the promotion gate's ``promotion_min_rows`` (200 by default)."""
    mixed_frame(rows=rows, seed=11).to_csv(path, index=False)
    return path


def run_team_load(
    server: MlflowServer,
    server_log: Path,
    workdir: Path,
    *,
    name: str = "team",
    seeds: int = 3,
    trainers: int = 2,
    trainings: int = 2,
    promoters: int = 3,
    rounds: int = 2,
    follow_within: float = 60,
) -> TeamLoad:
    """Seed ``seeds`` versions of ``name`` (one after the other; version 1 becomes ``@champion``), start a model
    server following ``models:/NAME@champion`` (polling every second) with a client calling it, then at once:
    ``trainers`` trainers (a retraining pipeline, people), each registering ``trainings`` more versions in a row,
    and ``promoters`` people, each promoting ``rounds`` seeded versions with ``--force`` (so each one moves the
    alias and writes its tags, whatever the scores). Afterwards, waits up to ``follow_within`` seconds for the
    model server to serve the final champion.

    Each process has its own FastTrack home, as on separate machines; only the tracking server is shared.
    """
    from mlflow import MlflowClient

    data = write_data(workdir / "data.csv")
    env = server.env()
    train_args = ("train", "--data", str(data), "--target", "label", "--name", name, "--model", "linear",
                  "--cv-folds", "0")  # fmt: skip

    def run(role: str, *args: str, home: str) -> Command:
        try:
            done = run_cli(*args, home=workdir / home, timeout=300, **env)
        except subprocess.TimeoutExpired as exc:
            return Command(role, args, -1, str(exc.stdout or ""), f"timed out: {exc}")
        return Command(role, args, done.returncode, done.stdout, done.stderr)

    started = time.monotonic()
    seeded = [run("seed", *train_args, home="seeder") for _ in range(seeds)]
    if any(command.returncode for command in seeded):
        failed = next(command for command in seeded if command.returncode)
        raise RuntimeError(f"seeding {name} failed:\n{failed.output[-3000:]}")
    load = TeamLoad(name, seeded, [], [], server_log="")

    serving = ("--model", f"models:/{name}@champion", "--reload-interval", "1")
    with serve(*serving, home=workdir / "model-server", **env) as model_server:
        with Client(f"{model_server.url}/predict") as client:
            trainer_done: list[Command] = []
            promotions: list[tuple[str, Command]] = []
            lock = threading.Lock()

            def trainer(index: int) -> None:
                for _ in range(trainings):
                    command = run(f"trainer{index}", *train_args, home=f"trainer{index}")
                    with lock:
                        trainer_done.append(command)

            def promoter(person: int) -> None:
                for round_ in range(rounds):
                    version = str((person + round_ + 1) % seeds + 1)
                    command = run(
                        f"person{person}", "models", "promote", name, "--challenger", version, "--force",
                        home=f"person{person}",
                    )  # fmt: skip
                    with lock:
                        promotions.append((version, command))

            threads = [threading.Thread(target=trainer, args=(t,), daemon=True) for t in range(trainers)]
            threads += [threading.Thread(target=promoter, args=(p,), daemon=True) for p in range(promoters)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=900)
            load.trainings, load.promotions = trainer_done, promotions

            tracking = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
            load.champion = str(tracking.get_model_version_by_alias(name, "champion").version)
            load.followed = client.wait_for(load.champion, within=follow_within)
        load.served, load.requests, load.request_failures = client.versions, client.count, client.failures
        load.model_server_log = model_server.output()
    load.seconds = time.monotonic() - started
    load.server_log = server_log.read_text(encoding="utf-8", errors="replace")
    return load


class Client:
    """A thread calling the model server's ``/predict`` in a bounded loop, recording the versions that answered
    (``X-Model-Version``, in order, repeats collapsed) and every failed request."""

    def __init__(
        self,
        url: str,
        *,
        row: dict[str, Any] | None = None,
        labels: tuple[str, ...] = ("yes", "no"),
        max_requests: int = 50_000,
        max_seconds: float = 900,
        pause: float = 0.05,
    ):
        self.url, self.max_requests, self.max_seconds, self.pause = url, max_requests, max_seconds, pause
        #: The record sent, and the predictions every version may answer (anything else is a failure).
        self.row, self.labels = row if row is not None else ROW, labels
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set() and self.count < self.max_requests and time.monotonic() < deadline:
                self.count += 1
                try:
                    response = http.post(self.url, json=self.row)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200 or response.json().get("prediction") not in self.labels:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                version = response.headers["X-Model-Version"]
                if not self.versions or self.versions[-1] != version:
                    self.versions.append(version)
                self._stop.wait(self.pause)

    def wait_for(self, version: str, *, within: float) -> bool:
        """Whether the last version served becomes ``version`` within ``within`` seconds."""
        return _until(lambda: bool(self.versions) and self.versions[-1] == version, within)


def _until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def tags_of(server: MlflowServer, name: str, version: str) -> dict[str, Any]:
    """The tags of ``name`` ``version`` on ``server``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    return dict(client.get_model_version(name, version).tags)
