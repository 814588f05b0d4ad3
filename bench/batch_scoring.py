"""Batch scoring throughput: ``fasttrack predict`` through scikit-learn and through ONNX Runtime, side by side.

Five workloads, generated with a fixed seed (nothing downloaded): the bundled sample's logistic regression
(two numeric features) and an adult-like categorical pipeline (6 numeric and 8 categorical features with the
UCI Adult cardinalities) with each model kind: logistic regression, histogram gradient boosting, a random forest
and XGBoost, with FastTrack's default parameters. Each model is trained
on 20,000 rows, exported to ONNX exactly as registration does and saved as a model folder; then
``fasttrack predict --runtime ENGINE`` scores a generated CSV of ``--rows`` rows (default one million) into a
CSV, in a process of its own. The table gives rows per second end to end (process start-up included) and of
the scoring alone (as the command reports it), the command's peak memory, and its start-up: the wall time of
the same command on a 10-row file (imports, model loading, writing), which is the floor under every run.

Each figure is the median of ``--repeat`` runs (default 3), and the 1-minute load average is printed with
it: the machine is shared, and a busy neighbour slows every figure, so compare runs made at similar loads.
With ``--baseline-src DIR`` (another checkout's ``src``, e.g. main's before a change) every engine also runs on
that code, on the same model folder and file, the two in turn within each repeat (``ENGINE@base`` rows, and
the ratio current ÷ baseline of the medians): a side-by-side figure that a busy machine moves less.

Then, for the ONNX engine, the same command once on the same file cut to and repeated up to each ``--growth``
multiple of ``--rows`` (default a quarter and four times, the header kept once): its peak memory as the file
grows, which streaming in batches keeps flat.

Run: ``python bench/batch_scoring.py [--rows 1000000] [--batch-rows 100000] [--engines sklearn,onnx]
[--workloads sample,adult-logistic,adult-gbdt,adult-forest,adult-xgboost] [--repeat 3] [--growth 0.25,4]
[--baseline-src DIR] [--json FILE]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fasttrack.config import TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.export.check import export_to_folder
from fasttrack.registry.model_folder import DataLineage, metadata_for, save_model_folder
from fasttrack.training.train import train

SEED = 7
CARDINALITIES = {
    "workclass": 9,
    "education": 16,
    "marital_status": 7,
    "occupation": 15,
    "relationship": 6,
    "race": 5,
    "sex": 2,
    "native_country": 42,
}


def sample_like(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """The bundled sample's shape: two numeric features and a negative/positive label."""
    f1 = rng.normal(4.0, 2.0, rows).round(2)
    f2 = rng.normal(3.0, 1.5, rows).round(2)
    positive = rng.random(rows) < 1.0 / (1.0 + np.exp(-1.6 * (f1 - f2 - 1.0)))
    return pd.DataFrame({"feature_1": f1, "feature_2": f2, "label": np.where(positive, "positive", "negative")})


