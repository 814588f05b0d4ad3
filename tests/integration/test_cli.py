"""The ``fasttrack`` command end to end on real public data, and its failures as one readable line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from support import one_line_error, run_cli

pytestmark = pytest.mark.integration


@pytest.mark.datasets
def test_titanic_train_list_evaluate_predict(datasets_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    titanic = str(datasets_dir / "titanic.csv")
    trained = run_cli("train", "--data", titanic, "--target", "Survived", "--model", "random_forest", home=home)
    assert trained.returncode == 0, trained.stderr
    assert "registered titanic version 1 (alias: champion)" in trained.stdout
    assert "PassengerId" in trained.stdout and "identifier" in trained.stdout  # the cleaning report says so

    listed = run_cli("models", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "titanic" in listed.stdout and "champion" in listed.stdout and "roc_auc" in listed.stdout

    evaluated = run_cli("evaluate", "--model", "models:/titanic@champion", "--data", titanic, home=home)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy" in evaluated.stdout and "at registration" in evaluated.stdout

    scored = tmp_path / "scored.csv"
    predicted = run_cli("predict", "--model", "models:/titanic/1", "--data", titanic, "--out", str(scored), home=home)
    assert predicted.returncode == 0, predicted.stderr
    frame = pd.read_csv(scored)
    assert len(frame) == 891
    assert set(frame["prediction"]) <= {0, 1}
    # A random forest fitted on 80 % of these rows agrees with most of their labels.
    assert (frame["prediction"] == frame["Survived"]).mean() > 0.8


@pytest.mark.datasets
def test_penguins_json_three_classes_with_probabilities(datasets_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    penguins = str(datasets_dir / "penguins.json")
    trained = run_cli("train", "--data", penguins, "--target", "Species", "--model", "linear", home=home)
    assert trained.returncode == 0, trained.stderr
    assert "registered penguins version 1" in trained.stdout

    scored = tmp_path / "scored.parquet"
    predicted = run_cli(
        "predict",
        "--data",
        penguins,
        "--out",
        str(scored),
        "--probabilities",
        home=home,
        FASTTRACK_MODEL="models:/penguins@champion",
    )
    assert predicted.returncode == 0, predicted.stderr
    frame = pd.read_parquet(scored)
    assert len(frame) == 344
    assert set(frame["prediction"]) == {"Adelie", "Chinstrap", "Gentoo"}
    probabilities = frame[["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]]
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-6).all()
    labelled = frame.dropna(subset=["Species"])
    assert (labelled["prediction"] == labelled["Species"]).mean() > 0.95


def test_quality_gate_failure_exits_1_and_registers_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_cli("train", "-c", "configs/sample.yaml", "--threshold", "accuracy=0.999", home=home)
    assert result.returncode == 1
    assert "quality gate failed, model not registered: accuracy" in result.stderr
    assert "no registered models yet" in run_cli("models", "list", home=home).stdout


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["train", "--data", "no/such/file.csv", "--target", "y"], 1, ["file not found", "no/such/file.csv"]),
        (["train", "--data", "data/sample/classification.csv", "--target", "nope"], 1, ["nope", "feature_1"]),
        (["train", "--data", "data/sample/classification.csv"], 2, ["--target"]),
        (["train", "-c", "configs/sample.yaml", "--param", "no_such_param=1"], 2, ["no_such_param"]),
        (["train", "-c", "configs/sample.yaml", "--test-size", "1.5"], 2, ["test_size"]),
        (["train", "-c", "missing.yaml"], 2, ["config file not found"]),
        (["predict", "--model", "models:/nothing@champion", "--data", "x.csv", "--out", "y.csv"], 1, ["nothing"]),
        (["models", "promote", "nothing", "1"], 1, ["nothing"]),
        (["ingest", "README.md"], 1, ["README.md"]),
    ],
)
def test_failures_are_one_readable_line(args: list[str], code: int, needles: list[str], tmp_path: Path) -> None:
    one_line_error(run_cli(*args, home=tmp_path / "home"), *needles, code=code)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("train", "--model", "svm", home=tmp_path / "home")
    assert result.returncode == 2
    assert "svm" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "train", "--data", "no/such/file.csv", "--target", "y", home=tmp_path / "home")
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_ingest_writes_clean_data_and_schema(tmp_path: Path) -> None:
    out, schema = tmp_path / "clean.parquet", tmp_path / "schema.json"
    result = run_cli(
        "ingest",
        "data/sample/classification.csv",
        "--target",
        "label",
        "--out",
        str(out),
        "--schema-out",
        str(schema),
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    assert "dropped 16 exact duplicate rows" in result.stdout
    assert len(pd.read_parquet(out)) == 4000 - 16
    assert '"feature_1"' in schema.read_text(encoding="utf-8")
    assert "fingerprint:" in result.stdout
