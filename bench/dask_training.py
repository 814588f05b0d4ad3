"""Distributed XGBoost training on more data than one worker's memory holds (``train_dask``, the Dask engine).

The data never exists in one process: each of ``--partitions`` partitions is generated on a worker from its own seed
(cleaned data: numbers with missing values, a boolean, two categorical features, a text target), ``--rows`` rows in
all. A 2-worker local cluster (``fasttrack.cluster.dask_client``) is started with ``--memory-limit`` per worker,
chosen below the data's in-memory size (measured first, by pandas' ``memory_usage(deep=True)`` summed over the
partitions on the workers), and :func:`fasttrack.training.dask_train.train_dask` fits XGBoost on it.

Printed: the data's size against the workers' limits, each step's wall time, each worker process's peak resident
memory (its ``VmHWM`` from ``/proc``, read on the worker after training), how much Dask spilled to disk, the held-out
metrics and the model's size. With ``--compare-local``, the same rows are then gathered into this process and fitted by
``fasttrack.training.train.train`` (single machine) for the test metric side by side; this process's own peak memory
is printed with it (only sensible when the data fits this machine).

Run: ``.venv/bin/python bench/dask_training.py [--rows 4000000] [--partitions 40] [--memory-limit 1GiB]
[--trees 50] [--compare-local] [--json FILE]``. Not part of the test suite; the machine's load average is printed
before and after, as other processes move every time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES_NUMERIC = 20


def generate(seed: int, rows: int) -> pd.DataFrame:
    """One partition of cleaned data (what ``fasttrack.data.clean`` makes of such a file), from its own seed."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = rng.normal(0, 1.0, rows)
    for i in range(FEATURES_NUMERIC):
        values = rng.normal(i, 1 + i, rows).round(3)
        signal += np.sin(values / (1 + i)) * (1 if i % 2 else -1)
        values[rng.random(rows) < 0.05] = np.nan
        columns[f"x{i}"] = values
    member = rng.random(rows) < 0.4
    signal += 0.8 * member
    columns["member"] = member
    cities = np.array([f"{name}, a city of the long-named kind" for name in "ABCDEFGHIJKL"], dtype=object)
    city = rng.choice(cities, rows)
    signal += (city == cities[7]) * 1.0 - (city == cities[3]) * 0.5
    columns["city"] = pd.Series(city, dtype="str")
    # Long category texts, as catalogues write them: the cleaned frame's size grows, the one-hot design does not.
    tail = "as written in the product catalogue, with its full description, care notes and supplier's reference"
    colours = np.array([f"{c} ({tail})" for c in ("red", "green", "blue")])
    colour = rng.choice(colours.astype(object), rows)
    signal += np.where(colour == colours[0], 0.7, np.where(colour == colours[2], -0.7, 0.0))
    colour[rng.random(rows) < 0.03] = None
    columns["colour"] = pd.Series(colour, dtype="str")
    columns["y"] = pd.Series(np.where(signal > 0.4, "yes", "no"), dtype="str")
    return pd.DataFrame(columns)


def schema_of(sample: pd.DataFrame) -> Any:
    from fasttrack.data.describe import infer_schema

    return infer_schema(sample, "y")


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def spilled(dask_worker: Any) -> int:
    """Bytes this worker wrote to its spill directory in all (0 when it never spilled); ``client.run`` passes the
    worker as ``dask_worker``."""
    metrics = getattr(dask_worker.data, "cumulative_metrics", {})
    return int(metrics.get(("disk-write", "bytes"), 0))


