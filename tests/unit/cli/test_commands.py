"""Each command parses its options, calls one API function and renders the result: run in-process on a real store.

Exit codes and one-line errors of the installed ``fasttrack`` process are checked in tests/integration/test_cli.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from fasttrack.cli import app
from fasttrack.errors import AliasError, ClusterError, ConfigError, ModelNotFoundError, QualityGateError
from support import REPO

SAMPLE = str(REPO / "data" / "sample" / "classification.csv")
CONFIG = str(REPO / "configs" / "sample.yaml")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


def invoke(home: Path, *args: str) -> Any:
    env: dict[str, str | None] = {"FASTTRACK_HOME": str(home), "FASTTRACK_TRACKING_URI": "", "FASTTRACK_MODEL": ""}
    env |= {"COLUMNS": "200", "MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}  # None: unset while invoked
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)


@pytest.fixture(scope="module")
def trained(home: Path) -> Any:
    result = invoke(home, "train", "-c", CONFIG, "--data", SAMPLE, "--cv-folds", "0", "--param", "C=0.5")
    assert result.exit_code == 0, result.output
    return result


def test_train_overrides_the_config_and_reports_the_registration(trained: Any, home: Path) -> None:
    assert "registered sample version 1 (alias: champion)" in trained.stdout
    assert "roc_auc *" in trained.stdout and "confusion matrix" in trained.stdout
    from fasttrack.api import describe_version

    details = describe_version("sample", "1", settings=_settings(home))
    run = _run(home, details.run_id)
    assert run.data.params["param.C"] == "0.5" and run.data.params["cv_folds"] == "0"
    assert run.data.params["threshold.accuracy"] == "0.8"  # from the config, kept


def test_train_shows_the_calibration_and_whether_the_server_will_trust_it(trained: Any, home: Path) -> None:
    from fasttrack.api import describe_version

    run = _run(home, describe_version("sample", "1", settings=_settings(home)).run_id)
    error = run.data.metrics["calibration_error"]  # logged to MLflow, with the reliability curve beside the plots
    shown = re.search(r"calibration: ECE (\d\.\d{4}) .*; accuracy estimate (trusted|not trusted): ", trained.stdout)
    assert shown, trained.stdout
    assert float(shown.group(1)) == pytest.approx(error, abs=5e-5)
    assert shown.group(2) == ("trusted" if error <= 0.05 else "not trusted")  # FASTTRACK_CALIBRATION_MAX_ERROR
    from mlflow import MlflowClient

    plots = MlflowClient(tracking_uri=_settings(home).resolved_tracking_uri()).list_artifacts(run.info.run_id, "plots")
    assert "plots/reliability_curve.png" in {artifact.path for artifact in plots}


def test_a_failed_gate_is_an_error_after_the_metrics(trained: Any, home: Path) -> None:
    failed = invoke(home, "train", "-c", CONFIG, "--data", SAMPLE, "--cv-folds", "0", "--threshold", "accuracy=0.999")
    assert isinstance(failed.exception, QualityGateError)
    assert "quality gate failed" in str(failed.exception) and "accuracy" in failed.stdout


def test_train_needs_a_config_or_data_and_target(home: Path) -> None:
    result = invoke(home, "train", "--data", SAMPLE)
    assert isinstance(result.exception, ConfigError) and "--target" in str(result.exception)


def test_evaluate_shows_this_data_beside_registration(trained: Any, home: Path) -> None:
    result = invoke(home, "evaluate", "--data", SAMPLE, "-m", "models:/sample@champion")
    assert result.exit_code == 0, result.output
    assert "sample v1 on" in result.stdout and "at registration" in result.stdout
    # The sample file holds the rows the model trained on: the command says how many, on stderr.
    assert "warning:" in result.stderr and "are rows the model was trained on" in result.stderr
    assert "warning" not in result.stdout


def test_predict_writes_the_file_and_says_how_fast(trained: Any, home: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.csv"
    result = invoke(home, "predict", "--data", SAMPLE, "--out", str(output), "-m", "models:/sample/1")
    assert result.exit_code == 0, result.output
    assert f"{len(pd.read_csv(SAMPLE))} predictions written to {output} (onnx" in result.stdout
    assert "prediction" in pd.read_csv(output).columns


def test_predict_takes_the_runtime_and_the_former_engine_values(trained: Any, home: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.csv"
    runtime = invoke(
        home, "predict", "--data", SAMPLE, "--out", str(output), "-m", "models:/sample/1", "--runtime", "sklearn"
    )
    assert runtime.exit_code == 0 and "(sklearn," in runtime.stdout, runtime.output
    former = invoke(
        home, "predict", "--data", SAMPLE, "--out", str(output), "-m", "models:/sample/1", "--engine", "sklearn"
    )
    assert former.exit_code == 0 and "(sklearn," in former.stdout, former.output
    assert "--engine sklearn is now --runtime sklearn" in former.stderr


def test_every_dask_command_names_an_unreachable_scheduler(home: Path, tmp_path: Path) -> None:
    address = "tcp://127.0.0.1:9"  # nothing listens on the discard port: refused at once
    dask = ("--engine", "dask", "--scheduler", address)
    commands = [
        ("ingest", SAMPLE, "--target", "label", *dask),
        ("train", "-c", CONFIG, *dask),
    ]
    for command in commands:
        result = invoke(home, *command)
        assert isinstance(result.exception, ClusterError), result.output
        assert str(result.exception).startswith(f"cannot reach the Dask scheduler at {address}: nothing listens")
    sql = invoke(home, "train", "--sql", "select 1", "--db", "sqlite://", "--target", "y", "--name", "q", *dask)
    assert isinstance(sql.exception, ConfigError) and "not SQL" in str(sql.exception)


def test_models_list_show_and_promote(trained: Any, home: Path) -> None:
    listed = invoke(home, "models", "list")
    assert listed.exit_code == 0 and "sample" in listed.stdout and "champion" in listed.stdout
    shown = invoke(home, "models", "show", "sample")
    assert shown.exit_code == 0 and "sample version 1" in shown.stdout and "data lineage" in shown.stdout
    promoted = invoke(home, "models", "promote", "sample", "1")
    assert promoted.exit_code == 0 and "already version 1: nothing to do" in promoted.stdout
    both = invoke(home, "models", "promote", "sample", "1", "--challenger", "2")
    assert isinstance(both.exception, ConfigError) and "give one" in str(both.exception)


def test_promote_shows_the_interval_and_the_rows_and_show_keeps_them(trained: Any, home: Path) -> None:
    second = invoke(home, "train", "-c", CONFIG, "--data", SAMPLE, "--cv-folds", "0", "--param", "C=0.01")
    assert second.exit_code == 0, second.output
    promoted = invoke(home, "models", "promote", "sample", "2", "--margin", "0.5")
    assert promoted.exit_code == 99, promoted.output  # nothing beats a model by 0.5 ROC AUC: not better
    assert "95% interval" in promoted.stdout and "1000 paired bootstrap resamples" in promoted.stdout
    assert "0 left out as training rows" in promoted.stdout
    shown = invoke(home, "models", "show", "sample", "2")
    assert shown.exit_code == 0, shown.output
    for key in ("interval_low:", "interval_high:", "confidence: 0.95", "excluded: 0", "rows:", "improvement:"):
        assert key in shown.stdout, key


def test_ingest_writes_the_clean_data_and_schema(tmp_path: Path, home: Path) -> None:
    data, schema = tmp_path / "clean.jsonl", tmp_path / "schema.json"
    result = invoke(home, "ingest", SAMPLE, "--target", "label", "--out", str(data), "--schema-out", str(schema))
    assert result.exit_code == 0, result.output
    assert "fingerprint:" in result.stdout and "feature_1" in result.stdout
    assert len(pd.read_json(data, lines=True)) == len(pd.read_csv(SAMPLE).drop_duplicates())
    assert json.loads(schema.read_text(encoding="utf-8"))["target"]["name"] == "label"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: nothing left beside the files


def _settings(home: Path) -> Any:
    from support import serving_settings

    return serving_settings(home)


def _run(home: Path, run_id: str | None) -> Any:
    from mlflow import MlflowClient

    uri = _settings(home).resolved_tracking_uri()
    return MlflowClient(tracking_uri=uri).get_run(str(run_id))


@pytest.fixture(scope="module")
def contested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home of its own: ``sample`` version 1 (logistic regression, the champion) and 2 (a one-split stump)."""
    home = tmp_path_factory.mktemp("cli-contested")
    quick = ("--data", SAMPLE, "--target", "label", "--name", "sample", "--cv-folds", "0")
    first = invoke(home, "train", *quick, "--model", "linear")
    assert first.exit_code == 0, first.output
    stump = ("--model", "random_forest", "--param", "n_estimators=1", "--param", "max_depth=1")
    second = invoke(home, "train", *quick, *stump)
    assert second.exit_code == 0 and "version 2" in second.stdout, second.output
    return home


