"""The closed loop end to end, with real processes: a server logging every prediction, labels sent back, a restart
in the middle, traffic that drifts on one feature; then the labelled data set and the drift report from the log.

The data follow a known law: ``P(label = "yes") = sigmoid(1.5 * x1 - 1.0 * x2 + colour effect)``. A logistic
regression fits that law, so it is calibrated, and its accuracy estimated from its confidences (no label needed)
must land near the real accuracy of the labels the test draws. Only ``x2`` drifts (shifted by 1.5 after the
restart); the law itself does not change (covariate shift), which is when confidence-based estimation is valid.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import run_cli, serve

NAME = "loop"
COLOURS = ("red", "green", "blue")
EFFECT = {"red": 0.8, "green": 0.0, "blue": -0.8}
#: How far the estimated accuracy may be from the real one. The real accuracy of N rows varies around its
#: expectation with a standard error of sqrt(p (1 - p) / N): about 0.017 for N = 600 and p = 0.8. The estimate is
#: itself a mean over the same rows, much less noisy. 0.06 is three standard errors and a half; the test of the
#: estimate in tests/unit/serving/test_estimate.py holds it to three, and shows it fails under concept drift.
TOLERANCE = 0.06


def draw(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Rows of the known law, with ``x2`` shifted by ``shift`` (the label drawn from the same law either way)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0.0, 1.0, rows)
    x2 = rng.normal(shift, 1.0, rows)
    colour = rng.choice(COLOURS, rows)
    logit = 1.5 * x1 - 1.0 * x2 + np.array([EFFECT[c] for c in colour])
    yes = rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame({"x1": x1.round(4), "x2": x2.round(4), "colour": colour, "label": np.where(yes, "yes", "no")})


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels`` (None when absent)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def predict(url: str, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Predict every row of ``frame`` in batches of 50; the ids and the predicted labels, in row order."""
    ids: list[str] = []
    predicted: list[str] = []
    records = frame.drop(columns="label").to_dict(orient="records")
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(records), 50):
            answer = client.post(f"{url}/predict?ids=true", json=records[start : start + 50])
            assert answer.status_code == 200, answer.text
            body = answer.json()
            ids.extend(body["ids"])
            predicted.extend(body["predictions"])
    return ids, predicted


def send_labels(url: str, ids: list[str], labels: list[str]) -> None:
    answer = httpx.post(
        f"{url}/feedback", json=[{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)], timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"]["matched"] == len(ids), answer.json()["counts"]


@pytest.mark.timeout(600)
def test_the_loop_closes_across_a_restart(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "inference-log"
    train = tmp_path / "train.csv"
    draw(4000, seed=1).to_csv(train, index=False)
    linear = ("--target", "label", "--name", NAME, "--model", "linear")
    trained = run_cli("train", "--data", str(train), *linear, home=home)
    assert trained.returncode == 0, trained.stderr

    env = {"FASTTRACK_INFERENCE_LOG": str(log), "FASTTRACK_INFERENCE_LOG_ROTATE_SECONDS": "1"}
    model = ("--model", f"models:/{NAME}@champion", "--reload-interval", "0")
    calm, drifted = draw(600, seed=2), draw(600, seed=3, shift=1.5)

    # Before the restart: traffic like the training data; labels come back for the first half.
    with serve(*model, home=home, **env) as server:
        calm_ids, _ = predict(server.url, calm)
        send_labels(server.url, calm_ids[:300], calm["label"][:300].tolist())
    # SIGTERM stopped it: whatever it had queued is in the log now. After the restart, x2 drifts.
    with serve(*model, home=home, **env) as server:
        drifted_ids, drifted_predicted = predict(server.url, drifted)
        send_labels(server.url, drifted_ids[:300], drifted["label"][:300].tolist())
        samples = scrape(server.url)
        estimate = value(samples, "fasttrack_estimated_accuracy", model=NAME)
        dropped = sum(v for (n, _), v in samples.items() if n == "fasttrack_inference_log_dropped_rows_total")

    # The estimate, made without a label, against the real accuracy of the drifted traffic it saw.
    real = float(np.mean(np.asarray(drifted_predicted) == drifted["label"].to_numpy()))
    assert estimate is not None, "a calibrated classifier exports its estimated accuracy"
    assert math.isclose(estimate, real, abs_tol=TOLERANCE), (estimate, real)
    assert dropped == 0

    # Nothing logged before the restart is lost, nothing is logged twice.
    predictions = ds.dataset(log / "predictions", format="parquet", partitioning="hive").to_table().to_pandas()
    assert sorted(predictions["prediction_id"]) == sorted(calm_ids + drifted_ids)
    assert set(predictions["model"].astype(str)) == {NAME}

    # The labelled data set: exactly the labelled rows, in the training file's columns, ready to train on.
    labelled = tmp_path / "labelled.parquet"
    made = run_cli("dataset", "from-log", NAME, "--log", str(log), "--out", str(labelled), home=home)
    assert made.returncode == 0, made.stderr
    assert "1,200 predictions" in made.stdout and "600 labelled, 600 without a label (left out)" in made.stdout
    data = pd.read_parquet(labelled)
    assert list(data.columns) == ["x1", "x2", "colour", "label"]
    sent = pd.concat([calm.iloc[:300], drifted.iloc[:300]])
    key = ["x1", "x2", "colour", "label"]
    assert sorted(map(tuple, data[key].to_numpy().tolist())) == sorted(map(tuple, sent[key].to_numpy().tolist()))
    retrained = run_cli(
        "train", "--data", str(labelled), "--target", "label", "--name", f"{NAME}-again", "--cv-folds", "0", home=home
    )
    assert retrained.returncode == 0, retrained.stderr

    # The drift report names x2, and only x2.
    report = tmp_path / "drift.html"
    drawn = run_cli("report", "drift", NAME, "--log", str(log), "--out", str(report), home=home)
    assert drawn.returncode == 0, drawn.stderr
    assert "x2 (PSI" in drawn.stdout, drawn.stdout
    assert "x1 (PSI" not in drawn.stdout and "colour (PSI" not in drawn.stdout, drawn.stdout
    html = report.read_text(encoding="utf-8")
    assert "<html" in html.lower() and "http://" not in html and "https://" not in html
