"""The team store: MLflow on PostgreSQL takes a retraining pipeline, a model server and people promoting at once.

A real ``mlflow server`` (two Uvicorn workers, as ``docker-compose.yml`` runs it) on a real PostgreSQL database, and
real ``fasttrack`` processes (``tests/team_load.py``): nothing may be lost, nothing may fail, the model server follows
the alias. ``bench/team_store.py`` runs the same load on SQLite for comparison (docs/deploy.md, "The team store").
Also ``deploy/mlflow/server.sh``, what ``make mlflow-server`` runs: its local cluster, and a given database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services import BIN, MlflowServer, Postgres, kill_postmaster, postgres_bin, run_mlflow
from support import REPO, free_port, run_cli
from team_load import TeamLoad, run_team_load, tags_of

pytestmark = pytest.mark.integration

SCRIPT = REPO / "deploy" / "mlflow" / "server.sh"
PROMOTION_TAGS = ("decision", "reason", "alias", "challenger_version", "role", "at")


def test_concurrent_writers_lose_nothing_on_postgresql(postgres: Postgres, tmp_path: Path) -> None:
    database = postgres.create_database("mlflow_team")
    with run_mlflow(tmp_path, backend=database, workers=2) as server:
        assert server.log is not None
        load = run_team_load(server, server.log, tmp_path, seeds=3, trainers=2, trainings=2, promoters=3, rounds=2)
        check_team_load(server, load)


def check_team_load(server: MlflowServer, load: TeamLoad) -> None:
    """Nothing failed, nothing is missing, and the model server followed the alias."""
    # Every process did what it was asked; no write failed, on the way or retried unseen by a client.
    failed = [(c.role, c.args, c.returncode, c.output[-1500:]) for c in load.failed()]
    assert failed == []
    assert load.locked() == []
    assert load.server_errors() == []
    assert load.store_failures() == []

    # Every training registered a version of its own (two trainers registering at once never share a number), and
    # every version and run is in the store.
    registered = load.registered()
    assert sorted(registered, key=int) == [str(v) for v in range(1, 3 + 2 * 2 + 1)], registered
    check_versions_and_runs(server, load.name, registered)

    # Every promotion moved the alias and left its tags, or found its version already champion (nothing to write).
    assert len(load.promotions) == 3 * 2
    for version, command in load.promotions:
        assert (
            f"{load.name}@champion -> version {version}" in command.stdout
            or f"{load.name}@champion is already version {version}" in command.stdout
        ), command.output
    promoted = set(load.promoted())
    assert promoted, "no promotion moved the alias"
    for version in promoted:
        tags = tags_of(server, load.name, version)
        missing = [key for key in PROMOTION_TAGS if f"fasttrack.promotion.{key}" not in tags]
        assert missing == [], (version, tags)
        assert tags["fasttrack.promotion.alias"] == "champion"
    # The alias history (one registered-model tag per event, so concurrent writers cannot overwrite each other)
    # holds one move per promotion that said it moved the alias, plus the first registration.
    history = run_cli("models", "history", load.name, "--json", home=Path(load_home(server)), **server.env())
    assert history.returncode == 0, history.stderr
    events = [json.loads(line) for line in history.stdout.splitlines() if line.startswith("{")]
    moves = sorted(e["after"] for e in events if e["decision"] in ("promoted", "forced"))
    moved = sorted(v for v, c in load.promotions if f"{load.name}@champion -> version {v}" in c.stdout)
    assert moves == moved, (moves, moved)
    assert [e["after"] for e in events if e["decision"] == "registered"] == ["1"]

    # The model server followed the alias the whole time, without a failed request, to the final champion.
    assert load.champion in promoted | {"1"}
    assert load.followed, (load.champion, load.served, load.request_failures[:3])
    assert load.request_failures == []
    assert set(load.served) <= promoted | {"1"}, load.served
    assert load.requests > 20


def load_home(server: MlflowServer) -> str:
    """A FastTrack home for the checks' own commands, next to the server's log."""
    assert server.log is not None
    return str(server.log.parent / "checker")


def check_versions_and_runs(server: MlflowServer, name: str, registered: dict[str, str]) -> None:
    """Each version exists with the run its training printed, and each run is finished with its metrics."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    for version, run_id in registered.items():
        assert client.get_model_version(name, version).run_id == run_id
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics, run_id
    experiment = client.get_run(next(iter(registered.values()))).info.experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    assert set(registered.values()) <= {run.info.run_id for run in runs}


