"""``fasttrack_retrain``: retrain a registered model on new data and let the promotion gate decide.

``check_data`` holds the new data against the champion's training schema (``fasttrack check``): a breaking change,
such as a missing feature or a changed type, fails the run with one line per reason in the task log; before the
first champion there is nothing to check against and the task is skipped. ``train`` fits, evaluates (held-out
metrics, the baseline, the quality gate) and registers a challenger through the Python API. ``promote`` runs the
promotion gate against the champion (``fasttrack models promote``): the alias moves, and the task succeeds and
updates the ``models:/NAME@champion`` asset that starts ``fasttrack_score``; or the challenger was not better, an
outcome rather than a failure, and the task shows as skipped. ``record`` reads the decision back from the registry
and keeps it as the run's result. Tasks pass small values (version, run id, scores), never data.

Runs when the data asset (``FASTTRACK_RETRAIN_DATA``) is updated, on ``FASTTRACK_RETRAIN_SCHEDULE`` (cron) when set,
or when triggered with params. No catch-up, one run at a time, retries with back-off, a 3-hour run timeout.
docs/orchestration.md says how to deploy it and how to run the same steps from cron or CI without Airflow.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from fasttrack_common import (
    ACTOR,
    CHAMPION_ALIAS,
    DAG_DEFAULTS,
    EXIT_FIRST_CHAMPION,
    EXIT_SKIPPED,
    MODEL_NAME,
    PYTHON,
    champion_asset,
    data_asset,
    schedule,
    task_env,
)

#: The run's defaults, read at parse time (docs/orchestration.md): the data whose updates start a run (its asset),
#: the target, the train config and the cron schedule.
DATA = os.environ.get("FASTTRACK_RETRAIN_DATA", "")
TARGET = os.environ.get("FASTTRACK_RETRAIN_TARGET", "")
CONFIG = os.environ.get("FASTTRACK_RETRAIN_CONFIG", "")
CRON = os.environ.get("FASTTRACK_RETRAIN_SCHEDULE", "")

#: The params as bash tasks read them: environment variables, quoted in the commands.
SOURCE_ENV = {
    "FT_DATA": "{{ params.data or '' }}",
    "FT_SQL": "{{ params.sql or '' }}",
    "FT_DB": "{{ params.db or '' }}",
}
#: The data source as ``fasttrack`` arguments: the file or URL, else the query and its database.
SOURCE_ARGS = """if [ -n "$FT_DATA" ]; then source=("$FT_DATA")
elif [ -n "$FT_SQL" ]; then source=(--sql "$FT_SQL" --db "$FT_DB")
else echo "error: no data: set the data param (or sql and db), or FASTTRACK_RETRAIN_DATA"; exit 1; fi"""


@dag(
    dag_id="fasttrack_retrain",
    description="Check new data, train a challenger, promote it through the gate, record the decision.",
    schedule=schedule(data_asset(DATA), CRON),
    dagrun_timeout=timedelta(hours=3),
    **DAG_DEFAULTS,
    doc_md=__doc__,
    params={
        "data": Param(DATA, type=["null", "string"], description="New training data: a path or a URL."),
        "sql": Param("", type=["null", "string"], description="Instead of data: a query (with db)."),
        "db": Param("", type=["null", "string"], description="The SQLAlchemy URL the query runs on."),
        "target": Param(TARGET, type=["null", "string"], description="Column to predict (default: the config's)."),
        "name": Param(MODEL_NAME, type="string", minLength=1, description="Registered model name."),
        "config": Param(CONFIG, type=["null", "string"], description="YAML train config (model, params, gate)."),
        "margin": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="How much better the challenger must surely be (default: the workers' "
            "FASTTRACK_PROMOTION_MARGIN, itself the challenger's cross-validation spread).",
        ),
    },
)
def fasttrack_retrain() -> None:
    @task.bash(env=task_env(**SOURCE_ENV, FT_NAME="{{ params.name }}"), append_env=True, skip_on_exit_code=EXIT_SKIPPED)
    def check_data() -> str:
        """``fasttrack check`` against the champion: exit 1 names every breaking change; 99 (skipped) when there
        is no champion yet."""
        return f"""{SOURCE_ARGS}
