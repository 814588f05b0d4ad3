"""What the inference log costs: the same FastTrack server with the log off and on, under wrk and in one process.

For each model (``--models``, as bench/serving.py names them: ``sample``, the 2-feature logistic regression;
``adult``, the 14-feature categorical pipeline with histogram GBDT) it trains into a temporary FASTTRACK_HOME, then:

* **wrk**: starts two ``fasttrack serve --model FOLDER`` processes on free loopback ports (one worker, registry
  polling off, no access log), ``off`` without the log and ``on`` with ``FASTTRACK_INFERENCE_LOG`` pointing at a
  temporary folder and the log's default settings, and loads them in turn with ``wrk -t2 -cC -dDs`` (one record per
  request, the order rotating each round). Printed: req/s and server CPU µs per request (median, min-max over
  rounds), start-up (process start -> ready) and resident memory once ready, and the ratio on ÷ off per round
  (issue 15's target: at least 0.85). Then whether the log kept up with the server's full single-row rate: the
  rows it wrote (``fasttrack_inference_log_written_rows_total``, waited for until its last buffer is due, at most
  ``FASTTRACK_INFERENCE_LOG_ROTATE_SECONDS`` later) against the rows predicted (``fasttrack_prediction_rows_total``),
  the rows dropped, and the rows and distinct ids read back from the Parquet files after the server's SIGTERM.
* **in process**: two apps in this process (``create_app`` on the same folder, their lifespans run, the heap
  settled as the server does), log off and on, called in turn through their ASGI interface with ``POST /predict``:
  ``--calls`` requests per turn, one at a time and 16 at once (the 16 share one model call), ``--turns`` short turns
  each, so that the load of the machine moves both alike. Printed: the event loop thread's CPU µs per request, off
  and on, and the added CPU per turn (median and quartiles), and, apart, the writer thread's CPU per row logged (its
  own CPU clock); the two add up to what the log costs a request. Also timed apart, in a loop: the request path's
  call (``LogSource.predictions``) and the writer's conversion to Arrow of one-row calls, per row.

Run: ``.venv/bin/python bench/inference_log.py [--models sample,adult] [--rounds 5] [--duration 5] [--json FILE]``.
Needs ``wrk`` (see bench/serving.py). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# bench/serving.py, beside this file (Python puts the script's folder first on sys.path): the same wrk driver,
# training, server start and stop, so both benchmarks measure the same way.
import serving as wrkbench
from rich.console import Console
from rich.table import Table

console = Console(width=160)
#: The log's own defaults (Settings), which the "on" server runs with.
ROTATE_SECONDS = 60.0


def scrape(server: wrkbench.Server) -> dict[str, float]:
    """Every sample of /metrics (name{labels} -> value)."""
    status, text = wrkbench.request(f"http://127.0.0.1:{server.port}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted)
    )


def wrk_side_by_side(model: str, folder: Path, home: Path, args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    record = wrkbench.first_record(folder)
    body = json.dumps(record)
    log_root = home / f"log-{model}"
    command = [str(wrkbench.BIN / "fasttrack"), "serve", "--model", str(folder), "--port", "{port}"]
    command += ["--reload-interval", "0", "--no-access-log"]
    servers = [
        wrkbench.Server("off", command, "/ready", "/predict", body),
        wrkbench.Server("on", command, "/ready", "/predict", body, {"FASTTRACK_INFERENCE_LOG": str(log_root)}),
    ]
    figures: dict[str, Any] = {"model": model}
    try:
        for server in servers:
            wrkbench.start(server, home)
            if server.error:
                raise RuntimeError(f"{server.name}: {server.error}")
        for server in servers:
            wrkbench.load(wrk, server, args, args.warmup)
        for round_ in range(args.rounds):
            for server in servers[round_ % 2 :] + servers[: round_ % 2]:
                server.runs.append(wrkbench.load(wrk, server, args, args.duration))
        on = servers[1]
        # The log's last buffer is written once its oldest row is ROTATE_SECONDS old: wait for it, then compare.
        deadline = time.monotonic() + ROTATE_SECONDS + 30
        while True:
            samples = scrape(on)
            predicted = total(samples, "fasttrack_prediction_rows_total")
            written = total(samples, "fasttrack_inference_log_written_rows_total", table="predictions")
            dropped = total(samples, "fasttrack_inference_log_dropped_rows_total")
            if written + dropped >= predicted or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        figures.update(
            predicted=predicted,
            written=written,
            dropped=dropped,
            files=total(samples, "fasttrack_inference_log_files_total", table="predictions"),
            queue_rows=total(samples, "fasttrack_inference_log_queue_rows"),
        )
    finally:
        for server in servers:
            wrkbench.stop(server)
    import pyarrow.dataset as ds

    ids = ds.dataset(log_root / "predictions", format="parquet", partitioning="hive").to_table(["prediction_id"])
    figures["read_back"] = ids.num_rows
    figures["distinct_ids"] = len(set(ids.column("prediction_id").to_pylist()))
    for server in servers:
        figures[server.name] = {
            "rps": statistics.median(r["rps"] for r in server.runs),
            "cpu_us": statistics.median(r["cpu_us"] for r in server.runs),
            "rps_runs": [r["rps"] for r in server.runs],
            "cpu_runs": [r["cpu_us"] for r in server.runs],
            "bad": sum(r["bad"] + r["socket_errors"] for r in server.runs),
            "startup_s": server.startup_s,
            "rss_ready_mb": server.rss_ready_mb,
        }
    off, on_runs = servers[0].runs, servers[1].runs
    figures["ratios"] = [b["rps"] / a["rps"] for a, b in zip(off, on_runs, strict=True)]
    figures["ratio"] = statistics.median(figures["ratios"])
    return figures


# ------------------------------------------------------------------------------------------------- in process
def asgi_scope(body: bytes) -> dict[str, Any]:
    """``POST /predict`` as Uvicorn hands it to the app (JSON, a Content-Length: the fast lane takes it)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, body: bytes) -> None:
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(asgi_scope(body), receive, send)
    if statuses != [200]:
        raise RuntimeError(f"POST /predict answered {statuses}")