def test_promote_exit_codes_name_each_outcome(contested: Path) -> None:
    from fasttrack import exit_codes

    worse = invoke(contested, "models", "promote", "sample", "2")
    assert worse.exit_code == exit_codes.NOT_BETTER == 99, worse.output
    assert worse.exception is None or isinstance(worse.exception, SystemExit)
    assert "not promoted: sample@champion stays at version 1: the challenger is worse" in worse.stderr
    assert "roc_auc" in worse.stdout  # the table of both scores

    first = invoke(contested, "models", "promote", "sample", "2", "--alias", "staging")
    assert first.exit_code == exit_codes.NO_CHAMPION == 98, first.output
    assert "promoted sample@staging -> version 2 (no version held it: taken without a comparison)" in first.stdout

    forced = invoke(contested, "models", "promote", "sample", "2", "--force")
    assert forced.exit_code == exit_codes.OK, forced.output
    assert "promoted sample@champion -> version 2 (forced)" in forced.stdout
    again = invoke(contested, "models", "promote", "sample", "2")
    assert again.exit_code == exit_codes.OK and "already version 2: nothing to do" in again.stdout

    helped = invoke(contested, "models", "promote", "--help")
    assert "Exit codes: 0 the alias moved" in " ".join(helped.stdout.split())
    assert "99 the challenger was not better" in " ".join(helped.stdout.split())
    assert "98 no version held the alias" in " ".join(helped.stdout.split())


