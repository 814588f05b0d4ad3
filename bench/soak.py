"""Soak: a bounded mixed load on one real ``fasttrack serve``, watching memory, file descriptors and errors.

A model is trained into a temporary FASTTRACK_HOME (``--model``: ``sample`` or ``adult``, as in bench/serving.py)
and served by ``fasttrack serve`` on a free loopback port (one worker). ``--clients`` threads, each on its own
keep-alive connection, then send for ``--duration`` seconds a fixed mix of

* single records to ``POST /predict`` (the bulk of the traffic);
* batches of ``--batch`` records with ``?ids=true``, whose ids are sent back to ``POST /feedback`` with labels;
* bad bodies (malformed JSON, a wrong type, an unknown field, a body over the size limit), each expected to be a
  4xx, never a 5xx;
* ``POST /admin/reload`` every ``--reload-every`` seconds, from one client.

Every ``--sample`` seconds the server's resident memory (VmRSS of the process and its children) and open file
descriptors are read from /proc. The first ``--warmup`` share of the run is warm-up (allocator pools, caches and
the drift and feedback windows filling up); the report compares what comes after with the end of warm-up: RSS
growth (target: under 5 %), file descriptors (target: no growth), and the answers per kind, where an answer that is
not the expected one (a 5xx, a refused connection, a 4xx to a valid request or a 2xx to a bad one) is an error.

Run: ``.venv/bin/python bench/soak.py [--duration 600] [--clients 4] [--model sample] [--json FILE]``. The default is
the 10 minutes the hardening issue asks for; ``--duration 60`` is a quick look. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/serving.py, beside this file (Python puts the script's folder first on sys.path): training, server start
# and stop, resident memory.
import serving as wrkbench
from rich.console import Console
from rich.table import Table

console = Console(width=120)
#: Per 100 requests of a client: what it sends (the rest are single records).
MIX = {"batch": 8, "bad": 4}
RSS_TARGET = 0.05


@dataclass
class Tally:
    """Answers per kind of request and status, and the unexpected ones (shared by the client threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, status: int, expected: bool, text: str = "") -> None:
        with self.lock:
            self.answers[kind, status] += 1
            if not expected:
                key = f"{kind} {status}"
                self.unexpected[key] += 1
                self.examples.setdefault(key, text[:200])


