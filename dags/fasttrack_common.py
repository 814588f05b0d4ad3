"""What FastTrack's DAGs share: where FastTrack is installed, how its tasks retry, and the assets they speak of.

Airflow lives in its own environment: Airflow 3 pins FastAPI and Starlette below what FastTrack's server needs, so
the two cannot share one. Airflow's interpreter therefore never imports FastTrack. Every task runs it through the
project's own environment: the ``fasttrack`` command in a bash task, or the Python API in
``@task.external_python`` (which runs a function in another interpreter and brings back its small return value).

Read when Airflow parses the DAG files, from the environment of the DAG processor and the workers (docs/orchestration.md
lists every variable the DAGs read, with the ones FastTrack itself reads):

- ``FASTTRACK_PYTHON``: the interpreter of FastTrack's environment (default ``/opt/fasttrack/.venv/bin/python``);
  the ``fasttrack`` command installed beside it runs the bash tasks.
- ``FASTTRACK_MODEL_NAME``: the registered model the DAGs retrain and score (default ``sample``; the same variable
  and default FastTrack reads).
- ``FASTTRACK_DAG_RETRIES``: retries of a failed task (default 2), with exponential back-off from 2 minutes.

This file defines no DAG; ``.airflowignore`` keeps the DAG processor from parsing it on its own.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import Asset, AssetAlias

#: The interpreter of FastTrack's environment, and the ``fasttrack`` command beside it.
PYTHON = os.environ.get("FASTTRACK_PYTHON") or "/opt/fasttrack/.venv/bin/python"
FASTTRACK = str(Path(PYTHON).with_name("fasttrack"))
#: The registered model the DAGs work on, unless a run's ``name`` param says otherwise.
MODEL_NAME = os.environ.get("FASTTRACK_MODEL_NAME") or "sample"
#: Who moved an alias, as the registry's alias history records it (``fasttrack models history``).
ACTOR = "airflow:{{ dag.dag_id }}/{{ run_id }}"
#: The alias a successful promotion adds its ``models:/NAME@champion`` asset event to: the asset is named by the
#: run's model name, which is only known when the run starts.
CHAMPION_ALIAS = AssetAlias(name="fasttrack_champion")
#: A fixed start in the past: with no catch-up, only the latest interval of a cron schedule ever runs.
START = datetime(2026, 1, 1, tzinfo=UTC)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "fasttrack",
    "retries": int(os.environ.get("FASTTRACK_DAG_RETRIES") or 2),
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}

#: What both DAGs share: no catch-up (only the latest interval of a cron schedule runs), one run at a time, the
#: task defaults above.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": START,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "tags": ["fasttrack"],
}

#: A bash task's exit status for "nothing changed, and that is no failure": Airflow's default ``skip_on_exit_code``
#: shows the task as skipped. ``fasttrack models promote`` exits with it when the challenger was not better, and
#: ``fasttrack check --skip-missing`` when there is no version to check against yet.
EXIT_SKIPPED = 99
#: ``fasttrack models promote``'s exit status when there was no champion yet and the challenger took the alias.
EXIT_FIRST_CHAMPION = 98


def champion_asset(name: str) -> Asset:
    """The asset a successful promotion of ``name`` updates, and that batch scoring waits for."""
    uri = f"models:/{name}@champion"
    return Asset(name=uri, uri=uri)


def data_asset(source: str) -> Asset | None:
    """The asset new training data arrives as: ``source`` as written when it is a URI (``s3://...``), a local
    path as its ``file://`` URI; ``None`` without a source (then only the cron schedule or a manual run starts
    retraining)."""
    if not source:
        return None
    uri = source if urlsplit(source).scheme else Path(source).resolve().as_uri()
    return Asset(name=uri, uri=uri)


def schedule(asset: Asset | None, cron: str) -> Any:
    """A DAG's schedule: runs when ``asset`` is updated, and on the ``cron`` schedule when one is given."""
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    if asset is not None and cron:
        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=asset)
    if asset is not None:
        return [asset]
    return CronTriggerTimetable(cron, timezone="UTC") if cron else None


def task_env(**values: str) -> dict[str, str]:
    """The environment of a bash task: the ``fasttrack`` command as ``$FASTTRACK``, the actor the registry records,
    and ``values`` (Jinja templates of the run's params: the command reads them quoted, so no value is ever parsed
    by the shell). Tasks pass it with ``append_env=True``, so the worker's own environment (``PATH``,
    ``MLFLOW_TRACKING_URI``, ``FASTTRACK_*``) is kept beneath it."""
    return {"FASTTRACK": FASTTRACK, "FASTTRACK_ACTOR": ACTOR, **values}
