"""Issues 7's, 13's, 15's, 16's and 17's targets against the figures of one ``make bench`` run: one table, each row
measured, target, met.

Reads the JSON files that ``bench/serving.py --json``, ``bench/startup.py --json``, ``bench/batch_scoring.py
--json``, ``bench/training.py --json``, ``bench/drift_report.py --json`` and ``bench/inference_log.py --json``
write (``make bench`` puts them in ``.bench/``) and prints every figure of issue 7's target table, issue 13's
start-up of ``models:/sample@champion``, issue 15's drift report on a million logged rows and cost of the
inference log, and issue 17's cost of API keys (req/s with access control on over off, paired per round), with the
value measured in that run. A figure whose benchmark did not run (or whose server failed)
is shown as not measured, never as met. Under the table: the training floors (no FastTrack code in them), the batch
scoring's peak memory as the file grows, which the issue asks to stay flat without giving a number, the time of
``fasttrack dataset from-log`` on the million rows, and issue 16's Dask scoring rates with each worker's peak memory
as the input grows (flat, again without a number). Issue 17's soak (``make soak``, bench/soak.py) adds its rows when
its JSON is there.

Run: ``.venv/bin/python bench/targets.py [--dir .bench]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
#: Serving models of the issue's first row, as bench/serving.py names them.
SERVING_MODELS = {
    "sample": "2-feature logistic",
    "adult-linear": "categorical pipeline (adult.csv), logistic",
    "adult": "categorical pipeline (adult.csv), hist GBDT",
    "adult-rf": "random forest, 100 trees (adult.csv)",
}


@dataclass(frozen=True)
class Row:
    figure: str
    target: str
    value: float | None
    shown: str
    met: bool | None


def load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def at_least(figure: str, value: float | None, target: float, fmt: Callable[[float], str]) -> Row:
    shown = "not measured" if value is None else fmt(value)
    return Row(figure, f"≥ {fmt(target)}", value, shown, None if value is None else value >= target)


def at_most(figure: str, value: float | None, target: float, fmt: Callable[[float], str]) -> Row:
    shown = "not measured" if value is None else fmt(value)
    return Row(figure, f"≤ {fmt(target)}", value, shown, None if value is None else value <= target)


def serving_rows(serving: dict[str, Any] | None) -> list[Row]:
    models = {m["model"]: m for m in (serving or {}).get("models", [])}
    rows = []
    for key, title in SERVING_MODELS.items():
        rows.append(
            at_least(f"req/s ÷ hello world: {title}", models.get(key, {}).get("vs_hello"), 0.90, "{:.2f}".format)
        )
    for key, title in SERVING_MODELS.items():
        rows.append(
            at_least(f"÷ mlflow models serve: {title}", models.get(key, {}).get("vs_mlflow"), 20, "{:.0f}x".format)
        )
    for key, title in SERVING_MODELS.items():
        fasttrack = models.get(key, {}).get("servers", {}).get("fasttrack", {})
        rows.append(at_most(f"p99 at 32 connections: {title}", fasttrack.get("p99_ms"), 10, "{:.1f} ms".format))
    for key, title in SERVING_MODELS.items():  # issue 17: what access control costs
        keyed = models.get(key, {}).get("keys_vs_off")
        rows.append(at_least(f"req/s with API keys on ÷ off: {title}", keyed, 0.85, "{:.2f}".format))
    for key, title in SERVING_MODELS.items():
        fasttrack = models.get(key, {}).get("servers", {}).get("fasttrack", {})
        # bench/serving.py serves each model from its folder with registry polling off.
        ready = fasttrack.get("startup_s")
        rows.append(at_most(f"ready after start (folder, polling off): {title}", ready, 3, "{:.2f} s".format))
        memory = max(fasttrack.get("rss_ready_mb") or 0, fasttrack.get("rss_after_mb") or 0) or None
        rows.append(at_most(f"resident memory (folder, polling off): {title}", memory, 300, "{:.0f} MB".format))
    return rows


def startup_rows(startup: dict[str, Any] | None) -> list[Row]:
    """Issue 13's figures for the form `make run` serves: ``models:/sample@champion``, registry polling on."""
    forms = (startup or {}).get("forms", {})
    rows = []
    for key, title in (("registry, first start", "first start"), ("registry, cached", "cached")):
        form = forms.get(key, {})
        ready = statistics.median(form["ready_s"]) if form.get("ready_s") else None
        figure = f"models:/sample@champion, polling on, {title}"
        rows.append(at_most(f"ready after start: {figure}", ready, 1.5, "{:.2f} s".format))
        memory = max([*form.get("rss_mb", []), *form.get("rss_reload_mb", [])], default=None)
        rows.append(at_most(f"resident memory: {figure}", memory, 150, "{:.0f} MB".format))
    return rows


