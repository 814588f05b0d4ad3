"""FastTrack's DAGs (dags/) in a real Airflow 3, from its own environment, end to end with ``airflow dags test``.

``make test`` builds that environment once (``make airflow-env``: ``.airflow/venv`` from
deploy/airflow/requirements.txt, and a migrated SQLite metadata database in ``.airflow/home``); each test module
copies the database into its own ``AIRFLOW_HOME``. A missing environment fails these tests: they never skip.

The tasks run FastTrack through this checkout's environment (``FASTTRACK_PYTHON`` is the interpreter running the
tests), never inside Airflow's interpreter, which cannot even import it. Every ``airflow`` process runs in its own
session with a marker in its environment; after each command, any process still carrying the marker is killed by
its PID and the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from churn_data import churn
from support import REPO, serving_settings

pytestmark = pytest.mark.integration

AIRFLOW_DIR = REPO / ".airflow"
AIRFLOW_BIN = AIRFLOW_DIR / "venv" / "bin"
TEMPLATE_DB = AIRFLOW_DIR / "home" / "airflow.db"
NAME = "churn"
MARKER = "FASTTRACK_AIRFLOW_TEST_RUN"


# ------------------------------------------------------------------------------------------------- airflow
@dataclass(frozen=True)
class Run:
    """A DAG run that ``airflow dags test`` made: its id and everything the command printed (the task logs)."""

    run_id: str
    output: str


@dataclass
class Airflow:
    """Airflow's environment, an ``AIRFLOW_HOME`` of this module's own, and the run's FastTrack store."""

    home: Path
    env: dict[str, str]
    store: Path
    commands: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
        """``airflow ARGS`` to completion, in a new session; afterwards no process it started may be left."""
        return self._run([str(AIRFLOW_BIN / "airflow"), *args], timeout, env)

    def python(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Airflow's own interpreter running ``code``."""
        return self._run([str(AIRFLOW_BIN / "python"), "-c", code, *args], 300, {})

    def _run(self, argv: list[str], timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        marker = uuid.uuid4().hex
        process = subprocess.Popen(
            argv,
            env={**self.env, **env, MARKER: marker},
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stop_leftovers(marker)
            raise AssertionError(
                f"{argv[1:3]} did not end in {timeout} s:\n{stdout[-3000:]}\n{stderr[-3000:]}"
            ) from None
        left = stop_leftovers(marker)
        assert not left, f"{' '.join(argv[:3])} left processes running (killed): {left}"
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "airflow.db")

    def dag_test(self, dag_id: str, *args: str, state: str = "success") -> Run:
        """``airflow dags test DAG_ID ARGS``: the run it made, which must end in ``state``."""
        done = self.run("dags", "test", dag_id, *args)
        output = done.stdout + done.stderr
        with self.db() as db:
            row = db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC", (dag_id,)
            ).fetchone()
        assert row is not None, f"no run of {dag_id}:\n{output[-6000:]}"
        assert row[1] == state, f"{dag_id} run {row[0]} ended {row[1]}, not {state}:\n{output[-6000:]}"
        # `airflow dags test` exits 1 ("DagRun failed") when the run failed, else 0.
        assert done.returncode == (1 if state == "failed" else 0), output[-3000:]
        return Run(str(row[0]), output)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        with self.db() as db:
            rows = db.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            ).fetchall()
        return {str(task): state for task, state in rows}

    def result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """A task's return value (its ``return_value`` XCom)."""
        with self.db() as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
                (dag_id, run_id, task_id),
            ).fetchone()
        assert row is not None, f"{dag_id}.{task_id} returned nothing in {run_id}"
        value = json.loads(row[0])
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def rendered(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """A task's template fields as Airflow rendered them for the run (its command, environment, arguments)."""
        with self.db() as db:
            row = db.execute(
                "SELECT rendered_fields FROM rendered_task_instance_fields "
                "WHERE dag_id = ? AND run_id = ? AND task_id = ?",
                (dag_id, run_id, task_id),
            ).fetchone()
        assert row is not None, f"{dag_id}.{task_id} has no rendered fields in {run_id}"
        fields: dict[str, Any] = json.loads(row[0])
        return fields

    def asset_events(self, uri: str) -> list[dict[str, Any]]:
        """The extras of the events of the asset ``uri``, oldest first."""
        with self.db() as db:
            rows = db.execute(
                "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? ORDER BY e.id",
                (uri,),
            ).fetchall()
        return [json.loads(extra) if extra else {} for (extra,) in rows]


def stop_leftovers(marker: str) -> list[str]:
    """Kill, by PID, every process whose environment carries ``marker``; say which ones there were."""
    found: list[str] = []
    needle = f"{MARKER}={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            os.kill(int(proc.name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append(f"{proc.name}: {command[:200]}")
    return found


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    if not (AIRFLOW_BIN / "airflow").is_file() or not TEMPLATE_DB.is_file():
        pytest.fail(f"the Airflow environment is missing ({AIRFLOW_DIR}): run `make airflow-env` (make test does)")
    base = tmp_path_factory.mktemp("airflow")
    home = base / "airflow-home"
    home.mkdir()
    shutil.copy2(TEMPLATE_DB, home / "airflow.db")
    data = base / "data"
    data.mkdir()
    churn(600, seed=1).to_csv(data / "good.csv", index=False)
    churn(1500, seed=2, noise=0.2).to_csv(data / "noisier.csv", index=False)
    churn(300, seed=3).drop(columns=["tenure"]).to_csv(data / "broken.csv", index=False)
    churn(200, seed=4, labelled=False).to_parquet(data / "to-score.parquet")
    config = data / "churn.yaml"
    config.write_text("model: linear\ncv_folds: 0\nseed: 7\n", encoding="utf-8")
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "FASTTRACK_PYTHON": sys.executable,
            "FASTTRACK_HOME": str(base / "fasttrack"),
            "FASTTRACK_MODEL_NAME": NAME,
            "FASTTRACK_RETRAIN_DATA": str(data / "good.csv"),
            "FASTTRACK_RETRAIN_TARGET": "churned",
            "FASTTRACK_RETRAIN_CONFIG": str(config),
            "FASTTRACK_RETRAIN_SCHEDULE": "0 3 * * *",
            "FASTTRACK_SCORE_INPUT": str(data / "to-score.parquet"),
            "FASTTRACK_SCORE_OUTPUT": str(base / "scores"),
            "FASTTRACK_DAG_RETRIES": "0",
            "NO_COLOR": "1",
        }
    )
    return Airflow(home=home, env=env, store=base / "fasttrack")


