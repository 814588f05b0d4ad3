"""Failure drills (issue 17): real ``fasttrack`` processes killed, cut off from their registry, stopped under load and
starved of disk; what users rely on afterwards must hold.

- ``kill -9`` of ``fasttrack train`` at three moments, found by watching the store (no hook in the code): the run
  just recorded, the model's files being written, the version just created. No half-registered version is served,
  MLflow still opens the store, ``models list`` shows what is there, and the next ``train`` ends the killed runs
  as ``KILLED`` and registers a version that ``@champion`` serves.
- The tracking server stopped while a server follows ``@champion``: the served version keeps answering, the failed
  checks are counted in ``/metrics``, and the CLI says so in one line.
- SIGTERM with batch requests in flight: every one is answered 200.
- Ten version swaps (new versions, and the alias moved back) under a client loop: zero non-2xx answers.
- A full disk under the home (a small tmpfs): one clear line, and nothing stored before is changed or lost.

Each drill reuses what it can (one trained store per module, the session's serving models), so the module costs a
few trainings in all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import run_mlflow
from support import (
    FASTTRACK,
    REPO,
    clean_env,
    free_port,
    mlflow_client,
    one_line_error,
    register_copy,
    run_cli,
    serve,
    serving_settings,
    trained_home,
)

pytestmark = pytest.mark.integration

SAMPLE = REPO / "configs" / "sample.yaml"
RECORD = {"feature_1": 5.3, "feature_2": 2.1}


def train_args(name: str) -> list[str]:
    """``fasttrack train`` of the bundled sample as ``name``, without cross-validation (the drills need a model,
    not its scores)."""
    return ["train", "--config", str(SAMPLE), "--cv-folds", "0", "--name", name]


def metric(text: str, series: str) -> float:
    """The value of one series in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's serving models (``sample`` version 1, ...), trained once per test session."""
    return trained_home(tmp_path_factory.getbasetemp())


