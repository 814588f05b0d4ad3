"""The feature contract end to end, on the real data sets where issue 13 found the paths disagreeing.

A row of the training file is accepted by every route of a real server (the identifiers cleaning dropped and the
target are ignored), and one adult row with ``?`` (a missing marker in training) gets the same probability from
the server as from ``fasttrack predict`` on the same model.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pandas as pd
import pytest

from support import run_cli, serve

pytestmark = [pytest.mark.datasets, pytest.mark.integration]


def first_rows(path: Path, count: int) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [next(reader) for _ in range(count)]


def test_a_row_of_the_training_file_is_accepted_on_every_route(datasets_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    trained = run_cli("train", "-c", "configs/titanic.yaml", "--cv-folds", "0", home=home)
    assert trained.returncode == 0, trained.stderr
    header, rows = first_rows(datasets_dir / "titanic.csv", 3)
    records = [dict(zip(header, row, strict=True)) for row in rows]
    assert {"PassengerId", "Name", "Survived"} <= set(records[0])
    with serve("--model", "models:/titanic@champion", home=home) as server:
        invocations = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records}, timeout=30)
        assert invocations.status_code == 200, invocations.text
        as_csv = io.StringIO()
        csv.writer(as_csv).writerows([header, *rows])
        text = httpx.post(
            f"{server.url}/invocations", content=as_csv.getvalue(), headers={"Content-Type": "text/csv"}, timeout=30
        )
        assert text.json() == invocations.json()
        predicted = httpx.post(f"{server.url}/predict", json=records, timeout=30)
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == invocations.json()["predictions"]
        unknown = httpx.post(f"{server.url}/predict", json={**records[0], "Lifeboat": "7"}, timeout=30)
        assert unknown.status_code == 422
        assert [d["field"] for d in unknown.json()["details"]] == ["Lifeboat"]
        ignored = httpx.post(
            f"{server.url}/invocations", json={"dataframe_records": [{**records[0], "Lifeboat": "7"}]}, timeout=30
        )
        assert ignored.status_code == 200
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    counted = {
        line.split('field="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("fasttrack_ignored_field_total{")
    }
    assert counted["Survived"] >= 3 and counted["PassengerId"] >= 3 and counted["Name"] >= 3
    assert counted["__unknown__"] == 1


def test_an_adult_row_with_a_missing_marker_answers_alike_on_both_paths(datasets_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    trained = run_cli("train", "-c", "configs/adult.yaml", "--cv-folds", "0", home=home)
    assert trained.returncode == 0, trained.stderr
    header, rows = first_rows(datasets_dir / "adult.csv", 200)
    with_marker = [row for row in rows if any(value.strip() == "?" for value in row)][:3]
    assert with_marker, "the first rows of adult.csv hold a '?'"
    scored_in = tmp_path / "rows.csv"
    with scored_in.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *with_marker])
    scored_out = tmp_path / "scored.csv"
    batch = run_cli(
        "predict",
        "--model",
        "models:/adult@champion",
        "--data",
        str(scored_in),
        "--out",
        str(scored_out),
        "--probabilities",
        home=home,
    )
    assert batch.returncode == 0, batch.stderr
    offline = pd.read_csv(scored_out)["probability_>50K"].tolist()
    with serve("--model", "models:/adult@champion", home=home) as server:
        records = [dict(zip(header, row, strict=True)) for row in with_marker]
        answer = httpx.post(f"{server.url}/predict?probabilities=true", json=records, timeout=30)
    assert answer.status_code == 200, answer.text
    online = [row[">50K"] for row in answer.json()["probabilities"]]
    assert online == pytest.approx(offline, abs=1e-6)
