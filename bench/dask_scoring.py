"""Batch scoring on Dask against one machine: rows/s with 1 and 2 workers beside ``fasttrack predict``, and each
worker's memory high-water mark as the input grows.

The workload is batch_scoring.py's adult-like hist GBDT pipeline (6 numeric and 8 categorical features with UCI
Adult's cardinalities, trained on 20,000 generated rows, exported to ONNX as registration does). The input is a
generated CSV of ``--base-rows`` rows (default 500,000: "adult-size" as the issue counts it, so 16x is 8 M rows)
repeated up to each ``--sizes`` multiple. At each size, side by side and interleaved ``--repeat`` times:

* ``fasttrack predict --runtime onnx`` into Parquet, in a process of its own (end to end, start-up included);
* :func:`fasttrack.batch.dask_score.score_dataset` (ONNX runtime) into a folder of Parquet parts on a
  ``LocalCluster`` of 1 and then 2 worker processes, one thread each, started afresh for every run through
  :func:`fasttrack.cluster.dask_client` (its start-up is shown apart: a cluster one connects to is already up).

Each worker's high-water mark is its process' peak resident memory (``getrusage`` ``ru_maxrss``) read on the worker
after the run; a fresh cluster per run makes it that run's peak. Partitions are CSV blocks of a fixed size, so it
should stay flat as the input grows. The 1-minute load average is printed with every row: the machine may be
shared, and a busy neighbour slows every figure, so compare rows made at similar loads and read the ratios.

Run: ``python bench/dask_scoring.py [--base-rows 500000] [--sizes 1,4,16] [--repeat 1] [--json FILE]``; a quick
run: ``--base-rows 100000 --sizes 1,4``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from batch_scoring import SEED, adult_like, resized, save_model

from fasttrack.batch.dask_score import score_dataset
from fasttrack.cluster import dask_client

RUNS = ("predict", "dask-1", "dask-2")


def peak_rss_mb() -> float:
    """This process' peak resident memory in MB (run on a worker by ``client.run``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def single_machine(folder: Path, source: Path, output: Path, home: Path) -> float:
    """Wall seconds of ``fasttrack predict --runtime onnx`` into Parquet."""
    command = [sys.executable, "-m", "fasttrack", "predict", "--model", str(folder), "--data", str(source)]
    command += ["--out", str(output), "--runtime", "onnx"]
    started = time.perf_counter()
    done = subprocess.run(
        command, env={**os.environ, "FASTTRACK_HOME": str(home)}, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"fasttrack predict failed: {done.stderr.strip()}")
    output.unlink()
    return wall


def on_dask(folder: Path, source: Path, output: Path, workers: int) -> tuple[float, float, list[float]]:
    """(cluster start-up seconds, scoring seconds, each worker's peak memory in MB) on a fresh cluster."""
    started = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        up = time.perf_counter() - started
        summary = score_dataset(folder, str(source), str(output), client=client, runtime="onnx")
        peaks = sorted(client.run(peak_rss_mb).values())
    shutil.rmtree(output)
    return up, summary.seconds, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base-rows", type=int, default=500_000, help="rows at size 1x (adult-size)")
    parser.add_argument("--sizes", default="1,4,16", help="multiples of --base-rows")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per figure (the median is shown)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"batch scoring, adult-like hist GBDT (ONNX), {args.base_rows:,} rows x {args.sizes}, median of {args.repeat}"
    )
    print("rows/s: fasttrack predict end to end | score_dataset on 1 and 2 workers (cluster up) | ratios to predict")
    print("peak MB: each worker's high-water mark | cluster start-up s | 1-minute load average\n")
    header = f"{'size':>4} {'rows':>11} {'input MB':>9} {'predict':>10} {'dask 1w':>10} {'dask 2w':>10}"
    header += f" {'1w/pred':>8} {'2w/pred':>8} {'2w/1w':>6} {'1w peak MB':>11} {'2w peak MB':>12}"
    print(f"{header} {'up s':>5} {'load':>5}")
    figures: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="fasttrack-dask-bench-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(SEED)
        folder = save_model(adult_like(20_000, rng), "income", "hist_gradient_boosting", root / "model")
        base = root / "base.csv"
        adult_like(args.base_rows, rng).drop(columns=["income"]).to_csv(base, index=False)
        for size in sizes:
            rows = args.base_rows * size
            source = root / "input.csv"
            resized(base, args.base_rows, rows, source)
            mb = source.stat().st_size / 1e6
            walls: dict[str, list[float]] = {run: [] for run in RUNS}
            peaks: dict[str, list[float]] = {"dask-1": [], "dask-2": []}
            ups, loads = [], []
            for _ in range(max(args.repeat, 1)):
                loads.append(os.getloadavg()[0])
                walls["predict"].append(single_machine(folder, source, root / "scored.parquet", root))
                for workers in (1, 2):
                    up, seconds, worker_peaks = on_dask(folder, source, root / "scored", workers)
                    walls[f"dask-{workers}"].append(seconds)
                    peaks[f"dask-{workers}"].append(max(worker_peaks))
                    ups.append(up)
            rate = {run: rows / statistics.median(walls[run]) for run in RUNS}
            peak = {run: statistics.median(values) for run, values in peaks.items()}
            load = statistics.median(loads)
            print(
                f"{size:>3}x {rows:11,} {mb:9,.0f} {rate['predict']:10,.0f} {rate['dask-1']:10,.0f} "
                f"{rate['dask-2']:10,.0f} {rate['dask-1'] / rate['predict']:8.2f} "
                f"{rate['dask-2'] / rate['predict']:8.2f} {rate['dask-2'] / rate['dask-1']:6.2f} "
                f"{peak['dask-1']:11,.0f} {peak['dask-2']:12,.0f} {statistics.median(ups):5.1f} {load:5.1f}",
                flush=True,
            )
            figures.append(
                {
                    "size": size,
                    "rows": rows,
                    "input_mb": mb,
                    "rows_s": rate,
                    "worker_peak_mb": peak,
                    "cluster_startup_s": statistics.median(ups),
                    "load": load,
                }
            )
            source.unlink()
    print(f"\n{os.cpu_count()} CPUs on this machine; 2w/1w above 1 is what the second worker adds.")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["bench/dask_scoring.py", *sys.argv[1:]])
        args.json.write_text(json.dumps({"command": command, "sizes": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
