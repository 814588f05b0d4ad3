"""The promotion gate's costs: the paired bootstrap per metric, against scikit-learn per resample, and row hashing.

* The paired bootstrap (:func:`fasttrack.training.compare.paired_bootstrap`: both models' metric on every resample,
  from resample counts) on ``--rows`` rows and ``--resamples`` resamples, per metric, against the obvious loop
  that gathers each resample's rows and calls scikit-learn's metric for both models (ROC AUC by default; the loop is
  run on a tenth of the resamples and scaled, as it is linear in them);
* :func:`fasttrack.training.split.row_hashes` on a million rows of four features (two numeric, one categorical, one
  boolean) and a label, and the size of the Parquet record of a million distinct training rows
  (``TrainingRows.write``).

Each figure is the median of ``--repeat`` runs, wall time, in this process. The machine's load moves them: compare
figures of one run with each other.

Run: ``.venv/bin/python bench/promotion_gate.py [--rows 10000] [--resamples 1000] [--repeat 3]``. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from fasttrack.data.schema import FeatureSchema, Schema, TargetSchema
from fasttrack.training.compare import Outputs, paired_bootstrap
from fasttrack.training.split import TrainingRows, row_hashes

console = Console(width=140)


def timed(work: Callable[[], Any], repeat: int) -> float:
    """The median wall time of ``repeat`` runs of ``work``, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def outputs(truth: np.ndarray[Any, Any], noise: float, seed: int) -> Outputs:
    """A binary classifier's predictions: probabilities leaning to the truth, blurred by ``noise``."""
    rng = np.random.default_rng(seed)
    positive = (truth == "yes").astype(float)
    score = 1 / (1 + np.exp(-(2 * positive - 1 + rng.normal(0, noise, len(truth)))))
    proba = np.stack([1 - score, score], axis=1)
    return Outputs(np.where(score > 0.5, "yes", "no").astype(object), proba, ["no", "yes"])


def sklearn_loop(truth: np.ndarray[Any, Any], first: Outputs, second: Outputs, metric: str, resamples: int) -> None:
    """Resample rows and call scikit-learn's metric for both models on each resample (the loop being compared)."""
    rng = np.random.default_rng(0)
    positive = truth == "yes"
    for _ in range(resamples):
        rows = rng.integers(0, len(truth), len(truth))
        for model in (first, second):
            assert model.probabilities is not None
            if metric == "roc_auc":
                roc_auc_score(positive[rows], model.probabilities[rows, 1])
            elif metric == "log_loss":
                log_loss(truth[rows], model.probabilities[rows], labels=["no", "yes"])
            else:
                accuracy_score(truth[rows], model.values[rows])


def hashing(rows: int) -> tuple[pd.DataFrame, Schema]:
    """A frame of ``rows`` rows and its schema, for row hashing."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows).astype(float),
            "income": rng.lognormal(10, 0.5, rows),
            "colour": rng.choice(["red", "green", "blue", "black", "white"], rows).astype(object),
            "member": rng.random(rows) < 0.3,
            "label": rng.choice(["no", "yes"], rows).astype(object),
        }
    )
    numeric = {"kind": "numeric", "dtype": "float64", "nullable": False, "missing_ratio": 0.0}
    features = [
        FeatureSchema(name="age", **numeric),
        FeatureSchema(name="income", **numeric),
        FeatureSchema(
            name="colour",
            kind="categorical",
            dtype="str",
            nullable=False,
            missing_ratio=0.0,
            categories=["red", "green", "blue", "black", "white"],
        ),
        FeatureSchema(name="member", kind="boolean", dtype="bool", nullable=False, missing_ratio=0.0),
    ]
    target = TargetSchema(name="label", task="classification", dtype="str", labels=["no", "yes"])
    return frame, Schema(features=features, target=target, n_rows=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console.print(f"load average before: {os.getloadavg()}")

    rng = np.random.default_rng(1)
    truth = np.where(rng.random(args.rows) < 0.12, "yes", "no").astype(object)
    first, second = outputs(truth, 1.0, 2), outputs(truth, 1.0, 3)
    table = Table(title=f"paired bootstrap: {args.resamples} resamples of {args.rows:,} rows, both models")
    for column in ("metric", "counts (s)", "sklearn loop (s)", "ratio"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    loop_share = max(1, args.resamples // 10)
    for metric in ("roc_auc", "log_loss", "accuracy"):
        ours = timed(
            lambda m=metric: paired_bootstrap("classification", m, truth, first, second, resamples=args.resamples),
            args.repeat,
        )
        theirs = timed(lambda m=metric: sklearn_loop(truth, first, second, m, loop_share), 1) * (
            args.resamples / loop_share
        )
        table.add_row(metric, f"{ours:.2f}", f"{theirs:.1f}", f"{theirs / ours:.0f}x")
    console.print(table)

    frame, schema = hashing(1_000_000)
    seconds = timed(lambda: row_hashes(frame, schema), args.repeat)
    hashes = row_hashes(frame, schema)
    record = TrainingRows.of(hashes, schema, "fasttrack")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_rows.parquet"
        written = timed(lambda: record.write(path), args.repeat)
        size = path.stat().st_size
        read = timed(lambda: TrainingRows.read(path), args.repeat)
    lookup = timed(lambda: record.contains(hashes), args.repeat)
    console.print(
        f"row_hashes: {seconds:.2f} s per million rows; record of {len(record.hashes):,} distinct rows: "
        f"{size / 1e6:.2f} MB ({size / len(record.hashes):.2f} bytes per row), written in {written:.2f} s, read in "
        f"{read:.2f} s; a million rows looked up in it: {lookup:.2f} s"
    )
    console.print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
