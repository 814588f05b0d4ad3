"""``fasttrack.check_data`` and ``fasttrack check`` against a registered version, on a real embedded store.

The installed command's exit codes and output lines are checked in tests/integration/test_check_data.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import fasttrack
from fasttrack.cli import app
from fasttrack.errors import ConfigError, DataError, ModelNotFoundError
from support import mixed_frame, serving_settings


def invoke(home: Path, *args: str) -> Any:
    env = {"FASTTRACK_HOME": str(home), "FASTTRACK_TRACKING_URI": "", "FASTTRACK_MODEL": "", "COLUMNS": "80"}
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)


@pytest.fixture
def new_data(tmp_path: Path) -> Path:
    path = tmp_path / "new.csv"
    mixed_frame(rows=300, seed=11).to_csv(path, index=False)
    return path


def test_check_data_finds_the_version_and_what_differs(model_home: Path, tmp_path: Path) -> None:
    frame = mixed_frame().drop(columns=["member"])  # the training data, changed
    frame["channel"] = ["web", "shop"] * (len(frame) // 2)
    frame.loc[0, "colour"] = "violet"
    path = tmp_path / "changed.parquet"
    frame.to_parquet(path)
    steps: list[str] = []
    found = fasttrack.check_data(
        path, against="models:/mixed@champion", settings=serving_settings(model_home), on_step=steps.append
    )
    assert (found.name, found.version, found.model_uri) == ("mixed", "1", "models:/mixed@champion")
    assert (found.source, found.rows, found.purpose) == (str(path), 400, "train")
    assert not found.compatible
    assert [str(v) for v in found.breaking] == ["member: missing: the model was trained on this boolean feature"]
    assert [str(v) for v in found.notes] == [
        "colour: 1 categories never seen in training: 'violet' (1 rows)",
        "channel: new column: the model never saw it; retraining would use it as a feature",
    ]
    assert steps == ["finding the model", f"reading {path}", "comparing with the training schema"]


def test_check_data_for_scoring_needs_no_target(model_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "to-score.csv"
    mixed_frame(rows=50, seed=3).drop(columns=["label"]).to_csv(path, index=False)
    settings = serving_settings(model_home)
    assert fasttrack.check_data(path, against="models:/mixed/1", purpose="score", settings=settings).compatible
    trained = fasttrack.check_data(path, against="models:/mixed/1", settings=settings)
    assert [str(v) for v in trained.breaking] == ["label: the target column is missing: there is nothing to train on"]


def test_check_data_refuses_bad_arguments_before_reading(model_home: Path, new_data: Path) -> None:
    settings = serving_settings(model_home)
    with pytest.raises(ConfigError, match="either a data file or an SQL query"):
        fasttrack.check_data(new_data, sql="SELECT 1", db="sqlite://", settings=settings)
    with pytest.raises(ConfigError, match="purpose must be train or score"):
        fasttrack.check_data(new_data, purpose="predict", settings=settings)  # type: ignore[arg-type]
    with pytest.raises(ModelNotFoundError, match="no registered model 'nobody'"):
        fasttrack.check_data(new_data, against="models:/nobody@champion", settings=settings)


def test_check_command_passes_compatible_data_with_its_notes(model_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "wider.csv"
    mixed_frame(rows=300, seed=11).assign(amount=lambda f: f["amount"] * 3).to_csv(path, index=False)
    result = invoke(model_home, "check", str(path), "--against", "models:/mixed@champion")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path} (300 rows) against mixed version 1, as data to train on: 0 breaking changes, 1 notes"
    assert lines[1].startswith("note: amount: ") and "values outside the training range" in lines[1]
    assert lines[-1] == f"compatible: {path} fits mixed version 1 as data to train on"


def test_check_command_lists_each_breaking_change_on_its_own_line(model_home: Path, tmp_path: Path) -> None:
    frame = mixed_frame(rows=300, seed=11).drop(columns=["colour"])
    frame["amount"] = frame["amount"].astype(object).where(frame.index >= 2, "n/a-ish")
    frame["label"] = frame["label"].replace({"no": "unsure"})
    path = tmp_path / "broken-with-a-long-name-that-a-narrow-terminal-would-wrap.csv"
    frame.to_csv(path, index=False)
    result = invoke(model_home, "check", str(path), "--against", "models:/mixed@champion")
    assert isinstance(result.exception, DataError), result.output
    assert str(result.exception) == (f"{path} does not fit mixed version 1 as data to train on: 3 breaking changes")
    breaking = [line for line in result.stdout.splitlines() if line.startswith("breaking: ")]
    assert [line.split(":")[1].strip() for line in breaking] == ["amount", "colour", "label"]
    assert breaking[0].startswith("breaking: amount: kind changed: numeric in training, categorical here")
    assert "expected a number, got 'n/a-ish' (2 rows)" in breaking[0]  # one line however wide: no wrapping


def test_check_command_skips_when_there_is_nothing_to_check_against(model_home: Path, new_data: Path) -> None:
    missing = invoke(model_home, "check", str(new_data), "--against", "models:/nobody@champion")
    assert isinstance(missing.exception, ModelNotFoundError)
    skipped = invoke(model_home, "check", str(new_data), "--against", "models:/nobody@champion", "--skip-missing")
    assert skipped.exit_code == 99, skipped.output
    assert skipped.stdout.startswith("nothing to check against: no registered model 'nobody'")


def test_check_command_for_scoring(model_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "to-score.json"
    pd.DataFrame(mixed_frame(rows=20, seed=5).drop(columns=["label"])).to_json(path, orient="records")
    result = invoke(model_home, "check", str(path), "--against", "models:/mixed/1", "--for", "score")
    assert result.exit_code == 0, result.output
    assert "as data to score: 0 breaking changes" in result.stdout
