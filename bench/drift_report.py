"""The inference log's readers on a large log: ``fasttrack report drift`` and ``fasttrack dataset from-log``.

Builds, with a fixed seed and nothing downloaded: an embedded store holding an adult-like model (6 numeric and 8
categorical features with the UCI Adult cardinalities, logistic regression) as versions 1 and 2, and an inference
log of ``--rows`` predictions (default one million) written in the layout of ``fasttrack.monitoring.log_layout``
(files of 50,000 rows, a week of traffic, version 1 then version 2, whose ``age`` drifts by ten years), with
probabilities, and labels for ``--labelled`` of the rows (default 30 %). The predictions are the model's own.
Then it runs each command ``--repeat`` times in a process of its own and prints the wall time (process start-up,
imports and writing included) and rows per second: the figure the issue asks about is the report on a million
rows, "well under a minute".

Run: ``python bench/drift_report.py [--rows 1000000] [--labelled 0.3] [--repeat 1] [--json FILE]``. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from batch_scoring import adult_like
from rich.console import Console
from rich.table import Table

from fasttrack.monitoring import log_layout

SEED = 11
NAME = "adult-log"
ROWS_PER_FILE = 50_000
START = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
WEEK = 7 * 86400


def build_store(home: Path, work: Path) -> None:
    """Register the adult-like model twice (versions 1 and 2) in ``home``'s embedded store."""
    import logging

    import fasttrack

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from fasttrack.config import get_settings

    data = work / "adult-like.csv"
    adult_like(20_000, np.random.default_rng(SEED)).to_csv(data, index=False)
    settings = get_settings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    for _ in range(2):
        trained = fasttrack.train(
            data=str(data), target="income", name=NAME, model="linear", cv_folds=0, settings=settings
        )
        if not trained.registered:
            raise SystemExit(f"the bench model was not registered: {trained.gate.reasons}")


def write_log(home: Path, root: Path, rows: int, labelled: float) -> None:
    """The log: ``rows`` predictions by the registered versions, half each, and labels for a share of them."""
    import fasttrack
    from fasttrack.config import get_settings
    from fasttrack.features.columns import CategoricalColumn
    from fasttrack.features.frames import frame_input
    from fasttrack.features.rules import category_text

    settings = get_settings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    rng = np.random.default_rng(SEED + 1)
    frame = adult_like(rows, rng).drop(columns="income")
    half = rows // 2
    frame.loc[half:, "age"] = frame.loc[half:, "age"] + 10  # version 2's traffic drifts on one feature
    offsets = np.sort(rng.integers(0, WEEK * 1_000_000, rows))
    times = pd.to_datetime(int(START.timestamp() * 1_000_000) + offsets, unit="us", utc=True)
    ids = np.char.add("p-", np.arange(rows).astype(str))
    for version, part in (("1", slice(0, half)), ("2", slice(half, rows))):
        model = fasttrack.load(f"models:/{NAME}/{version}", settings=settings)
        features = frame.iloc[part]
        proba = model.predict_proba(features)
        labels = [str(category_text(label)) for label in model.labels or []]
        predicted = np.asarray(labels, dtype=object)[proba.argmax(axis=1)]
        schema = log_layout.predictions_schema(model.schema.features, classifier=True, labels=labels)
        columns = {
            log_layout.PREDICTION_ID: pa.array(ids[part]),
            log_layout.TIMESTAMP: pa.array(times[part], log_layout.TIMESTAMP_TYPE),
            log_layout.VERSION: pa.array([version] * len(features)),
            log_layout.PREDICTION: pa.array(predicted, pa.string()),
        }
        # The validated inputs, as the server logs them: through the feature contract.
        for name, values in frame_input(features, model.schema).columns.items():
            logged = values.arrow().cast(pa.string()) if isinstance(values, CategoricalColumn) else pa.array(values)
            columns[log_layout.input_column(name)] = logged
        for j, label in enumerate(labels):
            columns[log_layout.proba_column(label)] = pa.array(proba[:, j], pa.float64())
        table = pa.table({field.name: columns[field.name] for field in schema}, schema=schema)
        write_files(root, "predictions", table)
        chosen = np.flatnonzero(rng.random(len(features)) < labelled)
        # The true label: the prediction, wrong as often as the model's confidence says.
        confidence = proba.max(axis=1)[chosen]
        right = rng.random(chosen.size) < confidence
        other = np.asarray(labels, dtype=object)[1 - proba.argmax(axis=1)[chosen]]
        truth = np.where(right, predicted[chosen], other)
        feedback = pa.table(
            {
                log_layout.PREDICTION_ID: pa.array(ids[part][chosen]),
                log_layout.TIMESTAMP: pa.array(times[part][chosen] + pd.Timedelta(hours=1), log_layout.TIMESTAMP_TYPE),
                log_layout.VERSION: pa.array([version] * chosen.size),
                log_layout.LABEL: pa.array(truth, pa.string()),
                log_layout.OUTCOME: pa.array(["matched"] * chosen.size),
            },
            schema=log_layout.feedback_schema(classifier=True),
        )
        write_files(root, "feedback", feedback)


