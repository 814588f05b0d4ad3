"""``fasttrack check`` as a scheduler runs it: a real process, its exit status and its lines.

0: the data fits (notes on stdout); 1: breaking changes, one line each on stdout and one ``error:`` line on stderr;
99 with ``--skip-missing``: no version to check against yet (what Airflow's bash tasks show as skipped).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import mixed_frame, one_line_error, run_cli, trained_home

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_home(tmp_path_factory.getbasetemp())


def test_breaking_changes_exit_1_with_one_line_each(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    frame = mixed_frame().drop(columns=["member"])  # the training data, changed
    frame["colour"] = frame.index % 4  # categories turned numbers: retraining would make it numeric
    frame.to_csv(path, index=False)
    result = run_cli("check", str(path), "--against", "models:/mixed@champion", home=home)
    one_line_error(result, f"error: {path} does not fit mixed version 1 as data to train on: 2 breaking changes")
    assert result.stdout.splitlines()[1:] == [
        "breaking: colour: kind changed: categorical in training, numeric here (e.g. 0)",
        "breaking: member: missing: the model was trained on this boolean feature",
    ]


def test_compatible_data_exits_0(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.parquet"
    mixed_frame(rows=200, seed=2).to_parquet(path)
    result = run_cli("check", str(path), "--against", "models:/mixed@champion", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"compatible: {path} fits mixed version 1 as data to train on"


def test_no_version_yet_exits_99_with_skip_missing(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    mixed_frame(rows=20).to_csv(path, index=False)
    failed = run_cli("check", str(path), "--against", "models:/fresh@champion", home=home)
    one_line_error(failed, "error: no registered model 'fresh'")
    skipped = run_cli("check", str(path), "--against", "models:/fresh@champion", "--skip-missing", home=home)
    assert skipped.returncode == 99, skipped.stderr
    assert skipped.stdout.startswith("nothing to check against: no registered model 'fresh'")
