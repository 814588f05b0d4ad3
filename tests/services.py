"""Real services for the team-scale tests, started on free loopback ports and stopped afterwards.

- :func:`run_moto`: ``moto_server`` (from ``moto[server]``), a real S3-compatible HTTP server. With
  ``check_credentials`` it authenticates requests (after the first three unauthenticated calls, which create an IAM
  user whose keys the tests use), so wrong credentials are refused as a real store refuses them. moto's
  authentication does not understand presigned URLs, which MLflow 3 clients download artifacts with, so the
  artifact store of the MLflow server is a second moto without it.
- :func:`run_mlflow`: ``mlflow server`` with a SQLite backend or a given one (a PostgreSQL database: the team
  store) and, given a :class:`Moto`, artifacts served from a bucket on it (``--artifacts-destination s3://...``).
- :func:`run_postgres`: the Debian ``postgresql`` package's ``initdb`` and ``pg_ctl`` on a throw-away cluster
  with password authentication. PostgreSQL refuses to run as root, so as root the cluster belongs to the
  ``postgres`` user the package creates (``runuser``). ``make test`` installs the package when it is absent.

A service that cannot start raises: the tests that need it fail, they never skip. Each process runs in its own
session and its whole process group is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from support import free_port

BIN = Path(sys.executable).parent
#: The AWS region the tests use (moto accepts any).
REGION = "us-east-1"


def _isolated_aws_env() -> dict[str, str]:
    """Keep the developer's own AWS configuration and the EC2 metadata service out of the tests."""
    return {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": REGION,
    }


def _wait(
    ready: Callable[[], bool], process: subprocess.Popen[bytes] | None, log: Path, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if ready():
                return
        except (httpx.TransportError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.25)


@contextmanager
def _process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in a new session (so its children can be stopped with it), output to ``log``."""
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Children that outlived their leader (uvicorn workers) are in the same group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------------- moto
@dataclass(frozen=True)
class Moto:
    """A running S3-compatible server and the credentials it accepts."""

    url: str
    access_key: str
    secret_key: str

    def env(self, **overrides: str) -> dict[str, str]:
        """Variables that point AWS clients (s3fs, boto3, MLflow) at this server with valid credentials."""
        return {
            **_isolated_aws_env(),
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            **overrides,
        }

    def client(self) -> object:
        """A boto3 S3 client on this server (for setting up and inspecting buckets)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


@contextmanager
def run_moto(workdir: Path, *, check_credentials: bool = True) -> Iterator[Moto]:
    """Start ``moto_server`` on a free port; with ``check_credentials``, create an IAM user and use its keys."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **_isolated_aws_env()}
    if check_credentials:
        # The first three requests are unauthenticated: they create the user, its keys and its policy.
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    log = workdir / "moto.log"
    with _process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log, env) as process:
        _wait(lambda: httpx.get(f"{url}/moto-api/", timeout=2).status_code < 500, process, log, "moto_server", 60)
        if not check_credentials:
            yield Moto(url, "testing", "testing")
            return
        iam = boto3.client(
            "iam", endpoint_url=url, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="fasttrack")
        key = iam.create_access_key(UserName="fasttrack")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="fasttrack", PolicyName="all", PolicyDocument=json.dumps(policy))
        yield Moto(url, key["AccessKeyId"], key["SecretAccessKey"])


# --------------------------------------------------------------------------------------------------- mlflow
@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``, and the object store its artifacts are in (``None``: a local folder)."""

    url: str
    artifacts: str
    store: Moto | None = None
    #: Its log: MLflow's messages and Uvicorn's access log (one line per request, with the status).
    log: Path | None = None

    def env(self, **overrides: str) -> dict[str, str]:
        """Variables for a ``fasttrack`` process that tracks and registers on this server.

        Clients need no object-store credentials: the server proxies uploads, and downloads come from presigned
        URLs it hands out.
        """
        return {**_isolated_aws_env(), "MLFLOW_TRACKING_URI": self.url, **overrides}


@contextmanager
def run_mlflow(
    workdir: Path,
    moto: Moto | None = None,
    bucket: str = "mlflow-artifacts",
    *,
    backend: Postgres | None = None,
    workers: int = 1,
) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` on a free port: its backend a SQLite file in ``workdir``, or the database of
    ``backend`` (through psycopg, the password in ``PGPASSWORD`` as ``docker-compose.yml`` passes it); artifacts on
    ``moto`` when given, else in ``workdir``. ``workers``: Uvicorn worker processes (each its own database pool)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "PG"))}
    # No background job runner: the tests need the tracking API only.
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    if moto is not None:
        moto.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        env.update(moto.env(MLFLOW_S3_ENDPOINT_URL=moto.url))
        artifacts = f"s3://{bucket}/artifacts"
    else:
        artifacts = str(workdir / "mlflow-artifacts")
    if backend is not None:
        store = backend.url(password="", driver="postgresql+psycopg")
        env["PGPASSWORD"] = backend.password
    else:
        store = f"sqlite:///{workdir / 'mlflow.db'}"
    args = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log = workdir / "mlflow-server.log"
    with _process(args, log, env) as process:
        _wait(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, process, log, "mlflow server", 180)
        yield MlflowServer(url, artifacts, moto, log)


# ------------------------------------------------------------------------------------------------- postgres
@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server: a superuser with a password, and the ``postgres`` database."""

    host: str
    port: int
    user: str
    password: str
    database: str = "postgres"

    def url(self, *, password: str | None = None, driver: str = "postgresql") -> str:
        """A SQLAlchemy URL for this server (``password`` overrides the real one; ``""`` leaves it out)."""
        secret = self.password if password is None else password
        auth = f"{self.user}:{secret}" if secret else self.user
        return f"{driver}://{auth}@{self.host}:{self.port}/{self.database}"

    def create_database(self, name: str) -> Postgres:
        """Create the empty database ``name`` on this server and return this server with it as its database."""
        import psycopg
        from psycopg import sql

        # CREATE DATABASE cannot run inside a transaction.
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return replace(self, database=name)


def postgres_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl`` (and the client tools beside them): on PATH (links resolved), else
    the newest /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    if not versions:
        raise RuntimeError(
            "PostgreSQL is not installed (no pg_ctl): `make test` installs it (Debian package postgresql), "
            "or run `apt-get install postgresql`"
        )
    return versions[-1].parent


@contextmanager
def run_postgres() -> Iterator[Postgres]:
    """initdb a throw-away cluster (password authentication), start it on a free loopback port, stop it after."""
    bindir = postgres_bin()
    as_root = os.geteuid() == 0
    # Outside pytest's tmp dirs: as root, the cluster belongs to `postgres`, who must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="fasttrack-postgres-"))
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    password = "pg-" + os.urandom(6).hex()
    data, log, pwfile = root / "data", root / "postgres.log", root / "password"
    pwfile.write_text(password, encoding="utf-8")
    if as_root:
        for path in (root, pwfile):
            shutil.chown(path, "postgres", "postgres")

    def run(*args: str, timeout: float = 120) -> None:
        done = subprocess.run([*prefix, *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    port = free_port()
    started = False
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "fasttrack",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c shared_buffers=16MB"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        started = True
        yield Postgres("127.0.0.1", port, "fasttrack", password)
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop", timeout=60)
            kill_postmaster(data / "postmaster.pid")
        shutil.rmtree(root, ignore_errors=True)


def kill_postmaster(pidfile: Path) -> None:
    """If ``pg_ctl stop`` failed, the postmaster is still there: stop it by the pid it wrote."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)