def batch_rows(batch: dict[str, Any] | None) -> list[Row]:
    figures = {(w["key"], w["engine"]): w for w in (batch or {}).get("workloads", [])}
    targets = {"sample": ("logistic", 1_000_000), "adult-logistic": ("categorical pipeline", 500_000)}
    rows = (batch or {}).get("rows", 1_000_000)
    return [
        at_least(
            f"fasttrack predict, {rows:,} CSV rows end to end: {title}",
            figures.get((key, "onnx"), {}).get("end_to_end_rows_s"),
            target,
            "{:,.0f} rows/s".format,
        )
        for key, (title, target) in targets.items()
    ]


def training_rows(training: dict[str, Any] | None) -> list[Row]:
    ratios = (training or {}).get("ratios", {})
    figures = {
        "train_vs_fit": "fasttrack train --cv-folds 0 ÷ bare sklearn fit (adult.csv, hist GBDT)",
        "train_existing_vs_fit": "  the same, into a home that already has a run",
        "train_cv_vs_cv_fit": "  fasttrack train (config's 3-fold CV) ÷ bare CV + fit",
        "train_cv_existing_vs_cv_fit": "  the same, into a home that already has a run",
    }
    rows = [at_most(title, ratios.get(key), 1.5, "{:.2f}x".format) for key, title in figures.items()]
    # Issue 16: fitting dominates on ten times adult's rows; on adult, no slower than the plain MLflow floor.
    scale = (training or {}).get("scale", 10)
    return [
        *rows,
        at_most(
            f"fasttrack train --cv-folds 0 ÷ bare sklearn fit, adult.csv grown {scale} times",
            ratios.get("scaled_train_vs_fit"),
            1.25,
            "{:.2f}x".format,
        ),
        at_most(
            "fasttrack train --cv-folds 0 ÷ bare fit + plain MLflow log_model, register (adult.csv)",
            ratios.get("train_vs_mlflow_fit"),
            1.0,
            "{:.2f}x".format,
        ),
    ]


def drift_rows(drift: dict[str, Any] | None) -> list[Row]:
    """Issue 15's figure: ``fasttrack report drift`` on a million logged rows, "well under a minute" (half of one)."""
    rows = (drift or {}).get("rows", 1_000_000)
    return [
        at_most(
            f"fasttrack report drift, {rows:,} logged rows end to end",
            (drift or {}).get("report_s"),
            30,
            "{:.1f} s".format,
        ),
    ]


#: Training figures without FastTrack in them, printed under the table: what MLflow alone costs over a bare fit.
FLOORS = {
    "import_fit_vs_fit": "bare fit + only importing MLflow and its SQL tracking store ÷ bare fit",
    "mlflow_fit_vs_fit": "bare fit + plain MLflow run, log_model and register_model ÷ bare fit",
}


#: The inference log's models, as bench/inference_log.py names them.
LOG_MODELS = {"sample": "2-feature logistic", "adult": "categorical pipeline (adult.csv), hist GBDT"}


def inference_log_rows(log: dict[str, Any] | None) -> list[Row]:
    """Issue 15: throughput with the log on ÷ off, and the log keeping up (every row written, none dropped)."""
    models = {m["model"]: m for m in (log or {}).get("models", [])}
    rows = []
    for key, title in LOG_MODELS.items():
        figures = models.get(key, {})
        rows.append(at_least(f"req/s, inference log on ÷ off: {title}", figures.get("ratio"), 0.85, "{:.2f}".format))
        predicted, written = figures.get("predicted"), figures.get("written")
        kept = written / predicted if predicted and written is not None else None
        rows.append(at_least(f"inference log rows written ÷ predicted: {title}", kept, 1.0, "{:.3f}".format))
        rows.append(at_most(f"inference log rows dropped: {title}", figures.get("dropped"), 0, "{:,.0f}".format))
    return rows


