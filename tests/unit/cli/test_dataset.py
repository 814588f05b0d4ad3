"""``fasttrack dataset from-log`` on a registered model's log: exactly the labelled rows, typed for training, and
a file ``fasttrack train`` trains on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from fasttrack.errors import ConfigError, DataError, ModelNotFoundError
from inference_log import START, invoke, log_served, mixed_home, write_feedback
from support import mixed_frame


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_home(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def log(home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Version 1 served 300 rows on 1 December, version 2 200 rows on 2 December; labels for every third row
    (twice for some: the second is ignored), a label for a prediction outside the log, and one null label."""
    root = tmp_path_factory.mktemp("dataset-log")
    first_ids, _ = log_served(root, home, "1", mixed_frame(300, seed=21))
    second = mixed_frame(200, seed=22)
    second_ids, _ = log_served(root, home, "2", second, start=START + dt.timedelta(days=1))
    truth = {
        **dict(zip(first_ids, mixed_frame(300, seed=21)["label"], strict=True)),
        **dict(zip(second_ids, second["label"], strict=True)),
    }
    chosen = [i for n, i in enumerate([*first_ids, *second_ids]) if n % 3 == 0]
    later = START + dt.timedelta(days=2)
    write_feedback(root, "mixed", "2", chosen, [truth[i] for i in chosen], times=[later] * len(chosen))
    wrong = {"yes": "no", "no": "yes"}
    write_feedback(
        root,
        "mixed",
        "2",
        [*chosen[:10], "elsewhere-1", first_ids[1]],
        [*(wrong[truth[i]] for i in chosen[:10]), "yes", None],
        times=[later + dt.timedelta(hours=1)] * 12,
    )
    return root, {i: truth[i] for i in chosen}


def test_writes_exactly_the_labelled_rows_in_the_training_types(
    home: Path, log: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, labelled = log
    output = tmp_path / "labelled.parquet"
    result = invoke(home, "dataset", "from-log", "mixed", "--log", str(root), "--out", str(output))
    assert result.exit_code == 0, result.output
    assert "500 predictions of mixed" in result.stdout
    assert f"{len(labelled)} labelled, {500 - len(labelled)} without a label (left out)" in result.stdout
    assert (
        "10 repeats of an id already labelled (the first wins), 1 for predictions outside the period" in result.stdout
    )
    written = pd.read_parquet(output)
    assert list(written.columns) == ["amount", "colour", "member", "label"]
    assert len(written) == len(labelled)
    assert str(written["member"].dtype) == "bool" and str(written["amount"].dtype) == "float64"
    assert sorted(written["label"]) == sorted(labelled.values())  # the first label of each id, not the repeat
    assert set(written["colour"]) <= {"red", "green", "blue"}


def test_the_period_and_csv_output(home: Path, log: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, labelled = log
    output = tmp_path / "day-one.csv"
    result = invoke(
        home,
        "dataset",
        "from-log",
        "mixed",
        "--out",
        str(output),
        "--since",
        "2026-12-01",
        "--until",
        "2026-12-02",
        FASTTRACK_INFERENCE_LOG=str(root),
    )
    assert result.exit_code == 0, result.output
    assert "300 predictions of mixed" in result.stdout and "(versions 1)" in result.stdout
    assert len(pd.read_csv(output)) == sum(1 for i in labelled if i.startswith("v1-"))


def test_fasttrack_train_trains_on_it(home: Path, log: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    output = tmp_path / "retrain.parquet"
    assert invoke(home, "dataset", "from-log", "mixed", "--log", str(log[0]), "--out", str(output)).exit_code == 0
    trained = invoke(
        tmp_path / "retrain-home",
        "train",
        "--data",
        str(output),
        "--target",
        "label",
        "--name",
        "retrained",
        "--model",
        "linear",
        "--cv-folds",
        "0",
    )
    assert trained.exit_code == 0, trained.output
    assert "registered retrained version 1" in trained.stdout
    from fasttrack.data.schema import Schema
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import resolve_model
    from support import serving_settings

    retrained = load_model_folder(
        resolve_model("models:/retrained/1", serving_settings(tmp_path / "retrain-home")).path
    )
    original = load_model_folder(resolve_model("models:/mixed/2", serving_settings(home)).path)
    kinds = {f.name: f.kind for f in retrained.schema.features}
    assert kinds == {f.name: f.kind for f in original.schema.features}
    assert isinstance(retrained.schema, Schema)


def test_failures_are_one_readable_error(home: Path, log: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root = str(log[0])
    out = str(tmp_path / "x.parquet")
    missing = invoke(home, "dataset", "from-log", "mixed", "--out", out)
    assert isinstance(missing.exception, ConfigError) and "FASTTRACK_INFERENCE_LOG" in str(missing.exception)
    nowhere = invoke(home, "dataset", "from-log", "mixed", "--log", str(tmp_path / "nowhere"), "--out", out)
    assert isinstance(nowhere.exception, DataError) and "no inference log at" in str(nowhere.exception)
    nothing = invoke(home, "dataset", "from-log", "mixed", "--log", root, "--out", out, "--since", "2027-01-01")
    assert isinstance(nothing.exception, DataError) and "no predictions of mixed" in str(nothing.exception)
    unlabelled = invoke(
        home,
        "dataset",
        "from-log",
        "mixed",
        "--log",
        root,
        "--out",
        out,
        "--since",
        "2026-12-01T08:01",
        "--until",
        "2026-12-01T08:02:30",
    )
    assert isinstance(unlabelled.exception, DataError) and "has a label yet" in str(unlabelled.exception)
    (tmp_path / "taken").write_text("a file, not a folder")
    unwritable = invoke(home, "dataset", "from-log", "mixed", "--log", root, "--out", str(tmp_path / "taken" / "x.csv"))
    assert isinstance(unwritable.exception, DataError) and "cannot write" in str(unwritable.exception)
    wrong = invoke(home, "dataset", "from-log", "mixed", "--log", root, "--out", str(tmp_path / "x.xlsx"))
    assert isinstance(wrong.exception, ConfigError) and ".xlsx" in str(wrong.exception)
    assert not (tmp_path / "x.parquet").exists()


def test_an_unregistered_model_is_not_found(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "log"
    log_served(root, home, "1", mixed_frame(20, seed=3))
    (root / "predictions" / "model=mixed").rename(root / "predictions" / "model=ghost")
    failed = invoke(home, "dataset", "from-log", "ghost", "--log", str(root), "--out", str(tmp_path / "g.parquet"))
    assert isinstance(failed.exception, ModelNotFoundError)