# ------------------------------------------------------------------------------------------ kill -9 of train
def query(home: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of the embedded store, read-only (nothing while the store does not exist or is locked)."""
    db = home / "mlflow.db"
    if not db.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute(sql, params).fetchall()
    except sqlite3.Error:
        return []


def kill_train_when(home: Path, name: str, moment: Callable[[], bool], what: str) -> None:
    """Start ``fasttrack train`` and ``kill -9`` it as soon as ``moment()`` is true (polled every few ms)."""
    log = home.parent / f"train-killed-{what.replace(' ', '-')}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*FASTTRACK, *train_args(name)], cwd=REPO, env=clean_env(home), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 300
        while not moment():
            if process.poll() is not None:
                raise AssertionError(f"train ended ({process.returncode}) before {what}:\n{log.read_text()[-2000:]}")
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"train was not killed at {what} ({process.returncode})"


def run_statuses(home: Path, name: str) -> list[str]:
    return [
        row[0]
        for row in query(
            home,
            "SELECT r.status FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id WHERE e.name = ?"
            " ORDER BY r.start_time",
            name,
        )
    ]


def model_files(home: Path) -> int:
    """How many files the store holds under its logged models' folders."""
    folder = home / "artifacts" / "models"
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


@pytest.fixture(scope="module")
def drill_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store of its own for the kill drills (made by the first ``train``)."""
    return tmp_path_factory.mktemp("kill-drills") / "home"


def test_kill_9_during_train_leaves_no_half_registered_version(drill_home: Path) -> None:
    name = "drill"
    home = drill_home
    # 1. just after the run is recorded (its row appears RUNNING)
    kill_train_when(home, name, lambda: run_statuses(home, name) == ["RUNNING"], "the run recorded")
    # 2. while the model's files are written into the store
    files = model_files(home)
    kill_train_when(home, name, lambda: model_files(home) > files, "the model written")
    # 3. just after the version is created (the registered model and its version rows appear)
    kill_train_when(
        home, name, lambda: bool(query(home, "SELECT 1 FROM model_versions WHERE name = ?", name)), "the version"
    )
    # kill -9 leaves a run RUNNING (nobody can end it); each next training ended the one before as KILLED
    assert run_statuses(home, name) == ["KILLED", "KILLED", "RUNNING"]

    # MLflow opens the store; the only version is a complete one (registration comes after the stored copy's check)
    client = mlflow_client(home)
    assert [e.name for e in client.search_experiments() if e.name == name] == [name]
    [version] = client.search_model_versions(f"name='{name}'")
    assert (str(version.version), version.status) == ("1", "READY")
    from fasttrack.errors import ModelNotFoundError
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import resolve_model

    settings = serving_settings(home)
    assert load_model_folder(resolve_model(f"models:/{name}/1", settings).path).pipeline is not None
    champion = client.get_registered_model(name).aliases.get("champion")
    listed = run_cli("models", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    assert f"│ {name}" in listed.stdout
    if champion is None:  # killed between the version and its alias: @champion says so, never serves version 1
        with pytest.raises(ModelNotFoundError, match=r"registered model 'drill' has no alias 'champion'"):
            resolve_model(f"models:/{name}@champion", settings)
        assert f"{name}: no version holds @champion; set it with `fasttrack models promote {name} 1`" in listed.stdout
        port = str(free_port())
        served = run_cli("serve", "--model", f"models:/{name}@champion", "--port", port, home=home, timeout=120)
        one_line_error(served, "has no alias 'champion'", "models:/drill/1")
    else:
        assert resolve_model(f"models:/{name}@champion", settings).version == str(champion)
    print(f"killed after the version was created: @champion {'set' if champion else 'not set'}")

    # the next training ends the killed runs and registers a version that @champion serves
    trained = run_cli(*train_args(name), home=home)
    assert trained.returncode == 0, trained.stderr
    assert "registered drill version 2" in trained.stdout
    assert run_statuses(home, name) == ["KILLED"] * 3 + ["FINISHED"]
    killed = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id], filter_string="attributes.status = 'KILLED'"
    )
    assert all("ended without finishing the run" in run.data.tags["fasttrack.abandoned"] for run in killed)
    holder = str(client.get_registered_model(name).aliases["champion"])
    assert holder == (str(champion) if champion else "2")  # version 2 takes an alias nobody held
    assert resolve_model(f"models:/{name}@champion", settings).version == holder
    tags = client.get_registered_model(name).tags
    assert not [k for k in tags if k.startswith("fasttrack.alias_lock.")]  # no lock left to wait for
    from fasttrack.registry.versions import list_versions

    assert [(row.version, row.aliases) for row in list_versions(settings, name)] == [
        ("2", ["champion"] if holder == "2" else []),
        ("1", ["champion"] if holder == "1" else []),
    ]


# --------------------------------------------------------------------------------- the registry unreachable
def test_registry_unreachable_keeps_the_served_version_and_is_counted(model_home: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from fasttrack.registry.resolve import resolve_model

    folder = resolve_model("models:/sample/1", serving_settings(model_home)).path  # trained once per session
    from fasttrack.registry.store import create_embedded_store

    # the server's SQLite store made as FastTrack makes its own (its schema built once, not by ~70 migrations)
    create_embedded_store(tmp_path / "mlflow" / "mlflow.db")
    with contextlib.ExitStack() as tracking:
        server = tracking.enter_context(run_mlflow(tmp_path / "mlflow"))
        # the session's sample model registered on the tracking server as MLflow's API does it (nothing trained)
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        run = client.create_run(client.create_experiment("cut-off")).info.run_id
        client.log_artifacts(run, str(folder), "model")
        client.set_terminated(run)
        client.create_registered_model("cut-off")
        created = client.create_model_version("cut-off", source=f"runs:/{run}/model", run_id=run)
        client.set_registered_model_alias("cut-off", "champion", created.version)
        home = tmp_path / "serving"
        with serve(
            "--model",
            "models:/cut-off@champion",
            "--reload-interval",
            "0.5",
            home=home,
            MLFLOW_TRACKING_URI=server.url,
        ) as served:
            assert httpx.post(served.url + "/predict", json=RECORD).status_code == 200
            tracking.close()  # the tracking server stops

            checked = httpx.post(served.url + "/admin/reload", json={}, timeout=120).json()
            assert (checked["outcome"], checked["version"]) == ("refused", "1")
            time.sleep(1.5)  # polls keep failing meanwhile
            for _ in range(20):
                answer = httpx.post(served.url + "/predict", json=RECORD)
                assert (answer.status_code, answer.headers["X-Model-Version"]) == (200, "1")
            assert httpx.get(served.url + "/ready").status_code == 200
            text = httpx.get(served.url + "/metrics").text
            assert metric(text, 'fasttrack_registry_check_failures_total{model="cut-off"}') >= 2  # reload + polls
            failures = 'fasttrack_model_reloads_total{model="cut-off",outcome="failure",version="1"}'
            assert metric(text, failures) >= 2
            assert "checking models:/cut-off@champion failed" in served.output()

    # the CLI says so in one line
    listed = run_cli("models", "list", home=tmp_path / "cli", MLFLOW_TRACKING_URI=server.url, timeout=120)
    one_line_error(listed, "cannot reach the tracking server", server.url)


# ------------------------------------------------------------------------------------- SIGTERM under load
def http_request(path: str, body: bytes, host: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_sigterm_under_load_answers_every_request_in_flight(model_home: Path) -> None:
    rows = [{"feature_1": 5.0 + i % 7, "feature_2": 2.0 + i % 3} for i in range(2000)]
    body = json.dumps(rows).encode()
    in_flight = 8
    with serve("--model", "models:/sample/1", home=model_home) as server:
        host, port = server.url.removeprefix("http://").split(":")
        # a client loop of batches until the signal: the one it has in flight then must be answered too
        stop = threading.Event()
        loop_answers: list[int] = []
        loop_errors: list[str] = []

        def loop() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set() and len(loop_answers) < 500:
                    try:
                        loop_answers.append(client.post("/predict", content=body).status_code)
                    except httpx.HTTPError as exc:
                        loop_errors.append(repr(exc))

        looping = threading.Thread(target=loop)
        looping.start()
        # "Expect: 100-continue": the server says when a route starts reading a body, so these are surely in flight
        sockets = [socket.create_connection((host, int(port)), timeout=60) for _ in range(in_flight)]
        try:
            for sock in sockets:
                sock.sendall(http_request("/predict", body, host))
            for sock in sockets:
                interim = b""
                while b"\r\n\r\n" not in interim:
                    chunk = sock.recv(4096)
                    assert chunk, "the server closed the connection"
                    interim += chunk
                assert interim.startswith(b"HTTP/1.1 100"), interim
            while not loop_answers:
                time.sleep(0.01)
            stop.set()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert server.process.poll() is None, "the server exited with requests in flight"
            for sock in sockets:
                sock.sendall(body)
            answers = [read_answer(sock) for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        looping.join(60)
        for answer in answers:
            head, _, payload = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), answer[:300]
            assert len(json.loads(payload)["predictions"]) == len(rows)
        assert not loop_errors, loop_errors
        assert loop_answers and set(loop_answers) == {200}
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)


# --------------------------------------------------------------------------------- ten swaps under load
def test_ten_version_swaps_under_load_answer_no_error(model_home: Path) -> None:
    import uuid

    name = f"swaps-{uuid.uuid4().hex[:8]}"
    register_copy(model_home, name, alias="champion")
    with serve("--model", f"models:/{name}@champion", "--reload-interval", "0", home=model_home) as server:
        answers: list[tuple[int, str | None]] = []
        errors: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set() and len(answers) < 50_000:
                    try:
                        response = client.post("/predict", json=RECORD)
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                        continue
                    answers.append((response.status_code, response.headers.get("X-Model-Version")))

        looping = threading.Thread(target=loop)
        looping.start()
        client = mlflow_client(model_home)
        expected = ["1"]
        try:
            for swap in range(10):
                if swap % 2 == 0:  # a new version takes the alias
                    version = register_copy(model_home, name, alias="champion")
                else:  # the alias moves back to an older version (a rollback)
                    version = expected[-2]
                    client.set_registered_model_alias(name, "champion", version)
                reloaded = httpx.post(server.url + "/admin/reload", json={}, timeout=60).json()
                assert (reloaded["outcome"], reloaded["version"]) == ("reloaded", version), reloaded
                expected.append(version)
                seen = len(answers)
                while len(answers) < seen + 5 and looping.is_alive():  # a few answers from each version
                    time.sleep(0.01)
        finally:
            stop.set()
            looping.join(60)
        bad = [answer for answer in answers if not 200 <= answer[0] < 300]
        assert not bad and not errors, (bad[:5], errors[:5])
        served = [v for i, (_, v) in enumerate(answers) if i == 0 or answers[i - 1][1] != v]
        assert served == expected  # every swap seen, in order, none undone
        text = httpx.get(server.url + "/metrics").text
        assert (
            sum(
                metric(text, f'fasttrack_model_reloads_total{{model="{name}",outcome="success",version="{v}"}}')
                for v in set(expected)
            )
            == 11
        )  # the first load and ten swaps


# ------------------------------------------------------------------------------------------- a full disk
@contextlib.contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder``: a real file system that fills up (ENOSPC), as a disk does.

    Mounting needs root, or passwordless sudo (GitHub's runners have it). Neither: the drill fails, saying so; a
    drill that cannot run must not pass silently (``RLIMIT_FSIZE`` would only limit one file's size, EFBIG, which
    is not how a disk fills up: SQLite's journal and other files would still be written).
    """
    folder.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={os.getuid()},gid={os.getgid()}", "tmpfs"]
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    done = subprocess.run([*prefix, *mount, str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"the full-disk drill needs a small file system: {' '.join(prefix + mount)} failed: {done.stderr}")
    try:
        yield folder
    finally:
        subprocess.run([*prefix, "umount", "-l", str(folder)], check=True)


def publish_sample(home: Path, name: str) -> str | None:
    """Train the bundled sample as ``name`` and register it in ``home``'s store, in this process (seconds, where
    the CLI takes a new interpreter and MLflow's import); the registered version."""
    import pandas as pd

    from fasttrack.config import TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.training.publish import publish
    from fasttrack.training.train import train

    config = TrainConfig.load(SAMPLE, cv_folds=0, name=name)
    frame = pd.read_csv(REPO / "data/sample/classification.csv")
    result = train(frame, config, infer_schema(frame, config.target, config.task))
    return publish(result, settings=serving_settings(home), source=config.data, fingerprint="drill").version


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` with one file, to the last byte it takes."""
    filler = folder / "filler"
    block = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as sink:
        with contextlib.suppress(OSError):
            while True:
                sink.write(block)
        with contextlib.suppress(OSError):
            while True:
                sink.write(b"\0" * 4096)
    return filler


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "mlflow.db"
    }


def test_a_full_disk_gives_one_line_and_loses_nothing(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", "48m") as disk:
        home = disk / "home"
        publish_sample(home, "full")  # version 1, in this process (the CLI's training is drilled below)
        before = digests(home)
        client = mlflow_client(home)
        runs_before = {
            r.info.run_id: r.info.status
            for r in client.search_runs([client.get_experiment_by_name("full").experiment_id])
        }
        filler = fill(disk)

        failed = run_cli(*train_args("full"), home=home)
        one_line_error(failed, "recording the run of model 'full': no space left on the device")
        port = str(free_port())  # serving a version not in the cache yet needs a copy: one line too
        served = run_cli("serve", "--model", "models:/full/1", "--port", port, home=home, timeout=120)
        one_line_error(served, "resolving models:/full/1: no space left on the device writing")
        listed = run_cli("models", "list", home=home)  # reading works on a full disk
        assert listed.returncode == 0 and "│ full" in listed.stdout, listed.stderr

        filler.unlink()
        # nothing stored before changed: the files, the runs, the version and its alias
        after = digests(home)
        assert {k: v for k, v in after.items() if k in before} == before
        with contextlib.closing(sqlite3.connect(home / "mlflow.db")) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        client = mlflow_client(home)
        experiment = client.get_experiment_by_name("full").experiment_id
        assert {
            r.info.run_id: r.info.status for r in client.search_runs([experiment]) if r.info.run_id in runs_before
        } == runs_before
        assert [(str(v.version), v.status) for v in client.search_model_versions("name='full'")] == [("1", "READY")]
        assert str(client.get_registered_model("full").aliases["champion"]) == "1"
        # and with space again, the next training works and ends what the failed one left running
        assert publish_sample(home, "full") == "2"
        assert not [r for r in client.search_runs([experiment]) if r.info.status == "RUNNING"]
