"""``fasttrack_score``: score a configured input with the current champion, into a dated output.

``score`` runs ``fasttrack predict`` with ``models:/NAME@champion`` on the input (a path or a URL) and writes
``OUTPUT/YYYY-MM-DD/NAME.parquet``, the day the run was due. ``fasttrack predict`` writes a temporary file and
renames it into place once every row is scored, so the output is whole or absent, and a rerun on the same day
replaces it whole. The task's result is the output's path.

Runs when a promotion updates the ``models:/NAME@champion`` asset (``fasttrack_retrain``), on
``FASTTRACK_SCORE_SCHEDULE`` (cron) when set, or when triggered with params. No catch-up, retries with back-off, a
1-hour run timeout. docs/orchestration.md says how to deploy it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, dag, task
from fasttrack_common import DAG_DEFAULTS, MODEL_NAME, champion_asset, schedule, task_env

#: The run's defaults, read at parse time (docs/orchestration.md): what to score, where the dated outputs go, and
#: the cron schedule.
INPUT = os.environ.get("FASTTRACK_SCORE_INPUT", "")
OUTPUT = os.environ.get("FASTTRACK_SCORE_OUTPUT", "")
CRON = os.environ.get("FASTTRACK_SCORE_SCHEDULE", "")


@dag(
    dag_id="fasttrack_score",
    description="Score the configured input with the champion, atomically, into a dated output.",
    schedule=schedule(champion_asset(MODEL_NAME), CRON),
    dagrun_timeout=timedelta(hours=1),
    **DAG_DEFAULTS,
    doc_md=__doc__,
    params={
        "input": Param(INPUT, type=["null", "string"], description="Data to score: a path or a URL."),
        "output": Param(OUTPUT, type=["null", "string"], description="Folder of the dated outputs."),
        "name": Param(MODEL_NAME, type="string", minLength=1, description="Registered model whose champion scores."),
    },
)
def fasttrack_score() -> None:
    @task.bash(
        env=task_env(
            FT_INPUT="{{ params.input or '' }}",
            FT_OUTPUT="{{ params.output or '' }}",
            FT_NAME="{{ params.name }}",
            # The day the run was due: an asset-triggered run has no logical date, only the time it was queued for.
            FT_DAY="{{ (dag_run.logical_date or dag_run.run_after) | ds }}",
        ),
        append_env=True,
    )
    def score() -> str:
        """``fasttrack predict`` with the champion; prints the output's path last (the task's XCom)."""
        return """set -eu
[ -n "$FT_INPUT" ] || { echo "error: nothing to score: set FASTTRACK_SCORE_INPUT or the input param"; exit 1; }
[ -n "$FT_OUTPUT" ] || { echo "error: no output folder: set FASTTRACK_SCORE_OUTPUT or the output param"; exit 1; }
folder="$FT_OUTPUT/$FT_DAY"
mkdir -p "$folder"
"$FASTTRACK" predict --model "models:/$FT_NAME@champion" --data "$FT_INPUT" --out "$folder/$FT_NAME.parquet"
echo "$folder/$FT_NAME.parquet"
"""

    score()


fasttrack_score()
