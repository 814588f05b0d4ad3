#!/usr/bin/env bash
# fasttrack_retrain without Airflow, for cron or a CI job: the DAG's steps as fasttrack commands, in the same order,
# read from the same variables (docs/orchestration.md, "Without Airflow"). Exit status: 0 when the run is done (the
# champion moved, or was kept because the challenger was not better), else the failing step's status. After a
# promotion, deploy/cron/score.sh scores with the new champion when FASTTRACK_SCORE_INPUT is set.
set -uo pipefail

python=${FASTTRACK_PYTHON:-/opt/fasttrack/.venv/bin/python}
fasttrack=$(dirname "$python")/fasttrack
name=${FASTTRACK_MODEL_NAME:-sample}
data=${FASTTRACK_RETRAIN_DATA:?set FASTTRACK_RETRAIN_DATA to the new training data (a path or a URL)}
# Who moves the alias, as `fasttrack models history` shows it.
export FASTTRACK_ACTOR=${FASTTRACK_ACTOR:-cron:$(hostname)/$(date -u +%Y-%m-%dT%H:%M:%SZ)}

# 1. The data against the champion's schema: 0 fits, 99 no champion yet (first run), 1 breaking changes (one line
#    each above), 2 a usage error.
"$fasttrack" check "$data" --against "models:/$name@champion" --for train --skip-missing
status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 99 ]; then exit "$status"; fi

# 2. Train, evaluate and register a challenger: 0 registered (the last line names its version), 1 the quality gate
#    failed or the data cannot train a model.
args=(--data "$data" --name "$name")
if [ -n "${FASTTRACK_RETRAIN_CONFIG:-}" ]; then args+=(--config "$FASTTRACK_RETRAIN_CONFIG"); fi
if [ -n "${FASTTRACK_RETRAIN_TARGET:-}" ]; then args+=(--target "$FASTTRACK_RETRAIN_TARGET"); fi
output=$("$fasttrack" train "${args[@]}") || { status=$?; echo "$output"; exit "$status"; }
echo "$output"
version=$(sed -n 's/^registered .* version \([0-9][0-9]*\).*$/\1/p' <<<"$output" | tail -n 1)
if [ -z "$version" ]; then echo "error: fasttrack train registered no version" >&2; exit 1; fi

# 3. The promotion gate (its margin: FASTTRACK_PROMOTION_MARGIN): 0 the alias moved, 98 no champion yet and the
#    challenger took it, 99 not better (the champion stays: an outcome, not a failure), 1 an error.
"$fasttrack" models promote "$name" --challenger "$version"
status=$?
case "$status" in
    0 | 98) ;;
    99) exit 0 ;;
    *) exit "$status" ;;
esac

# 4. As the champion asset starts fasttrack_score: score with the new champion.
if [ -n "${FASTTRACK_SCORE_INPUT:-}" ]; then
    exec "$(dirname "$0")/score.sh"
fi