def write_files(root: Path, table_name: log_layout.Table, table: pa.Table) -> None:
    """Files of at most ROWS_PER_FILE rows under each UTC day's partition, written aside and renamed."""
    days = pc.strftime(table[log_layout.TIMESTAMP], format="%Y-%m-%d").to_numpy(zero_copy_only=False)
    for day in np.unique(days):
        part = table.filter(pa.array(days == day))
        folder = Path(log_layout.partition(str(root), table_name, NAME, dt.date.fromisoformat(str(day))))
        folder.mkdir(parents=True, exist_ok=True)
        for sequence, offset in enumerate(range(0, part.num_rows, ROWS_PER_FILE)):
            chunk = part.slice(offset, ROWS_PER_FILE)
            first = chunk[log_layout.TIMESTAMP][0].as_py()
            name = log_layout.file_name(first, sequence, secrets.token_hex(4))
            pq.write_table(chunk, folder / f".{name}.tmp")
            (folder / f".{name}.tmp").rename(folder / name)


def run(command: list[str], home: Path) -> float:
    env = {**os.environ, "FASTTRACK_HOME": str(home), "FASTTRACK_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labelled", type=float, default=0.3, help="share of the rows that get a label")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="fasttrack-bench-log-") as tmp:
        work = Path(tmp)
        home, root = work / "home", work / "log"
        started = time.perf_counter()
        build_store(home, work)
        write_log(home, root, args.rows, args.labelled)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 1e6
        console.print(
            f"log of {args.rows:,} rows ({size:.0f} MB of Parquet) built in {time.perf_counter() - started:.0f} s"
        )
        fasttrack = [sys.executable, "-m", "fasttrack"]
        commands = {
            "report drift": [
                *fasttrack,
                "report",
                "drift",
                NAME,
                "--log",
                str(root),
                "--out",
                str(work / "drift.html"),
            ],
            "dataset from-log": [
                *fasttrack,
                "dataset",
                "from-log",
                NAME,
                "--log",
                str(root),
                "--out",
                str(work / "labelled.parquet"),
            ],
            "startup (--help)": [*fasttrack, "report", "drift", "--help"],
        }
        figures: dict[str, float] = {}
        for title, command in commands.items():
            figures[title] = statistics.median(run(command, home) for _ in range(max(args.repeat, 1)))
        load = os.getloadavg()[0]
    console.print(f"the inference log's readers on {args.rows:,} logged rows (1-minute load average {load:.1f}):")
    table = Table()
    for column in ("command", "seconds", "rows/s"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for title, seconds in figures.items():
        rate = "" if title.startswith("startup") else f"{args.rows / seconds:,.0f}"
        table.add_row(title, f"{seconds:.1f}", rate)
    console.print(table)
    command = " ".join(["python bench/drift_report.py", *sys.argv[1:]])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "rows": args.rows,
            "labelled": args.labelled,
            "report_s": figures["report drift"],
            "dataset_s": figures["dataset from-log"],
            "startup_s": figures["startup (--help)"],
            "load": load,
            "command": command,
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