def adult_like(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Adult's shape: six numeric features, eight categorical ones (skewed), some missing, a text label."""
    frame: dict[str, object] = {
        "age": rng.integers(17, 90, rows),
        "fnlwgt": rng.integers(12_000, 1_500_000, rows),
        "education_num": rng.integers(1, 17, rows),
        "capital_gain": np.where(rng.random(rows) < 0.08, rng.integers(1, 99_999, rows), 0),
        "capital_loss": np.where(rng.random(rows) < 0.05, rng.integers(1, 4_356, rows), 0),
        "hours_per_week": rng.integers(1, 99, rows),
    }
    score = (np.asarray(frame["age"]) - 40) / 20 + (np.asarray(frame["education_num"]) - 10) / 4
    for name, k in CARDINALITIES.items():
        weights = 1.0 / np.arange(1, k + 1)
        codes = rng.choice(k, rows, p=weights / weights.sum())
        values = np.array([f" {name}-{i}" for i in range(k)], dtype=object)[codes]
        values[rng.random(rows) < 0.01] = " ?"
        frame[name] = values
        score = score + (codes % 3 - 1) * 0.3
    frame["income"] = np.where(score + rng.normal(0, 1, rows) > 0.5, " >50K", " <=50K")
    return pd.DataFrame(frame)


def save_model(frame: pd.DataFrame, target: str, model: str, folder: Path) -> Path:
    """Train on ``frame``, export to ONNX as registration does, and save the model folder (no tracking store)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    config = TrainConfig.model_validate({"data": "bench.csv", "target": target, "model": model, "cv_folds": 0})
    schema = infer_schema(frame, target)
    result = train(frame, config, schema)
    staging = folder.parent / f"{folder.name}-staging"
    info, onnx_file = export_to_folder(result.pipeline, schema, result.task, result.X_test, staging)
    if onnx_file is None:
        raise SystemExit(f"{model}: the ONNX export {info.status}: {info.reason}")
    lineage = DataLineage(source="bench", fingerprint="-", rows=len(frame), columns=frame.shape[1])
    metadata = metadata_for(result, name=f"bench-{model}", data=lineage, onnx=info)
    return save_model_folder(result, folder, metadata, extra_files=[onnx_file])


def predict(
    folder: Path, source: Path, output: Path, engine: str, batch_rows: int, home: Path, src: Path | None = None
) -> tuple[float, float, float]:
    """Run ``fasttrack predict`` (on the code in ``src`` when given): (wall seconds, scoring rows/s as it reports
    them, peak memory in MB)."""
    command = [sys.executable, "-m", "fasttrack", "predict", "--model", str(folder), "--data", str(source)]
    command += ["--out", str(output), runtime_option(src), engine, "--batch-rows", str(batch_rows)]
    env = {**os.environ, "FASTTRACK_HOME": str(home)}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    # GNU time reports the command's own peak memory (a child forked from this process would be charged
    # this process' memory too).
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").is_file() else []
    started = time.perf_counter()
    done = subprocess.run([*timer, *command], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"fasttrack predict failed: {done.stderr.strip()}")
    reported = re.search(r"\((?:onnx|sklearn), [0-9.]+ s, ([0-9,]+) rows/s\)", done.stdout)
    rate = float(reported.group(1).replace(",", "")) if reported else 0.0
    lines = done.stderr.strip().splitlines()
    memory = int(lines[-1]) / 1024 if timer and lines and lines[-1].isdigit() else float("nan")
    return wall, rate, memory


def runtime_option(src: Path | None) -> str:
    """The option that picks ONNX or scikit-learn: ``--runtime``, or ``--engine`` for a baseline from before the
    CLI gave ``--engine`` to the compute engine (local or Dask)."""
    if src is None:
        return "--runtime"
    cli = (src / "fasttrack" / "cli").glob("*.py")
    return "--runtime" if any('"--runtime"' in path.read_text() for path in cli) else "--engine"


def resized(source: Path, rows: int, wanted: int, out: Path) -> None:
    """``source`` (a CSV of ``rows`` data rows) cut to, or repeated up to, ``wanted`` data rows, header once."""
    whole, part = divmod(wanted, rows)
    with source.open("rb") as file, out.open("wb") as written:
        written.write(file.readline())
        body = file.tell()
        for _ in range(whole):
            file.seek(body)
            shutil.copyfileobj(file, written)
        file.seek(body)
        written.writelines(itertools.islice(file, part))


WORKLOADS = {
    "sample": ("sample, logistic", sample_like, "label", "linear"),
    "adult-logistic": ("adult-like, logistic", adult_like, "income", "linear"),
    "adult-gbdt": ("adult-like, hist GBDT", adult_like, "income", "hist_gradient_boosting"),
    "adult-forest": ("adult-like, random forest", adult_like, "income", "random_forest"),
    "adult-xgboost": ("adult-like, XGBoost", adult_like, "income", "xgboost"),
}
#: The workloads run when ``--workloads`` is not given (``make bench``'s): the three of the targets.
DEFAULT_WORKLOADS = "sample,adult-logistic,adult-gbdt"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--engines", default="sklearn,onnx")
    parser.add_argument("--workloads", default=DEFAULT_WORKLOADS, help=f"some of {', '.join(WORKLOADS)}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is shown)")
    parser.add_argument(
        "--growth",
        default="0.25,4",
        help="multiples of --rows for the memory-as-the-file-grows runs (onnx engine, one run each; '' for none)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="another checkout's src directory: run every engine on that code too, side by side",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures to this file (bench/targets.py)"
    )
    args = parser.parse_args()
    engines = args.engines.split(",")
    unknown = set(args.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}; use some of {', '.join(WORKLOADS)}")
    rng = np.random.default_rng(SEED)
    print(f"fasttrack predict: {args.rows:,} CSV rows to CSV, batches of {args.batch_rows:,}, median of {args.repeat}")
    print("rows/s end to end (start-up included) | of the scoring alone | peak memory | start-up (10 rows)\n")
    header = f"{'workload':24} {'engine':8} {'end to end':>12} {'scoring':>12} {'memory MB':>10} {'start-up s':>11}"
    print(f"{header} {'input MB':>9} {'load':>5}")
    figures: list[dict[str, object]] = []
    growth: list[dict[str, object]] = []
    factors = sorted({1.0, *(float(f) for f in args.growth.split(",") if f.strip())})
    with tempfile.TemporaryDirectory(prefix="fasttrack-bench-") as tmp:
        root = Path(tmp)
        for number, key in enumerate(WORKLOADS):
            if key not in args.workloads.split(","):
                continue
            title, make, target, model = WORKLOADS[key]
            folder = save_model(make(20_000, rng), target, model, root / f"model-{number}")
            source = root / "input.csv"
            rows = make(args.rows, rng).drop(columns=[target])
            rows.to_csv(source, index=False)
            tiny = root / "tiny.csv"
            rows.head(10).to_csv(tiny, index=False)
            size = source.stat().st_size / 1e6
            for engine in engines:
                # The current code and the baseline's (when given) in turn within each repeat.
                variants: list[tuple[str, Path | None]] = [(engine, None)]
                if args.baseline_src is not None:
                    variants.append((f"{engine}@base", args.baseline_src))
                runs: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _ in variants}
                starts: dict[str, list[float]] = {label: [] for label, _ in variants}
                loads: list[float] = []
                for _ in range(max(args.repeat, 1)):
                    loads.append(os.getloadavg()[0])
                    for label, src in variants:
                        scored = root / "scored.csv"
                        runs[label].append(predict(folder, source, scored, engine, args.batch_rows, root, src))
                        starts[label].append(predict(folder, tiny, scored, engine, args.batch_rows, root, src)[0])
                walls: dict[str, float] = {}
                for label, _ in variants:
                    wall, scoring, memory = (statistics.median(run[i] for run in runs[label]) for i in range(3))
                    walls[label] = wall
                    print(
                        f"{title:24} {label:8} {args.rows / wall:12,.0f} {scoring:12,.0f} {memory:10,.0f} "
                        f"{statistics.median(starts[label]):11.2f} {size:9.0f} {statistics.median(loads):5.1f}",
                        flush=True,
                    )
                    figures.append(
                        {
                            "key": key,
                            "title": title,
                            "engine": label,
                            "end_to_end_rows_s": args.rows / wall,
                            "scoring_rows_s": scoring,
                            "memory_mb": memory,
                            "startup_s": statistics.median(starts[label]),
                            "load": statistics.median(loads),
                        }
                    )
                if args.baseline_src is not None:
                    ratio = walls[f"{engine}@base"] / walls[engine]
                    print(f"{title:24} {engine:8} end to end, this code ÷ baseline: {ratio:.2f}x", flush=True)
                memory = statistics.median(run[2] for run in runs[engine])
                if engine == "onnx" and len(factors) > 1:
                    for factor in factors:
                        wanted = int(args.rows * factor)
                        if factor == 1.0:
                            used, mb = memory, size
                        else:
                            grown = root / "grown.csv"
                            resized(source, args.rows, wanted, grown)
                            used = predict(folder, grown, root / "scored.csv", engine, args.batch_rows, root)[2]
                            mb = grown.stat().st_size / 1e6
                            grown.unlink()
                        growth.append({"key": key, "title": title, "rows": wanted, "input_mb": mb, "memory_mb": used})
    if growth:
        print(f"\npeak memory as the file grows (onnx, batches of {args.batch_rows:,}; 1x is the median above)\n")
        print(f"{'workload':24} {'rows':>11} {'input MB':>9} {'memory MB':>10}")
        for row in growth:
            print(f"{row['title']:24} {row['rows']:11,} {row['input_mb']:9,.0f} {row['memory_mb']:10,.0f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["bench/batch_scoring.py", *sys.argv[1:]])
        report = {"command": command, "rows": args.rows, "workloads": figures, "growth": growth}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
