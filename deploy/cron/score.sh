#!/usr/bin/env bash
# fasttrack_score without Airflow, for cron or a CI job: score FASTTRACK_SCORE_INPUT with the champion into
# FASTTRACK_SCORE_OUTPUT/YYYY-MM-DD/NAME.parquet (docs/orchestration.md, "Without Airflow"). `fasttrack predict`
# writes a temporary file renamed into place once every row is scored: the output is whole or absent. Exit status:
# 0 scored (the last line is the output's path), else fasttrack predict's (1: the input or the model failed).
set -euo pipefail

python=${FASTTRACK_PYTHON:-/opt/fasttrack/.venv/bin/python}
fasttrack=$(dirname "$python")/fasttrack
name=${FASTTRACK_MODEL_NAME:-sample}
input=${FASTTRACK_SCORE_INPUT:?set FASTTRACK_SCORE_INPUT to the data to score (a path or a URL)}
folder=${FASTTRACK_SCORE_OUTPUT:?set FASTTRACK_SCORE_OUTPUT to the folder of the dated outputs}/$(date -u +%Y-%m-%d)

mkdir -p "$folder"
"$fasttrack" predict --model "models:/$name@champion" --data "$input" --out "$folder/$name.parquet"
echo "$folder/$name.parquet"
