"""Overload, open loop: requests at a fixed arrival rate, so that queueing shows, against a real ``fasttrack serve``.

A closed-loop tool (wrk) sends a request only when an answer came back: when the server slows down, so does the
load, and queueing hides. Here requests are due at fixed times (``rate`` per second, for ``duration`` seconds) and
each one's latency counts from when it was due, wrk2-style: a request that found every connection busy waits for
one, and that wait is in its latency. ``connections`` keep-alive connections (asyncio streams, raw HTTP/1.1) carry
them; when all are busy, requests wait in the generator, never unboundedly many (the run is bounded in time).

Steps, on the sample model (``configs/sample.yaml``, trained into a temporary home), one ``fasttrack serve`` (one
worker, no access log, registry polling off) per configuration:

1. find the sustainable rate: the highest of rising rates (short runs) at which every request is answered 200 and
   the p99 from the due time stays under ``--p99-ms`` (10), with the load limits at their defaults;
2. at ``--factor`` (4) times that rate, load the server with the limits at their defaults (``limits``) and with
   them off (``FASTTRACK_MAX_IN_FLIGHT=0``, ``FASTTRACK_REQUEST_TIMEOUT=0``: ``unlimited``), the two alternating over
   ``--rounds`` rounds;
3. print a table: offered rate (due and achieved), answered 200, shed (503), timed out (504), other failures, the
   p50/p99 of the accepted requests from when they were sent and from when they were due, and the server's
   resident memory after each run.

The generator shares the machine's cores with the server (and whatever else runs): the load average is printed
before and after. Run: ``.venv/bin/python bench/overload.py [--rate R] [--factor 4] [--duration 10]
[--connections 256] [--rows 1] [--json FILE]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, ROOT, first_record, free_port, request, rss_mb, train

console = Console(width=160)
READY_TIMEOUT = 120.0
#: Rates tried to find the sustainable one (requests/s), rising; the search stops at the first that fails.
SEARCH = (250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000)
CONFIGS = {
    "limits": {},
    "unlimited": {"FASTTRACK_MAX_IN_FLIGHT": "0", "FASTTRACK_REQUEST_TIMEOUT": "0"},
}


@dataclass
class Run:
    """One load run's answers: (status, seconds from sent, seconds from due) per request, and the server's RSS."""

    rate: float
    duration: float
    answers: list[tuple[int, float, float]] = field(default_factory=list)
    elapsed: float = 0.0
    rss_mb: float = 0.0

    def count(self, status: int) -> int:
        return sum(1 for s, _, _ in self.answers if s == status)

    def accepted(self, index: int) -> list[float]:
        return sorted(a[index] for a in self.answers if a[0] == 200)

    def percentile(self, q: float, index: int) -> float | None:
        values = self.accepted(index)
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def summary(self) -> dict[str, float | int | None]:
        statuses = Counter(s for s, _, _ in self.answers)
        return {
            "rate": self.rate,
            "achieved_rate": len(self.answers) / self.elapsed if self.elapsed else 0.0,
            "sent": len(self.answers),
            "ok": statuses.get(200, 0),
            "shed": statuses.get(503, 0),
            "timed_out": statuses.get(504, 0),
            "other": sum(c for s, c in statuses.items() if s not in (200, 503, 504)),
            "p50_sent_ms": self.percentile(0.50, 1),
            "p99_sent_ms": self.percentile(0.99, 1),
            "p50_due_ms": self.percentile(0.50, 2),
            "p99_due_ms": self.percentile(0.99, 2),
            "rss_mb": self.rss_mb,
        }


class Connection:
    """One keep-alive HTTP/1.1 connection sending the same POST again and again."""

    def __init__(self, port: int, payload: bytes) -> None:
        self.port = port
        self.payload = payload
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connect now (not at the first request, which would then pay for it)."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def send(self) -> int:
        """Send the request, read the whole answer; its status (0: the connection failed, it is reopened next)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(self.payload)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await self.reader.readexactly(length)
            if b"connection: close" in head.lower():
                self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            return 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(port: int, payload: bytes, rate: float, duration: float, connections: int) -> Run:
    """Requests due every ``1/rate`` s for ``duration`` s over ``connections`` connections (see the docstring)."""
    # Last in, first out, as a client's connection pool: a light load keeps reusing the same few connections.
    idle: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()
    pool = [Connection(port, payload) for _ in range(connections)]
    await asyncio.gather(*(conn.open() for conn in pool))  # connected before the clock starts
    for conn in pool:
        idle.put_nowait(conn)
    run = Run(rate, duration)
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        conn = await idle.get()
        sent = time.perf_counter()
        try:
            status = await conn.send()
        finally:
            idle.put_nowait(conn)
        done = time.perf_counter()
        run.answers.append((status, done - sent, done - due))

    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    start = time.perf_counter() + 0.05
    launched = 0
    while launched < total:
        now = time.perf_counter()
        due_now = min(total, int((now - start) * rate) + 1) if now >= start else 0
        while launched < due_now:
            task = asyncio.create_task(one(start + launched / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            launched += 1
        await asyncio.sleep(0.0005)
    if tasks:
        await asyncio.wait(tasks, timeout=duration + 60)
    run.elapsed = time.perf_counter() - start
    for conn in pool:
        conn.close()
    return run


def drive(coroutine: Coroutine[Any, Any, Run]) -> Run:
    """Run the generator on uvloop (as the server runs), so that its own cost leaves the server more of the CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def start_server(folder: Path, config: str, home: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "FASTTRACK_HOME": str(home), **CONFIGS[config]}
    cmd = [str(BIN / "fasttrack"), "serve", "--model", str(folder), "--port", str(port)]
    cmd += ["--reload-interval", "0", "--no-access-log"]
    log = (home / f"overload-{config}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while request(f"http://127.0.0.1:{port}/ready", timeout=1.0)[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{config} server did not start: see {log.name}")
        time.sleep(0.05)
    return proc, port


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def payload_for(record: dict[str, object], rows: int) -> bytes:
    body = json.dumps(record if rows == 1 else [record] * rows).encode()
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def sustainable(port: int, payload: bytes, args: argparse.Namespace) -> float:
    """The highest rate of :data:`SEARCH` whose short run answers every request 200 with p99 (due) under target."""
    best = SEARCH[0]
    for rate in SEARCH:
        run = drive(load(port, payload, rate, args.search_duration, args.connections))
        figures = run.summary()
        p99 = figures["p99_due_ms"]
        fine = figures["ok"] == figures["sent"] and p99 is not None and p99 < args.p99_ms
        console.print(f"  {rate:>6} req/s: {figures['ok']}/{figures['sent']} answered 200, p99 (due) {p99 or 0:.1f} ms")
        if not fine:
            break
        best = rate
    return float(best)


def fmt(value: float | int | None, spec: str = ".1f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=None, help="the sustainable rate (default: found first)")
    parser.add_argument("--factor", type=float, default=4.0, help="overload = factor x the sustainable rate")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each overload run")
    parser.add_argument("--search-duration", type=float, default=2.0, help="seconds of each search run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--rows", type=int, default=1, help="rows per request (1: one record; more: a batch)")
    parser.add_argument("--p99-ms", type=float, default=10.0, help="the latency target (p99 of accepted requests)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    console.print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()} ({os.cpu_count()} CPUs, shared)")
    configs = args.configs.split(",")
    results: dict[str, list[dict[str, float | int | None]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="fasttrack-overload-") as tmp:
        home = Path(tmp)
        folder, _ = train("sample", home)
        payload = payload_for(first_record(folder), args.rows)
        servers = {c: start_server(folder, c, home) for c in configs}
        try:
            rate = args.rate
            if rate is None:
                console.print(f"finding the sustainable rate ({configs[0]}, {args.rows} row(s) per request):")
                rate = sustainable(servers[configs[0]][1], payload, args)
            overload = rate * args.factor
            console.print(f"sustainable: {rate:.0f} req/s; overload: {overload:.0f} req/s for {args.duration:g} s")
            for rnd in range(args.rounds):
                order = configs if rnd % 2 == 0 else list(reversed(configs))
                for config in order:
                    proc, port = servers[config]
                    run = drive(load(port, payload, overload, args.duration, args.connections))
                    run.rss_mb = rss_mb(proc.pid)
                    results[config].append(run.summary())
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    table = Table(
        title=f"Open loop at {args.factor:g}x the sustainable rate ({rate:.0f} req/s), {args.rows} row(s) per request, "
        f"{args.connections} connections, {args.duration:g} s per run"
    )
    for column in (
        "server",
        "offered req/s (due / achieved)",
        "sent",
        "200",
        "503 shed",
        "504 timed out",
        "failed",
        "p50 / p99 ms (sent)",
        "p50 / p99 ms (due)",
        "RSS MB",
    ):
        table.add_column(column, justify="left" if column == "server" else "right")
    for config, runs in results.items():
        for figures in runs:
            table.add_row(
                config,
                f"{fmt(figures['rate'], '.0f')} / {fmt(figures['achieved_rate'], '.0f')}",
                str(figures["sent"]),
                str(figures["ok"]),
                str(figures["shed"]),
                str(figures["timed_out"]),
                str(figures["other"]),
                f"{fmt(figures['p50_sent_ms'])} / {fmt(figures['p99_sent_ms'])}",
                f"{fmt(figures['p50_due_ms'])} / {fmt(figures['p99_due_ms'])}",
                fmt(figures["rss_mb"], ".0f"),
            )
    console.print(table)
    console.print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")
    if args.json is not None:
        limited = results.get("limits", [])
        p99s = [r["p99_sent_ms"] for r in limited if r["p99_sent_ms"] is not None]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "command": " ".join(["bench/overload.py", *sys.argv[1:]]),
                    "sustainable_rate": rate,
                    "factor": args.factor,
                    "rows": args.rows,
                    "runs": results,
                    "p99_accepted_ms": statistics.median(p99s) if p99s else None,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