# --------------------------------------------------------------------------------------------------- tests
PARSE = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag  # what the DAG processor parses a folder with
bag = BundleDagBag(sys.argv[1], bundle_path=Path(sys.argv[1]), bundle_name="dags-folder")
dags = {}
for dag_id, dag in sorted(bag.dags.items()):
    dags[dag_id] = {
        "tasks": sorted(dag.task_ids),
        "timetable": type(dag.timetable).__name__,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "params": sorted(dag.params),
        "retries": sorted({task.retries for task in dag.tasks}),
        "backoff": sorted({task.retry_exponential_backoff for task in dag.tasks}),
    }
print(json.dumps({"dags": dags, "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "fasttrack_imported": any(m == "fasttrack" or m.startswith("fasttrack.") for m in sys.modules)}))
"""


def test_the_dag_folder_imports_without_errors_and_without_fasttrack(airflow: Airflow) -> None:
    parsed = airflow.python(PARSE, str(REPO / "dags"))
    assert parsed.returncode == 0, parsed.stderr
    found = json.loads(parsed.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert not found["fasttrack_imported"]
    retrain, score = found["dags"]["fasttrack_retrain"], found["dags"]["fasttrack_score"]
    assert set(found["dags"]) == {"fasttrack_retrain", "fasttrack_score"}
    assert retrain["tasks"] == ["check_data", "promote", "record", "train"]
    assert retrain["params"] == ["config", "data", "db", "margin", "name", "sql", "target"]
    assert score["tasks"] == ["score"] and score["params"] == ["input", "name", "output"]
    for dag in (retrain, score):
        assert dag["catchup"] is False and dag["max_active_runs"] == 1 and dag["timeout"]
        assert dag["retries"] == [0] and dag["backoff"] == [True]  # FASTTRACK_DAG_RETRIES=0 in these tests
    # Scheduled on the data asset or the cron schedule; scoring on the champion asset alone (no cron set).
    assert retrain["timetable"] == "AssetOrTimeSchedule"
    assert score["timetable"] == "AssetTriggeredTimetable"
    # FastTrack lives in its own environment: Airflow's interpreter cannot import it.
    imported = airflow.python("import fasttrack")
    assert imported.returncode == 1 and "No module named 'fasttrack'" in imported.stderr


def test_a_broken_dag_file_is_reported(airflow: Airflow, tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(REPO / "dags", folder)
    (folder / "broken_dag.py").write_text("from airflow.sdk import dag\nraise RuntimeError('boom')\n", "utf-8")
    parsed = airflow.python(PARSE, str(folder))
    assert parsed.returncode == 0, parsed.stderr
    found = json.loads(parsed.stdout.strip().splitlines()[-1])
    assert list(found["errors"]) == ["broken_dag.py"] and "RuntimeError: boom" in found["errors"]["broken_dag.py"]
    assert set(found["dags"]) == {"fasttrack_retrain", "fasttrack_score"}
    # The command docs/orchestration.md gives, on the same two folders.
    command = ("dags", "list-import-errors", "--local", "--bundle-name", "dags-folder", "--output", "json")
    broken = airflow.run(*command, AIRFLOW__CORE__DAGS_FOLDER=str(folder))
    assert broken.returncode == 1
    assert [e["filepath"] for e in json.loads(broken.stdout.strip().splitlines()[-1])] == ["broken_dag.py"]
    ours = airflow.run(*command)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def first_run(airflow: Airflow) -> Run:
    """The first retraining: nothing to check against yet, version 1 registered and promoted."""
    return airflow.dag_test("fasttrack_retrain")


def test_a_first_retraining_registers_and_promotes(airflow: Airflow, first_run: Run) -> None:
    from fasttrack.api import describe_version

    run = first_run.run_id
    states = airflow.task_states("fasttrack_retrain", run)
    assert states == {"check_data": "skipped", "train": "success", "promote": "success", "record": "success"}
    trained = airflow.result("fasttrack_retrain", run, "train")
    assert trained["name"] == NAME and trained["version"] == "1" and trained["primary_metric"] == "roc_auc"
    assert airflow.result("fasttrack_retrain", run, "record")["champion"] == "1"
    assert describe_version(NAME, "champion", settings=serving_settings(airflow.store)).version == "1"
    # The promotion updated the champion asset, which schedules fasttrack_score.
    assert airflow.asset_events(f"models:/{NAME}@champion") == [{"version": "1"}]
    assert f"nothing to check against: no registered model {NAME!r}" in first_run.output
    # Every task says who it is, for the registry's alias history: the bash tasks in their environment, the
    # Python ones as an argument they export.
    actor = f"airflow:fasttrack_retrain/{run}"
    for task in ("check_data", "promote"):
        assert airflow.rendered("fasttrack_retrain", run, task)["env"]["FASTTRACK_ACTOR"] == actor
    assert airflow.rendered("fasttrack_retrain", run, "train")["op_kwargs"]["actor"] == actor


@pytest.fixture(scope="module")
def second_run(airflow: Airflow, first_run: Run) -> Run:
    """A retraining on noisier data (a fifth of its labels flipped): a challenger that is not clearly better than
    the champion by the margin it must beat (0.02 ROC AUC), so the gate keeps the champion."""
    conf = json.dumps(
        {"data": str(Path(airflow.env["FASTTRACK_RETRAIN_DATA"]).with_name("noisier.csv")), "margin": 0.02}
    )
    run = airflow.dag_test("fasttrack_retrain", "--conf", conf)
    assert run.run_id != first_run.run_id
    return run


def test_a_retraining_on_noisier_data_keeps_the_champion_and_skips_promote(airflow: Airflow, second_run: Run) -> None:
    from fasttrack.api import describe_version

    run = second_run.run_id
    states = airflow.task_states("fasttrack_retrain", run)
    assert states == {"check_data": "success", "train": "success", "promote": "skipped", "record": "success"}
    assert airflow.result("fasttrack_retrain", run, "train")["version"] == "2"
    recorded = airflow.result("fasttrack_retrain", run, "record")
    assert recorded["challenger"] == "2" and recorded["champion"] == "1"
    assert describe_version(NAME, "champion", settings=serving_settings(airflow.store)).version == "1"
    assert len(airflow.asset_events(f"models:/{NAME}@champion")) == 1  # a skipped promotion updates no asset


def test_the_scoring_dag_scores_with_the_champion_into_a_dated_file(airflow: Airflow, second_run: Run) -> None:
    import fasttrack

    run = airflow.dag_test("fasttrack_score").run_id
    assert airflow.task_states("fasttrack_score", run) == {"score": "success"}
    output = Path(airflow.result("fasttrack_score", run, "score"))
    assert output.parent.parent == Path(airflow.env["FASTTRACK_SCORE_OUTPUT"])
    assert pd.Timestamp(output.parent.name).date() <= pd.Timestamp.now("UTC").date()
    assert output.name == f"{NAME}.parquet" and not list(output.parent.glob(".*"))  # no temporary file left
    scored = pd.read_parquet(output)
    source = pd.read_parquet(airflow.env["FASTTRACK_SCORE_INPUT"])
    champion = fasttrack.load(f"models:/{NAME}/1", settings=serving_settings(airflow.store))
    assert len(scored) == len(source) == 200
    assert scored["prediction"].tolist() == list(champion.predict(source))


def test_a_breaking_change_fails_the_run_with_the_reason_in_the_log(airflow: Airflow, second_run: Run) -> None:
    broken = str(Path(airflow.env["FASTTRACK_RETRAIN_DATA"]).with_name("broken.csv"))
    run = airflow.dag_test("fasttrack_retrain", "--conf", json.dumps({"data": broken}), state="failed")
    states = airflow.task_states("fasttrack_retrain", run.run_id)
    assert states["check_data"] == "failed"
    assert {states["train"], states["promote"], states["record"]} == {"upstream_failed"}
    assert "breaking: tenure: missing: the model was trained on this numeric feature" in run.output
