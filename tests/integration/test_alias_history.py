"""Alias history with real processes: two promotions started at the same time, a rollback that a real server
following ``models:/NAME@champion`` picks up by itself, and the lock and history through a real MLflow server."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from fasttrack import exit_codes
from fasttrack.config import TrainConfig
from fasttrack.registry.alias_lock import LOCK_PREFIX, AliasLock
from fasttrack.registry.history import history_of, read_history, record_move
from services import MlflowServer
from support import FASTTRACK, REPO, clean_env, register_copy, run_cli, serve, serving_settings, trained_home

pytestmark = pytest.mark.integration

SAMPLE = REPO / "data" / "sample" / "classification.csv"


def publish_version(home: Path, name: str, model: str, params: dict[str, object]) -> str:
    """Train ``model`` on the sample data and register it as a new version of ``name`` (in-process, no CV)."""
    from fasttrack.data.describe import infer_schema
    from fasttrack.training.publish import publish
    from fasttrack.training.train import train

    frame = pd.read_csv(SAMPLE)
    config = TrainConfig(data=str(SAMPLE), target="label", name=name, model=model, params=params, cv_folds=0)
    result = train(frame, config, infer_schema(frame, "label", "auto"))
    tracked = publish(result, settings=serving_settings(home), source=str(SAMPLE), fingerprint="test")
    assert tracked.version is not None
    return tracked.version


def test_two_promotions_started_at_the_same_time(tmp_path: Path) -> None:
    home, name = tmp_path / "home", "race"
    stump = {"n_estimators": 1, "max_depth": 1}
    assert publish_version(home, name, "random_forest", stump) == "1"  # the weak champion
    challengers = [publish_version(home, name, "linear", {"C": c}) for c in (1.0, 0.05)]
    assert challengers == ["2", "3"]

    # Both compare with version 1; whichever moves the alias second must see the first's move and decide again.
    racers = [
        subprocess.Popen(
            [*FASTTRACK, "models", "promote", name, version],
            cwd=REPO,
            env=clean_env(home, FASTTRACK_ACTOR=f"racer-{version}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in challengers
    ]
    outputs = {version: racer.communicate(timeout=300) for version, racer in zip(challengers, racers, strict=True)}
    codes = {version: racer.returncode for version, racer in zip(challengers, racers, strict=True)}

    found = read_history(serving_settings(home), name, "champion")
    registered, *decisions = found.events
    assert (registered.after, registered.decision) == ("1", "registered")
    # Both decisions are recorded, one after the other: each against the version holding the alias at the time.
    assert sorted(e.by for e in decisions) == ["racer-2", "racer-3"], outputs
    first, second = decisions
    assert first.before == "1" and second.before == first.after
    for event in decisions:
        assert event.comparison is not None and event.comparison.champion == event.before
        assert event.decision in ("promoted", "rejected")
        assert event.after == (event.comparison.challenger if event.decision == "promoted" else event.before)
        expected = exit_codes.OK if event.decision == "promoted" else exit_codes.NOT_BETTER
        assert codes[event.comparison.challenger] == expected, outputs
    assert found.holders == {"champion": second.after} and found.notes == []
    # The linear models beat the stump: the first to move took the alias from version 1.
    assert first.decision == "promoted"


def served_version(url: str) -> str:
    return str(httpx.get(f"{url}/ready", timeout=10).json()["version"])


def wait_for_version(url: str, version: str, within: float = 60) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if served_version(url) == version:
            return True
        time.sleep(0.2)
    return False


def test_a_server_following_the_alias_picks_up_a_rollback(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = trained_home(tmp_path_factory.getbasetemp())
    name = f"rollback-{uuid.uuid4().hex[:8]}"
    register_copy(home, name, alias="champion")  # version 1, set as MLflow's API would: no recorded move
    register_copy(home, name)  # version 2
    following = ("--model", f"models:/{name}@champion", "--reload-interval", "0.5")
    with serve(*following, home=home) as server:
        assert served_version(server.url) == "1"
        forced = run_cli("models", "promote", name, "2", "--force", home=home, FASTTRACK_ACTOR="release-bot")
        assert forced.returncode == 0, forced.stderr
        assert wait_for_version(server.url, "2")

        back = run_cli("models", "rollback", name, home=home, FASTTRACK_ACTOR="on-call")
        assert back.returncode == 0, back.stderr
        assert f"rolled back {name}@champion: version 2 -> version 1" in back.stdout
        assert wait_for_version(server.url, "1"), server.output()[-2000:]

    shown = run_cli("models", "history", name, home=home)
    assert shown.returncode == 0, shown.stderr
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.stdout.splitlines() if "│ @champion" in line]
    assert [row[2:5] for row in rows] == [["1 -> 2", "forced", "release-bot"], ["2 -> 1", "rollback", "on-call"]]
    assert f"now: {name}@champion -> version 1" in shown.stdout

    again = run_cli("models", "rollback", name, "--to", "9", home=home)
    assert again.returncode == 1 and f"version 9 of {name} does not exist" in again.stderr


def test_the_lock_and_the_history_hold_on_a_tracking_server(mlflow_server: MlflowServer) -> None:
    # The same lock and event tags, through MLflow's REST API: threads stand for processes on other machines.
    from mlflow import MlflowClient

    url = mlflow_server.url
    name = f"remote-lock-{uuid.uuid4().hex[:8]}"
    MlflowClient(tracking_uri=url, registry_uri=url).create_registered_model(name)
    counter = {"value": 0, "inside": 0, "most_inside": 0}
    errors: list[BaseException] = []

    def work(who: str) -> None:
        try:
            client = MlflowClient(tracking_uri=url, registry_uri=url)
            with AliasLock(client, name, "champion", poll=0.05):
                counter["inside"] += 1
                counter["most_inside"] = max(counter["most_inside"], counter["inside"])
                value = counter["value"]
                time.sleep(0.05)  # a read-sleep-write increment loses updates unless the lock serialises them
                counter["value"] = value + 1
                counter["inside"] -= 1
            record_move(client, name, "champion", expected=None, to=None, decision="rejected", reason="-", by=who)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"machine-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert (counter["value"], counter["most_inside"]) == (4, 1)
    remote = MlflowClient(tracking_uri=url, registry_uri=url).get_registered_model(name)
    events = history_of(name, dict(remote.aliases), dict(remote.tags)).events
    assert sorted(e.by for e in events) == [f"machine-{i}" for i in range(4)]  # no event lost
    assert not [key for key in remote.tags if key.startswith(LOCK_PREFIX)]  # every lock tag removed
