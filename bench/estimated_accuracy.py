"""Accuracy estimated before labels arrive, on real data, and what estimating costs a request.

``quality`` (the default): for each data set (``--datasets``: adult, bank from ../shared/datasets) a fixed 30 % of
the rows (seeded) is put aside as live traffic; each model kind (``--models``) is trained on the other 70 % the way
``fasttrack train`` trains (its own held-out part measures the calibration), saved as a model folder, and served by
a :class:`~fasttrack.serving.predictor.Predictor` whose confidence window covers the whole traffic. The traffic goes
through the predictor in requests of 100 records; the table gives the recorded ECE, whether the default
FASTTRACK_CALIBRATION_MAX_ERROR trusts it, the estimate the server exports, the accuracy of its answers against the
true labels, their gap, and three standard errors of an accuracy over that many rows (the noise of the real figure).

``cost``: the microseconds per request that the estimate adds to ``Predictor._track``, measured in one process on
the sample classifier (configs/sample.yaml) as served (ONNX Runtime): two predictors of the same model computing
probabilities alike, one with the confidence window and one without, and one with the estimate off altogether (no
probabilities computed), called in turn on one record in short blocks (``--rounds`` blocks of ``--calls`` calls
each; the median of the paired differences of neighbouring blocks), and the window's ``observe`` alone.

Run: ``.venv/bin/python bench/estimated_accuracy.py [quality|cost] [--datasets adult,bank]
[--models linear,random_forest,hist_gradient_boosting,xgboost] [--json FILE]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
#: data set -> (file, target)
SOURCES = {"adult": ("adult.csv", "income"), "bank": ("bank.csv", "y")}
TRAFFIC_SHARE = 0.3
BATCH = 100
console = Console(width=160)


def _folder(result: Any, folder: Path, name: str, rows: int) -> Path:
    from fasttrack.registry.model_folder import DataLineage, metadata_for, save_model_folder

    lineage = DataLineage(source=name, fingerprint="bench", rows=rows, columns=len(result.schema.features) + 1)
    return save_model_folder(result, folder, metadata_for(result, name=name, data=lineage))


def _predictor(folder: Path, settings: Any) -> Any:
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import ResolvedModel
    from fasttrack.serving.metrics import ServerMetrics
    from fasttrack.serving.predictor import Predictor

    return Predictor(
        load_model_folder(folder),
        ResolvedModel(uri=str(folder), path=folder),
        metrics=ServerMetrics(),
        settings=settings,
    )


def quality(datasets: list[str], models: list[str]) -> list[dict[str, Any]]:
    """Train, serve the traffic, and compare the estimate with the real accuracy; one row per data set and model."""
    import pandas as pd

    from fasttrack.config import Settings, TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.data.ingest import ingest
    from fasttrack.training.train import train

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fasttrack-estimate-") as tmp:
        for dataset in datasets:
            file, target = SOURCES[dataset]
            data = ingest(str(DATASETS / file), target=target)
            frame = data.frame
            traffic_rows = np.random.default_rng(0).random(len(frame)) < TRAFFIC_SHARE
            fit_frame = frame.loc[~traffic_rows].reset_index(drop=True)
            traffic = frame.loc[traffic_rows].reset_index(drop=True)
            schema = infer_schema(fit_frame, target, "classification")
            # Records as a JSON client sends them: the training file's columns, missing values as null.
            records = (
                traffic.drop(columns=[target])
                .astype(object)
                .where(pd.notna(traffic.drop(columns=[target])), None)
                .to_dict("records")
            )
            truth = traffic[target].astype(str).to_numpy()  # the cleaned labels, as the model predicts them
            for model in models:
                config = TrainConfig(data=str(DATASETS / file), target=target, name=dataset, model=model, cv_folds=0)
                started = time.perf_counter()
                result = train(fit_frame, config, schema)
                fit_seconds = time.perf_counter() - started
                folder = _folder(result, Path(tmp) / f"{dataset}-{model}", dataset, len(fit_frame))
                settings = Settings.model_construct().model_copy(
                    update={"drift_window": len(traffic), "drift_min_rows": 100}
                )
                predictor = _predictor(folder, settings)
                answers: list[Any] = []
                for start in range(0, len(records), BATCH):
                    answers.extend(predictor.predict(records[start : start + BATCH]).values)
                calib = result.evaluation.calibration
                verdict = predictor.calibration
                # The estimate the server would export; computed for an untrusted model too, to show the gap.
                proba = predictor.predict_input(predictor.validate(records), probabilities=True).probabilities
                estimate = float(proba.max(axis=1).mean())
                if predictor.estimate is not None:
                    exported = predictor.estimate.estimate()
                    assert exported is not None and math.isclose(exported, estimate, rel_tol=1e-9)
                accuracy = float(np.mean(np.asarray([str(a) for a in answers]) == truth))
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "traffic_rows": len(traffic),
                        "test_rows": calib.rows,
                        "ece": calib.error,
                        "trusted": verdict.trusted,
                        "estimate": estimate,
                        "accuracy": accuracy,
                        "gap": abs(estimate - accuracy),
                        "three_se": 3 * math.sqrt(accuracy * (1 - accuracy) / len(traffic)),
                        "fit_seconds": fit_seconds,
                        "backend": predictor.runtime.name,
                    }
                )
                console.print(rows[-1])
    return rows


def cost(calls: int, rounds: int) -> list[dict[str, Any]]:
    """Microseconds per ``Predictor.predict`` of one record with and without the estimate's work in ``_track``."""
    import pandas as pd

    from fasttrack.config import Settings, TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.training.publish import export_onnx
    from fasttrack.training.train import train

    config = TrainConfig.load(ROOT / "configs" / "sample.yaml", cv_folds=0)
    frame = pd.read_csv(ROOT / "data" / "sample" / "classification.csv")
    result = train(frame, config, infer_schema(frame, config.target, config.task))
    record = frame.drop(columns=[config.target]).iloc[0].to_dict()
    with tempfile.TemporaryDirectory(prefix="fasttrack-estimate-") as tmp:
        exported = export_onnx(result, Path(tmp) / "onnx")
        from fasttrack.registry.model_folder import DataLineage, metadata_for, save_model_folder

        lineage = DataLineage(source="sample", fingerprint="bench", rows=len(frame), columns=3)
        metadata = metadata_for(result, name="sample", data=lineage, onnx=exported.info)
        folder = save_model_folder(
            result, Path(tmp) / "model", metadata, extra_files=[exported.file] if exported.file else []
        )
        trusted = Settings.model_construct().model_copy(update={"calibration_max_error": 1.0})
        with_window = _predictor(folder, trusted)
        without_window = _predictor(folder, trusted)
        without_window.estimate = None  # probabilities still computed: only the window's work differs
        off = _predictor(folder, trusted.model_copy(update={"calibration_max_error": 0.0}))
        assert with_window.estimate is not None and off.estimate is None and not off.track_probabilities
        variants = {"window": with_window, "no window": without_window, "estimate off": off}
        for predictor in variants.values():  # warm every path up
            for _ in range(1000):
                predictor.predict([record])
        # Short blocks in turn, many times: a change in the machine's load moves the three alike, and the paired
        # differences of neighbouring blocks cancel most of it.
        timings: dict[str, list[float]] = {name: [] for name in variants}
        batch = [record]
        for _ in range(rounds):
            for name, predictor in variants.items():
                predict = predictor.predict
                started = time.perf_counter()
                for _ in range(calls):
                    predict(batch)
                timings[name].append((time.perf_counter() - started) / calls * 1e6)
        # The added statement alone: the window's work for one request's probabilities, as _track does it.
        proba = with_window.predict_input(with_window.validate(batch), probabilities=True).probabilities
        assert proba is not None and with_window.estimate is not None
        observe = with_window.estimate.observe
        alone: list[float] = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(100_000):
                observe(proba)
            alone.append((time.perf_counter() - started) / 100_000 * 1e6)
        backend = with_window.runtime.name
    paired = {
        name: [a - b for a, b in zip(timings[name], timings["no window"], strict=True)]
        for name in ("window", "estimate off")
    }
    rows = [
        {
            "variant": name,
            "backend": backend,
            "us_per_request": statistics.median(values),
            "blocks": len(values),
            "calls_per_block": calls,
            "paired_difference_vs_no_window": statistics.median(paired[name]) if name in paired else 0.0,
        }
        for name, values in timings.items()
    ]
    rows.append({"variant": "observe() alone", "backend": backend, "us_per_request": statistics.median(alone)})
    console.print(f"backend: {backend}; {rounds} blocks of {calls} calls per variant, in turn")
    table = Table()
    for column in ("variant", "µs/request (median of blocks)", "median paired difference vs no window, µs"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for row in rows:
        difference = row.get("paired_difference_vs_no_window")
        table.add_row(
            row["variant"], f"{row['us_per_request']:.2f}", "" if difference is None else f"{difference:+.2f}"
        )
    console.print(table)
    return rows


def _quality_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"estimate vs real accuracy on {TRAFFIC_SHARE:.0%} of each data set held out as traffic")
    for column in (
        "data set",
        "model",
        "backend",
        "test rows",
        "ECE",
        "trusted",
        "traffic",
        "estimate",
        "real",
        "|est - real|",
        "3 SE",
    ):
        table.add_column(column, justify="left" if column in ("data set", "model", "backend") else "right")
    for r in rows:
        table.add_row(
            r["dataset"],
            r["model"],
            r["backend"],
            str(r["test_rows"]),
            f"{r['ece']:.4f}",
            "yes" if r["trusted"] else "no",
            str(r["traffic_rows"]),
            f"{r['estimate']:.4f}",
            f"{r['accuracy']:.4f}",
            f"{r['gap']:.4f}",
            f"{r['three_se']:.4f}",
        )
    console.print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("quality", "cost"), default="quality")
    parser.add_argument("--datasets", default="adult,bank")
    parser.add_argument("--models", default="linear,random_forest,hist_gradient_boosting,xgboost")
    parser.add_argument("--calls", type=int, default=500, help="calls per block (cost)")
    parser.add_argument("--rounds", type=int, default=200, help="blocks per variant, in turn (cost)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.what == "quality":
        rows = quality(args.datasets.split(","), args.models.split(","))
        _quality_table(rows)
    else:
        rows = cost(args.calls, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