# ---------------------------------------------------------------------------------- deploy/mlflow/server.sh
@dataclass(frozen=True)
class ScriptServer:
    """``deploy/mlflow/server.sh`` running: its URL and the output it printed so far."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def run_script(workdir: Path, **env: str) -> Iterator[ScriptServer]:
    """Run the script as ``make mlflow-server`` does (its own session) on a free port; SIGTERM it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"server-{port}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PG"))}
    base.update({"MLFLOW": str(BIN / "mlflow"), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env})
    args = [str(SCRIPT), "--serve-artifacts", "--artifacts-destination", str(workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=base, start_new_session=True)
    server = ScriptServer(process, url, log)
    try:
        wait_healthy(server)
        yield server
    finally:
        stop_script(process)


def wait_healthy(server: ScriptServer, within: float = 180) -> None:
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server.sh exited with {server.process.returncode}:\n{server.output()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise AssertionError(f"server.sh not healthy after {within:.0f} s:\n{server.output()[-3000:]}")


def stop_script(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script itself (its trap stops MLflow, then the cluster); the whole group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A folder for the script's local cluster that the ``postgres`` user can reach when the tests run as root
    (pytest's own temporary folders are private to their owner)."""
    base = Path(tempfile.mkdtemp(prefix="fasttrack-mlflow-"))
    base.chmod(0o755)
    try:
        yield base / "postgres"
    finally:
        kill_postmaster(base / "postgres" / "postmaster.pid")  # only if the script failed to stop it
        shutil.rmtree(base, ignore_errors=True)


def test_make_mlflow_server_runs_mlflow_on_a_local_cluster(cluster_dir: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    postgres_bin()  # PostgreSQL is installed (`make test` installs it): fail here, saying so, if not
    with run_script(tmp_path, POSTGRES_DIR=str(cluster_dir)) as server:
        assert f"MLflow backend store: postgresql+psycopg://fasttrack@/mlflow?host={cluster_dir}" in server.output()
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model("kept")
        # Only the socket inside the cluster's folder: no TCP port.
        assert query(cluster_dir, "SHOW listen_addresses") == ""
        assert (cluster_dir / ".s.PGSQL.5432").is_socket()
    assert server.process.returncode is not None
    assert not (cluster_dir / "postmaster.pid").exists(), "the cluster outlived the server"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)

    # Started again: the same cluster (no initdb), its data kept.
    with run_script(tmp_path, POSTGRES_DIR=str(cluster_dir)) as again:
        assert "creating a PostgreSQL cluster" not in again.output()
        client = MlflowClient(tracking_uri=again.url, registry_uri=again.url)
        assert [m.name for m in client.search_registered_models()] == ["kept"]
    assert not (cluster_dir / "postmaster.pid").exists()


def test_make_mlflow_server_uses_a_given_database(postgres: Postgres, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    database = postgres.create_database("mlflow_given")
    uri = database.url(password="", driver="postgresql+psycopg")  # the password from PGPASSWORD, as documented
    with run_script(tmp_path, MLFLOW_BACKEND_STORE_URI=uri, PGPASSWORD=postgres.password) as server:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model("given")
        assert "creating a PostgreSQL cluster" not in server.output()
    import psycopg

    with psycopg.connect(database.url()) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM registered_models")]
    assert names == ["given"]


def query(cluster: Path, statement: str) -> str:
    """One value from the script's cluster, through its socket (as the role the script creates)."""
    import psycopg

    with psycopg.connect(host=str(cluster), dbname="mlflow", user="fasttrack") as connection:
        row = connection.execute(statement).fetchone()
    assert row is not None
    return str(row[0])


def test_a_dump_of_the_team_store_restores_into_a_new_database(postgres: Postgres, tmp_path: Path) -> None:
    # docs/deploy.md's backup: pg_dump --format=custom while the server runs, pg_restore --no-owner into an empty
    # database, a server on it sees the same registry (the artifacts stay where they are).
    from mlflow import MlflowClient

    source = postgres.create_database("mlflow_backup")
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    with run_mlflow(tmp_path / "before", backend=source) as server:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        run = client.create_run("0")
        client.log_metric(run.info.run_id, "roc_auc", 0.9)
        client.create_registered_model("kept")
        created = client.create_model_version("kept", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias("kept", "champion", created.version)
        client.set_model_version_tag("kept", created.version, "fasttrack.promotion.decision", "forced")
        dump = tmp_path / "mlflow.dump"
        pg_tool("pg_dump", "--format=custom", f"--file={dump}", source.url(password=""), password=postgres.password)

    target = postgres.create_database("mlflow_restored")
    pg_tool("pg_restore", "--no-owner", f"--dbname={target.url(password='')}", str(dump), password=postgres.password)
    with run_mlflow(tmp_path / "after", backend=target) as server:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        restored = client.get_model_version_by_alias("kept", "champion")
        assert restored.version == created.version
        assert restored.tags["fasttrack.promotion.decision"] == "forced"
        assert client.get_run(restored.run_id).data.metrics == {"roc_auc": 0.9}


def pg_tool(tool: str, *args: str, password: str) -> None:
    """Run one of PostgreSQL's client tools (from the server's own bin folder), the password in ``PGPASSWORD``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"PGPASSWORD": password}
    done = subprocess.run(
        [str(postgres_bin() / tool), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