class Watch:
    """Polls the resident memory of some processes (by pid) every ``interval`` seconds in a thread, keeping each one's
    highest reading: a worker killed for its memory leaves its reading behind, where ``VmHWM`` would go with it."""

    def __init__(self, pids: list[int], interval: float = 0.5) -> None:
        import threading

        self.peaks = dict.fromkeys(pids, 0)
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            for pid in self.peaks:
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                rss = next((int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith("VmRSS:")), 0)
                self.peaks[pid] = max(self.peaks[pid], rss)

    def close(self) -> dict[int, int]:
        self.stop.set()
        self.thread.join()
        return self.peaks


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--partitions", type=int, default=40)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--compare-local", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import dask.dataframe as dd
    from dask.utils import parse_bytes

    from fasttrack.cluster import dask_client, describe
    from fasttrack.config import TrainConfig
    from fasttrack.training.dask_train import train_dask

    print(f"load average before: {os.getloadavg()}")
    per = args.rows // args.partitions
    seeds = list(range(args.partitions))
    meta = generate(0, 0)
    schema = schema_of(generate(10_000, 50_000))
    config = TrainConfig.model_validate(
        {
            "data": "memory://generated",
            "target": "y",
            "name": "dask-bench",
            "model": "xgboost",
            "params": {"n_estimators": args.trees},
            "cv_folds": 0,
        }
    )
    figures: dict[str, Any] = {"rows": args.rows, "partitions": args.partitions, "memory_limit": args.memory_limit}
    steps: list[tuple[str, float]] = []

    def step(text: str) -> None:
        steps.append((text, time.perf_counter()))
        print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)

    with dask_client(workers=2, memory_limit=args.memory_limit) as client:
        print(describe(client))
        frame = dd.from_map(generate, seeds, rows=per, meta=meta, enforce_metadata=False)
        size = int(frame.memory_usage(deep=True).sum().compute())
        limit = parse_bytes(args.memory_limit)
        print(f"data in memory: {mib(size)} ({args.rows:,} rows); each worker's limit: {mib(limit)}")
        figures.update(data_bytes=size, worker_limit_bytes=limit)
        pids = client.run(os.getpid)
        watch = Watch(list(pids.values()))
        started = time.perf_counter()
        try:
            result = train_dask(frame, config, schema, client=client, on_step=step)
        finally:
            polled = watch.close()
            highest = {pid: round(rss / 2**20) for pid, rss in polled.items()}
            print(f"workers' highest RSS polled (pid: MiB): {highest}")
            print(f"workers now: {client.run(os.getpid)} (at the start: {pids})")
        total = time.perf_counter() - started
        peaks = client.run(peak_rss)
        spills = client.run(spilled)
    print(f"train_dask: {total:.1f} s (fit {result.fit_seconds:.1f} s)")
    marks = [*(t for _, t in steps), started + total]
    for (text, at), end in zip(steps, marks[1:], strict=True):
        print(f"  {end - at:7.1f} s  {text}")
    for address, peak in sorted(peaks.items()):
        share = f"{peak / limit:.0%} of its limit"
        print(f"worker {address}: peak RSS {mib(peak)} ({share}), spilled {mib(spills[address])}")
    print(f"held-out metrics ({result.test_rows:,} rows): {json.dumps(result.evaluation.metrics, indent=None)}")
    print(f"notes: {result.evaluation.notes}")
    figures.update(
        seconds=total,
        fit_seconds=result.fit_seconds,
        worker_peak_bytes=list(peaks.values()),
        worker_spilled_bytes=list(spills.values()),
        metrics=result.evaluation.metrics,
        test_rows=result.test_rows,
        train_rows=result.train_rows,
    )
    if args.compare_local:
        from fasttrack.training.train import train

        local_frame = pd.concat([generate(seed, per) for seed in seeds], ignore_index=True)
        started = time.perf_counter()
        local = train(local_frame, config, schema)
        local_seconds = time.perf_counter() - started
        ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(
            f"single machine: {local_seconds:.1f} s (fit {local.fit_seconds:.1f} s), this process's peak RSS "
            f"{mib(ours)}; metrics {json.dumps(local.evaluation.metrics)}"
        )
        diff = {k: result.evaluation.metrics[k] - v for k, v in local.evaluation.metrics.items()}
        print(f"distributed - single machine: {json.dumps(diff)}")
        figures.update(local_seconds=local_seconds, local_metrics=local.evaluation.metrics, local_peak_bytes=ours)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