def soak_rows(soak: dict[str, Any] | None) -> list[Row]:
    """Issue 17's soak (``make soak``, bench/soak.py): memory growth after warm-up and unexpected answers."""
    growth = soak["rss_growth"] if soak else None
    unexpected = float(sum(soak["unexpected"].values())) if soak else None
    grown = float(soak["fds"]["end"] - soak["fds"]["after_warmup"]) if soak else None
    return [
        at_most("soak: RSS growth after warm-up", growth, 0.05, lambda v: f"{v:+.1%}"),
        at_most("soak: open file descriptors grown after warm-up", grown, 0, lambda v: f"{v:+.0f}"),
        at_most("soak: unexpected answers (5xx, refused, wrong status)", unexpected, 0, lambda v: f"{v:,.0f}"),
    ]


def overload_rows(overload: dict[str, Any] | None) -> list[Row]:
    """Issue 17: at 4x the sustainable rate (open loop), the p99 of the requests the server accepts."""
    figures = overload or {}
    factor = figures.get("factor", 4)
    title = f"p99 of accepted requests at {factor:g}x the sustainable rate, open loop (bench/overload.py)"
    return [at_most(title, figures.get("p99_accepted_ms"), 10, "{:.1f} ms".format)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".bench", help="where the benchmarks wrote their JSON")
    args = parser.parse_args()
    names = ("serving", "startup", "batch", "training", "drift", "inference_log", "dask_scoring", "soak", "overload")
    sources = {name: load(args.dir / f"{name}.json") for name in names}
    rows = serving_rows(sources["serving"]) + startup_rows(sources["startup"])
    rows += batch_rows(sources["batch"]) + training_rows(sources["training"]) + drift_rows(sources["drift"])
    rows += inference_log_rows(sources["inference_log"]) + soak_rows(sources["soak"])
    rows += overload_rows(sources["overload"])
    table = Table(title="issues 7, 13, 15, 16 and 17: targets against this run", title_justify="left")
    for column in ("figure", "target", "measured", "met"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for row in rows:
        met = "-" if row.met is None else "yes" if row.met else "NO"
        table.add_row(row.figure, row.target, row.shown, met)
    console = Console(width=120)
    console.print(table)
    ratios = (sources["training"] or {}).get("ratios", {})
    for key, title in FLOORS.items():
        if key in ratios:
            console.print(f"floor, no FastTrack code: {title} = {ratios[key]:.2f}x")
    growth = (sources["batch"] or {}).get("growth", [])
    for key in dict.fromkeys(row["key"] for row in growth):
        steps = [row for row in growth if row["key"] == key]
        shown = ", ".join(f"{row['rows']:,} rows {row['memory_mb']:.0f} MB" for row in steps)
        console.print(f"fasttrack predict peak memory as the file grows, {steps[0]['title']}: {shown}")
    for size in (sources["dask_scoring"] or {}).get("sizes", []):
        rates, peaks = size["rows_s"], size["worker_peak_mb"]
        console.print(
            f"Dask scoring, {size['rows']:,} rows: {rates['dask-1']:,.0f} rows/s on 1 worker, {rates['dask-2']:,.0f} "
            f"on 2 (fasttrack predict {rates['predict']:,.0f}); worker peak memory {peaks['dask-1']:.0f} MB "
            f"(1 worker), {peaks['dask-2']:.0f} MB (2 workers), which the issue asks to stay flat as the rows grow"
        )
    drift = sources["drift"]
    if drift and drift.get("dataset_s"):
        console.print(
            f"fasttrack dataset from-log, {drift['rows']:,} logged rows ({drift['labelled']:.0%} labelled): "
            f"{drift['dataset_s']:.1f} s; the command's start-up alone: {drift.get('startup_s', 0):.1f} s"
        )
    for name, source in sources.items():
        console.print(f"{name}: " + (source.get("command", "?") if source else f"no {args.dir / name}.json"))
    missed = sum(1 for row in rows if row.met is False)
    unmeasured = sum(1 for row in rows if row.met is None)
    console.print(f"{len(rows) - missed - unmeasured} met, {missed} not met, {unmeasured} not measured")


if __name__ == "__main__":
    main()