async def timed(app: Any, body: bytes, calls: int, together: int) -> tuple[float, float]:
    """Wall and CPU µs per request over ``calls`` requests, ``together`` at a time. The CPU is this thread's (the
    event loop's: the request path), not the log writer's, which the caller measures on its own."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls // together):
        if together == 1:
            await call(app, body)
        else:
            await asyncio.gather(*(call(app, body) for _ in range(together)))
    done = calls // together * together
    return (time.perf_counter() - wall) / done * 1e6, (time.thread_time() - cpu) / done * 1e6


def quartiles(values: list[float]) -> list[float]:
    """The median and the quartiles around it: [q1, median, q3]."""
    q1, median, q3 = statistics.quantiles(values, n=4)
    return [q1, median, q3]


async def in_process_async(folder: Path, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The two apps called in turn, ``args.turns`` short turns each, so that the machine's load moves both alike."""
    from fasttrack.config import Settings
    from fasttrack.serving.app import create_app

    body = json.dumps(wrkbench.first_record(folder)).encode()
    base = Settings(home=home, model=str(folder), reload_interval=0)
    log_root = home / f"in-process-log-{folder.parent.name}"
    apps = {
        "off": create_app(base, settle=True),
        "on": create_app(base.model_copy(update={"inference_log": str(log_root)}), settle=True),
    }
    contexts = {name: app.router.lifespan_context(app) for name, app in apps.items()}
    for name, context in contexts.items():
        await context.__aenter__()
        if not apps[name].state.manager.wait_ready(120):
            raise RuntimeError(f"the {name} app did not load {folder}")
    writer = next(t for t in threading.enumerate() if t.name == "fasttrack-inference-log")
    writer_clock = time.pthread_getcpuclockid(writer.ident or 0)
    figures: dict[str, Any] = {}
    try:
        for together in (1, 16):
            for app in apps.values():  # warm both
                await timed(app, body, args.calls, together)
            await asyncio.sleep(0.5)  # the writer converts the warm-up's rows
            writer_before, logged = time.clock_gettime(writer_clock), 0
            runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for turn in range(args.turns):
                order = ["off", "on"] if turn % 2 == 0 else ["on", "off"]
                for name in order:
                    runs[name].append(await timed(apps[name], body, args.calls, together))
                logged += args.calls // together * together
            await asyncio.sleep(0.5)  # ... and the last turn's
            writer_us = (time.clock_gettime(writer_clock) - writer_before) / logged * 1e6
            added_wall = [on[0] - off[0] for off, on in zip(runs["off"], runs["on"], strict=True)]
            added_cpu = [on[1] - off[1] for off, on in zip(runs["off"], runs["on"], strict=True)]
            figures[f"together_{together}"] = {
                "off_wall_us": statistics.median(r[0] for r in runs["off"]),
                "on_wall_us": statistics.median(r[0] for r in runs["on"]),
                "off_cpu_us": statistics.median(r[1] for r in runs["off"]),
                "on_cpu_us": statistics.median(r[1] for r in runs["on"]),
                "added_wall_us": quartiles(added_wall),
                "added_cpu_us": quartiles(added_cpu),
                "writer_cpu_us_per_row": writer_us,
            }
    finally:
        for context in contexts.values():
            await context.__aexit__(None, None, None)
    tally = apps["on"].state.manager.inference_log.tally
    figures["in_process_log"] = {
        "written": tally.written_rows,
        "dropped": {str(k): v for k, v in tally.dropped_rows.items()},
    }
    figures["parts"] = parts(folder, home)
    return figures


