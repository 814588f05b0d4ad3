"""The team setup: every command against a real ``mlflow server`` (PostgreSQL backend, artifacts on S3).

train -> register -> promote (with the gate) -> serve, as two people sharing one server would, and an
unreachable server reported in one line within seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fasttrack import exit_codes
from services import MlflowServer
from support import free_port, one_line_error, run_cli, serve
from team_load import Client

pytestmark = pytest.mark.integration

SAMPLE = "data/sample/classification.csv"
NAME = "remote"
QUICK = ("--data", SAMPLE, "--target", "label", "--name", NAME, "--cv-folds", "0")


def test_train_register_promote_serve(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    env = mlflow_server.env()
    # Two people, two machines: nothing is shared but the server.
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    first = run_cli("train", *QUICK, "--model", "linear", home=alice, **env)
    assert first.returncode == 0, first.stderr
    assert f"registered {NAME} version 1 (alias: champion)" in first.stdout
    # A single decision stump: it beats the baseline, so it is registered, but it is the weaker model.
    second = run_cli(
        "train", *QUICK, "--model", "random_forest", "--param", "n_estimators=1", "--param", "max_depth=1",
        home=bob, **env,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"registered {NAME} version 2" in second.stdout and "champion" not in second.stdout

    listed = run_cli("models", "list", NAME, home=alice, **env)
    assert listed.returncode == 0, listed.stderr
    assert mlflow_server.url in listed.stdout and "champion" in listed.stdout

    # The gate: on version 2's held-out rows, version 1 is better; the alias stays and the command exits 99.
    refused = run_cli("models", "promote", NAME, "--challenger", "2", home=bob, **env)
    assert refused.returncode == exit_codes.NOT_BETTER, refused.stdout
    reason = one_line_error(refused, code=exit_codes.NOT_BETTER)
    assert reason.startswith(f"not promoted: {NAME}@champion stays at version 1: the challenger is worse")
    assert "challenger" in refused.stdout and "roc_auc" in refused.stdout  # the table of both scores
    # Both URIs explicitly: MlflowClient falls back to the process-wide registry URI, which other tests set.
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    for version, role in (("2", "challenger"), ("1", "champion")):
        tags = client.get_model_version(NAME, version).tags
        assert tags["fasttrack.promotion.decision"] == "rejected"
        assert tags["fasttrack.promotion.role"] == role
        assert float(tags["fasttrack.promotion.champion_score"]) > float(tags["fasttrack.promotion.challenger_score"])

    already = run_cli("models", "promote", NAME, "1", home=alice, **env)
    assert already.returncode == 0, already.stderr
    assert "already version 1" in already.stdout

    forced = run_cli("models", "promote", NAME, "--challenger", "2", "--force", home=bob, **env)
    assert forced.returncode == 0, forced.stderr
    assert f"promoted {NAME}@champion -> version 2 (forced)" in forced.stdout
    assert client.get_model_version_by_alias(NAME, "champion").version == "2"

    shown = run_cli("models", "show", NAME, "champion", home=alice, **env)
    assert shown.returncode == 0, shown.stderr
    assert f"{NAME} version 2" in shown.stdout
    assert f"source: {SAMPLE}" in shown.stdout and "fingerprint: " in shown.stdout
    assert "decision: forced" in shown.stdout

    # A third machine serves @champion from the server (version 2 now) and follows the alias: promotions made
    # elsewhere reach it by itself, while a client keeps calling it, without a failed request.
    serving = ("--model", f"models:/{NAME}@champion", "--reload-interval", "1")
    with (
        serve(*serving, home=tmp_path / "server", **env) as server,
        Client(
            # Both versions answer with a label; the weak stump says "negative" where version 1 says "positive".
            f"{server.url}/predict",
            row={"feature_1": 5.3, "feature_2": 2.1},
            labels=("negative", "positive"),
            max_requests=20_000,
            max_seconds=180,
            pause=0.02,
        ) as traffic,
    ):
        assert traffic.wait_for("2", within=30), (traffic.versions, traffic.failures[:3], traffic.count)

        # Back to the better model through the gate, comparing on a given labelled file: a margin (from the
        # environment) larger than the difference refuses, the default margin of 0 lets it through.
        margin = run_cli(
            "models", "promote", NAME, "1", "--data", SAMPLE, home=alice, **env, FASTTRACK_PROMOTION_MARGIN="0.5"
        )
        assert "does not clear the margin 0.5" in one_line_error(margin, code=exit_codes.NOT_BETTER)
        back = run_cli("models", "promote", NAME, "--challenger", "1", "--data", SAMPLE, home=alice, **env)
        assert back.returncode == 0, back.stderr
        assert f"promoted {NAME}@champion -> version 1" in back.stdout
        assert client.get_model_version(NAME, "1").tags["fasttrack.promotion.data"] == SAMPLE

        assert traffic.wait_for("1", within=60), traffic.versions
    assert traffic.failures == [], traffic.failures[:3]
    assert traffic.versions[0] == "2" and traffic.versions[-1] == "1"
    assert traffic.count > 20


def test_an_unreachable_tracking_server_is_one_line_within_seconds(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("models", "list"), ("train", *QUICK)):
        started = time.monotonic()
        result = run_cli(*args, home=tmp_path / "home", MLFLOW_TRACKING_URI=url)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert f"cannot reach the tracking server at {url}" in one_line_error(result)
        assert elapsed < 30, elapsed  # MLflow's own defaults retry for minutes
    assert "held-out" not in result.stdout  # train failed before training, not after


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["models", "promote", "remote"], 2, "--challenger VERSION"),
        (["models", "promote", "remote", "1", "--challenger", "2"], 2, "two challengers"),
        (["models", "promote", "remote", "1", "--metric", "nope"], 2, "unknown metric"),
        (["models", "promote", "remote", "1", "--data", "x.csv", "--sql", "SELECT 1"], 2, "not both"),
        (["models", "promote", "nothing", "--challenger", "1"], 1, "nothing"),
        (["models", "show", "nothing", "1"], 1, "nothing"),
    ],
)
def test_promotion_usage_errors(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    result = run_cli(*args, home=tmp_path / "home")
    assert result.returncode == code, result.stderr
    assert needle in one_line_error(result, code=code)
