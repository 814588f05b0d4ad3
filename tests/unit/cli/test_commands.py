"""Each command parses its options, calls one API function and renders the result: run in-process on a real store.

Exit codes and one-line errors of the installed ``fasttrack`` process are checked in tests/integration/test_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from fasttrack.cli import app
from fasttrack.errors import ConfigError, PromotionRejectedError, QualityGateError
from support import REPO

SAMPLE = str(REPO / "data" / "sample" / "classification.csv")
CONFIG = str(REPO / "configs" / "sample.yaml")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


def invoke(home: Path, *args: str) -> Any:
    env = {"FASTTRACK_HOME": str(home), "FASTTRACK_TRACKING_URI": "", "FASTTRACK_MODEL": "", "COLUMNS": "200"}
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
    assert isinstance(promoted.exception, PromotionRejectedError)  # nothing beats a model by 0.5 ROC AUC
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