def parts(folder: Path, home: Path) -> dict[str, float]:
    """The log's two parts timed apart: the request path's call, and the writer's conversion per row."""
    from fasttrack.config import Settings
    from fasttrack.monitoring.log_writer import PREDICTIONS, InferenceLog, _prediction_batch
    from fasttrack.registry.resolve import resolve_model
    from fasttrack.serving.predictor import Predictor

    settings = Settings(home=home, model=str(folder), reload_interval=0)
    predictor = Predictor.from_resolved(resolve_model(str(folder), settings), settings=settings)
    record = wrkbench.first_record(folder)
    model_input = predictor.validate([record])
    batch = predictor.predict_input(model_input, probabilities=True)
    log = InferenceLog(str(home / "parts-log"), queue_rows=10**9)
    source = log.source(
        predictor.name,
        predictor.version,
        predictor.schema.features,
        classifier=predictor.is_classifier,
        labels=predictor.labels or (),
    )
    calls = 200_000
    start = time.perf_counter()
    for number in range(calls):
        source.predictions(model_input.values, batch.values, batch.probabilities, [str(number)])
    request_path = (time.perf_counter() - start) / calls * 1e6
    items = log._items
    schema = source.schemas[PREDICTIONS]
    start = time.perf_counter()
    for first in range(0, len(items), 2000):  # the writer's take at ~10,000 requests/s, 0.2 s apart
        _prediction_batch(schema, items[first : first + 2000])
    conversion = (time.perf_counter() - start) / len(items) * 1e6
    return {"request_path_us": request_path, "writer_convert_us_per_row": conversion}


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    model = figures["model"]
    table = Table(title=f"{model}: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds")
    for column in ("server", "req/s", "CPU µs/req", "ready s", "RSS MB ready", "notes"):
        table.add_column(column, justify="left" if column in ("server", "notes") else "right")
    for name in ("off", "on"):
        side = figures[name]
        table.add_row(
            f"fasttrack, log {name}",
            wrkbench.spread(side["rps_runs"], ".0f"),
            wrkbench.spread(side["cpu_runs"], ".0f"),
            f"{side['startup_s']:.2f}",
            f"{side['rss_ready_mb']:.0f}",
            f"{side['bad']:.0f} non-2xx/socket errors" if side["bad"] else "",
        )
    console.print(table)
    console.print(
        f"{model}: log on ÷ off req/s = {wrkbench.spread(figures['ratios'], '.2f')} (per round; target ≥ 0.85)"
    )
    console.print(
        f"{model}: rows predicted {figures['predicted']:,.0f}, written {figures['written']:,.0f}, dropped "
        f"{figures['dropped']:,.0f}, in {figures['files']:.0f} files; read back {figures['read_back']:,} rows, "
        f"{figures['distinct_ids']:,} distinct ids"
    )
    inside = figures.get("in_process")
    if inside:
        report_in_process(model, inside)


def report_in_process(model: str, inside: dict[str, Any]) -> None:
    for together in (1, 16):
        part = inside[f"together_{together}"]
        q1, added, q3 = part["added_cpu_us"]
        console.print(
            f"{model}, in process, {together} at a time: request path CPU µs per request off {part['off_cpu_us']:.1f}"
            f" / on {part['on_cpu_us']:.1f}, added {added:.1f} (quartiles {q1:.1f} to {q3:.1f} over turns); the "
            f"writer thread {part['writer_cpu_us_per_row']:.1f} µs of CPU per row; wall µs off "
            f"{part['off_wall_us']:.1f} / on {part['on_wall_us']:.1f}"
        )
    parts_ = inside["parts"]
    console.print(
        f"{model}, apart: the request path's call {parts_['request_path_us']:.2f} µs; the writer's conversion "
        f"{parts_['writer_convert_us_per_row']:.2f} µs per row (calls of one row); in-process log "
        f"{inside['in_process_log']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="sample,adult", help="comma-separated: sample, adult")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per server and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=1_600, help="in-process requests per app and turn")
    parser.add_argument("--turns", type=int, default=40, help="in-process turns per app")
    parser.add_argument("--no-wrk", action="store_true", help="only the in-process measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here (bench/targets.py)")
    args = parser.parse_args()
    wrk = None if args.no_wrk else wrkbench.ensure_wrk()
    console.print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="fasttrack-bench-log-") as tmp:
        home = Path(tmp)
        for model in args.models.split(","):
            folder, _ = wrkbench.train(model, home)
            figures: dict[str, Any] = {"model": model}
            if wrk is not None:
                figures = wrk_side_by_side(model, folder, home, args, wrk)
            figures["in_process"] = asyncio.run(in_process_async(folder, home, args))
            if wrk is not None:
                report(figures, args)
            else:
                report_in_process(model, figures["in_process"])
            results.append(figures)
    console.print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["bench/inference_log.py", *sys.argv[1:]])
        args.json.write_text(json.dumps({"command": command, "models": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