def test_rollback_and_history(contested: Path) -> None:
    # Whatever ran before: @champion at version 2 after a forced move, @staging first set by a promotion.
    invoke(contested, "models", "rollback", "sample", "--to", "1")
    invoke(contested, "models", "promote", "sample", "2", "--force")
    invoke(contested, "models", "promote", "sample", "2", "--alias", "staging")
    back = invoke(contested, "models", "rollback", "sample")
    assert back.exit_code == 0, back.output
    assert "rolled back sample@champion: version 2 -> version 1" in back.stdout
    assert "servers following models:/sample@champion pick it up" in back.stdout

    shown = invoke(contested, "models", "history", "sample", "--alias", "champion")
    assert shown.exit_code == 0, shown.output
    # Cells of the table's rows: time, alias, version, decision, by, scores.
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.stdout.splitlines() if "│ @champion" in line]
    assert rows[0][2:4] == ["- -> 1", "registered"]
    assert [row[2:4] for row in rows[-2:]] == [["1 -> 2", "forced"], ["2 -> 1", "rollback"]]
    assert re.fullmatch(r"roc_auc: v2 0\.\d{4} vs v1 0\.\d{4}", rows[-2][5]), rows[-2]
    assert rows[-1][5] == ""  # a rollback compares nothing
    assert "now: sample@champion -> version 1" in shown.stdout

    lines = invoke(contested, "models", "history", "sample", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert {e["alias"] for e in events} == {"champion", "staging"} and events[0]["by"]
    assert events[-1]["decision"] == "rollback" and events[-1]["before"] == "2" and events[-1]["after"] == "1"

    to = invoke(contested, "models", "rollback", "sample", "--to", "1")
    assert to.exit_code == 0 and "already version 1: nothing to do" in to.stdout

    nothing = invoke(contested, "models", "rollback", "sample", "--alias", "staging")
    assert isinstance(nothing.exception, AliasError)
    assert "took sample@staging when no version held it" in str(nothing.exception)
    missing = invoke(contested, "models", "rollback", "sample", "--to", "7")
    assert isinstance(missing.exception, ModelNotFoundError) and "version 7 of sample" in str(missing.exception)

    show = invoke(contested, "models", "show", "sample")
    assert "every move of its aliases: fasttrack models history sample" in show.stdout