def bad_bodies(record: dict[str, Any], limit: int) -> list[tuple[str, bytes]]:
    """Bodies a server must refuse with a 4xx: name and bytes."""
    name = next(iter(record))
    return [
        ("malformed", b'{"' + name.encode() + b'": '),
        ("wrong type", json.dumps({**record, name: {"nested": [1, 2]}}).encode()),
        ("unknown field", json.dumps({**record, "no_such_feature_xyz": 1}).encode()),
        ("too large", b"[" + b"1," * (limit // 2) + b"1]"),
    ]


class Client(threading.Thread):
    """One keep-alive connection sending the mix until ``deadline``."""

    def __init__(self, index: int, port: int, record: dict[str, Any], labels: list[Any], args: Any, tally: Tally):
        super().__init__(daemon=True, name=f"soak-{index}")
        self.index, self.port, self.record, self.labels, self.args, self.tally = (
            index,
            port,
            record,
            labels,
            args,
            tally,
        )
        self.rng = random.Random(index)
        self.bad = bad_bodies(record, args.max_body_bytes)
        self.deadline = 0.0
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for _ in range(2):  # one new connection when the server closed the old one (it does after a 413)
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                self.conn = None
                error = exc
        return 0, str(error).encode()

    def run(self) -> None:
        single = json.dumps(self.record).encode()
        batch = json.dumps([self.record] * self.args.batch).encode()
        last_reload = time.monotonic()
        while time.monotonic() < self.deadline:
            draw = self.rng.randrange(100)
            if self.index == 0 and time.monotonic() - last_reload >= self.args.reload_every:
                last_reload = time.monotonic()
                status, text = self.post("/admin/reload", b"{}")
                self.tally.add("reload", status, status == 200, text.decode(errors="replace"))
            elif draw < MIX["batch"]:
                status, text = self.post("/predict?ids=true", batch)
                self.tally.add("batch", status, status == 200, text.decode(errors="replace"))
                if status == 200:
                    ids = json.loads(text).get("ids") or []
                    items = [{"id": i, "label": self.rng.choice(self.labels)} for i in ids]
                    status, text = self.post("/feedback", json.dumps({"items": items}).encode())
                    self.tally.add("feedback", status, status == 200, text.decode(errors="replace"))
            elif draw < MIX["batch"] + MIX["bad"]:
                name, body = self.bad[self.rng.randrange(len(self.bad))]
                status, text = self.post("/predict", body)
                self.tally.add(f"bad: {name}", status, 400 <= status < 500, text.decode(errors="replace"))
            else:
                status, text = self.post("/predict", single)
                self.tally.add("single", status, status == 200, text.decode(errors="replace"))
        if self.conn is not None:
            self.conn.close()


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return -1


def labels_of(port: int) -> list[Any]:
    """The served model's class labels (``GET /model``), or a few numbers for a regressor, for the feedback."""
    status, text = wrkbench.request(f"http://127.0.0.1:{port}/model")
    labels = json.loads(text).get("labels") if status == 200 else None
    return list(labels) if labels else [0.0, 1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default: 10 minutes)")
    parser.add_argument("--clients", type=int, default=4, help="client threads, one keep-alive connection each")
    parser.add_argument("--model", choices=("sample", "adult"), default="sample")
    parser.add_argument("--batch", type=int, default=100, help="records per batch request")
    parser.add_argument("--reload-every", type=float, default=15.0, help="seconds between POST /admin/reload")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS and fd readings")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run counted as warm-up")
    parser.add_argument("--max-body-bytes", type=int, default=1024 * 1024, help="the server's body limit")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fasttrack-soak-") as tmp:
        home = Path(tmp) / "home"
        with console.status(f"training {args.model}"):
            folder, _ = wrkbench.train(args.model, home)
        record = wrkbench.first_record(folder)
        env = {"FASTTRACK_HOME": str(home), "FASTTRACK_MAX_BODY_BYTES": str(args.max_body_bytes)}
        server = wrkbench.Server(
            "fasttrack",
            [str(wrkbench.BIN / "fasttrack"), "serve", "--model", str(folder), "--port", "{port}"],
            "/ready",
            "/predict",
            json.dumps(record),
            env=env,
        )
        wrkbench.start(server, Path(tmp))
        if server.error or server.proc is None:
            sys.exit(f"the server did not start: {server.error}")
        try:
            figures = soak(server, record, labels_of(server.port), args)
        finally:
            wrkbench.stop(server)
    report(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


def soak(server: wrkbench.Server, record: dict[str, Any], labels: list[Any], args: Any) -> dict[str, Any]:
    """Run the load; return the readings and the tally."""
    assert server.proc is not None
    pid = server.proc.pid
    tally = Tally()
    clients = [Client(i, server.port, record, labels, args, tally) for i in range(args.clients)]
    start = time.monotonic()
    for client in clients:
        client.deadline = start + args.duration
        client.start()
    readings: list[tuple[float, float, int]] = []
    with console.status("soaking") as status:
        while any(client.is_alive() for client in clients):
            elapsed = time.monotonic() - start
            readings.append((elapsed, wrkbench.rss_mb(pid), open_fds(pid)))
            sent = sum(tally.answers.values())
            status.update(
                f"soaking: {elapsed:,.0f} / {args.duration:,.0f} s, {sent:,} answers, RSS {readings[-1][1]:,.0f} MB"
            )
            time.sleep(args.sample)
    for client in clients:
        client.join()
    time.sleep(1.0)  # let the last requests' memory go back
    readings.append((time.monotonic() - start, wrkbench.rss_mb(pid), open_fds(pid)))
    warm = [r for r in readings if r[0] >= args.warmup * args.duration] or readings[-1:]
    base_rss, base_fds = warm[0][1], warm[0][2]
    return {
        "duration_s": args.duration,
        "clients": args.clients,
        "model": args.model,
        "load_average": os.getloadavg(),
        "rss_mb": {
            "start": readings[0][1],
            "after_warmup": base_rss,
            "peak": max(r[1] for r in warm),
            "end": readings[-1][1],
        },
        "rss_growth": (readings[-1][1] - base_rss) / base_rss,
        "fds": {"after_warmup": base_fds, "peak": max(r[2] for r in warm), "end": readings[-1][2]},
        "answers": {f"{kind} {status}": n for (kind, status), n in sorted(tally.answers.items())},
        "requests": sum(tally.answers.values()),
        "unexpected": dict(tally.unexpected),
        "examples": tally.examples,
        "readings": readings,
    }


def report(figures: dict[str, Any]) -> None:
    rss, fds = figures["rss_mb"], figures["fds"]
    table = Table(title=f"Soak: {figures['duration_s']:.0f} s, {figures['clients']} clients, model {figures['model']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    growth = figures["rss_growth"]
    table.add_row(
        "RSS start / after warm-up / peak / end (MB)",
        f"{rss['start']:.0f} / {rss['after_warmup']:.0f} / {rss['peak']:.0f} / {rss['end']:.0f}",
        "",
    )
    table.add_row(
        "RSS growth after warm-up",
        f"{growth:+.1%}",
        f"< {RSS_TARGET:.0%}: {'met' if growth < RSS_TARGET else 'NOT met'}",
    )
    table.add_row(
        "open fds after warm-up / peak / end",
        f"{fds['after_warmup']} / {fds['peak']} / {fds['end']}",
        "no growth: " + ("met" if fds["end"] <= fds["after_warmup"] else "NOT met"),
    )
    table.add_row("requests answered", f"{figures['requests']:,}", "")
    unexpected = sum(figures["unexpected"].values())
    table.add_row("unexpected answers", f"{unexpected:,}", "0: " + ("met" if unexpected == 0 else "NOT met"))
    console.print(table)
    answers = Table(title="Answers by kind and status")
    answers.add_column("kind and status")
    answers.add_column("count", justify="right")
    for key, count in figures["answers"].items():
        answers.add_row(key, f"{count:,}")
    console.print(answers)
    for key, example in figures["examples"].items():
        console.print(f"[red]unexpected[/red] {key}: {example}")
    console.print(f"load average {figures['load_average'][0]:.2f} (the machine's other work moves the figures)")


if __name__ == "__main__":
    main()