"$FASTTRACK" check "${{source[@]}}" --against "models:/$FT_NAME@champion" --for train --skip-missing"""

    @task.external_python(python=PYTHON, expect_airflow=False, trigger_rule="none_failed")
    def train(data: str, sql: str, db: str, target: str, name: str, config: str, actor: str) -> dict[str, object]:
        """Train, evaluate and register a challenger with FastTrack's Python API, in FastTrack's interpreter."""
        import os

        os.environ["FASTTRACK_ACTOR"] = actor  # before FastTrack reads its settings
        import fasttrack
        from fasttrack.errors import FastTrackError

        try:
            trained = fasttrack.train(
                config or None, data=data or None, sql=sql or None, db=db or None, target=target or None, name=name
            )
        except FastTrackError as exc:
            print(f"error: {exc}")
            raise SystemExit(1) from None
        scores = ", ".join(f"{metric} {value:.4f}" for metric, value in sorted(trained.metrics.items()))
        print(f"run {trained.run_id}: {scores}")
        if not trained.registered:
            print("error: quality gate failed, model not registered: " + "; ".join(trained.gate.reasons))
            raise SystemExit(1)
        print(f"registered {trained.name} version {trained.version}")
        metric = trained.primary_metric
        return {
            "name": trained.name,
            "version": trained.version,
            "run_id": trained.run_id,
            "primary_metric": metric,
            "score": trained.metrics.get(metric),
        }

    @task.bash(
        env=task_env(FT_MARGIN="{{ '' if params.margin is none else params.margin }}"),
        append_env=True,
        skip_on_exit_code=EXIT_SKIPPED,
        outlets=[CHAMPION_ALIAS],
    )
    def promote(challenger: dict[str, Any], **context: Any) -> str:
        """``fasttrack models promote``: exit 0 (the alias moved) or 98 (no champion yet: the challenger took it)
        is a success that updates the champion asset; 99 (not better, the champion stays) is skipped."""
        name, version = str(challenger["name"]), str(challenger["version"])
        if not version.isdigit():
            raise ValueError(f"not a registered version: {version!r}")
        # Recorded only if the task succeeds: a skipped or failed promotion updates no asset.
        context["outlet_events"][CHAMPION_ALIAS].add(champion_asset(name), extra={"version": version})
        return f"""margin=(); if [ -n "$FT_MARGIN" ]; then margin=(--margin "$FT_MARGIN"); fi
status=0
"$FASTTRACK" models promote {shlex.quote(name)} --challenger {version} "${{margin[@]}}" || status=$?
if [ "$status" -eq {EXIT_FIRST_CHAMPION} ]; then echo "no champion yet: version {version} is the first"; exit 0; fi
exit "$status"
"""

    @task.external_python(python=PYTHON, expect_airflow=False, trigger_rule="none_failed")
    def record(challenger: dict[str, object]) -> dict[str, object]:
        """The decision as the registry recorded it (the alias holder and the challenger's promotion tags)."""
        import fasttrack.api
        from fasttrack.errors import FastTrackError

        name, version = str(challenger["name"]), str(challenger["version"])
        try:
            details = fasttrack.api.describe_version(name, version)
            champion = fasttrack.api.describe_version(name, "champion").version
        except FastTrackError as exc:
            print(f"error: {exc}")
            raise SystemExit(1) from None
        prefix = "fasttrack.promotion."
        decision = {k.removeprefix(prefix): v for k, v in details.tags.items() if k.startswith(prefix)}
        kept = "took" if champion == version else "did not take"
        print(f"{name} version {version} {kept} @champion, held by version {champion}: {decision}")
        return {"name": name, "challenger": version, "champion": champion, "promotion": decision}

    trained = train(
        data="{{ params.data or '' }}",
        sql="{{ params.sql or '' }}",
        db="{{ params.db or '' }}",
        target="{{ params.target or '' }}",
        name="{{ params.name }}",
        config="{{ params.config or '' }}",
        actor=ACTOR,
    )
    check_data() >> trained
    promote(trained) >> record(trained)


fasttrack_retrain()
