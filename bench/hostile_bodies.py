"""Hostile request bodies against a real server: how long each takes to be refused, the server's memory, and
whether ``/health`` still answers meanwhile.

Trains the bundled sample (``configs/sample.yaml``, no cross-validation) into a temporary home, then starts
``fasttrack serve --model FOLDER`` on a free loopback port (default limits: 16 MiB bodies, 10,000 rows) and sends,
one at a time, the bodies of issue 17's findings: a 10 MB ``POST /feedback`` list, a V2 BYTES tensor of shape
``[4193804]`` in binary form, an ``/invocations`` ``dataframe_split`` of 4.2 M one-value rows, 16 MiB of empty
records to ``/predict``, a 100,000-row batch and a 50 MB body. For each: the status, the seconds until the
answer, the server's resident memory before, at its peak (sampled every 10 ms with psutil) and a second after,
and the longest a ``GET /health`` sent every 20 ms meanwhile waited (the time the event loop was held).

With ``--baseline-src DIR`` (another checkout's ``src``, e.g. main's before a change) a second server runs that
code on the same model, and each body goes to both in turn (``@base`` rows). The machine is shared: the load
average is printed; compare runs made at similar loads.

Run: ``.venv/bin/python bench/hostile_bodies.py [--baseline-src DIR] [--only NAME,...]``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MIB = 1024 * 1024


def bodies() -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """name -> (path, body, headers), each within the 16 MiB limit except the last."""
    json_type = {"content-type": "application/json"}
    item = {"id": "5f0c3b6e9d8a4c2b8e1f7a6d3c2b1a09-1", "label": "positive"}
    feedback = orjson.dumps([item] * (10 * 1000 * 1000 // 60))
    rows = 4193804
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "feature_1",
                    "shape": [rows],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": rows * 4},
                }
            ]
        }
    )
    v2 = header + struct.pack("<I", 0) * rows
    split = b'{"dataframe_split":{"columns":["feature_1"],"data":[' + b",".join([b"[0]"] * 4_190_000) + b"]}}"
    empty = b"[" + b",".join([b"{}"] * (16 * MIB // 3 - 2)) + b"]"
    batch = orjson.dumps([{"feature_1": 5.3, "feature_2": 2.1}] * 100_000)
    return {
        "feedback 10 MB": ("/feedback", feedback, json_type),
        "v2 BYTES [4193804]": (
            "/v2/models/sample/infer",
            v2,
            {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))},
        ),
        "split 4.19 M rows": ("/invocations", split, json_type),
        "predict 16 MiB of {}": ("/predict", empty, json_type),
        "predict 100k rows": ("/predict", batch, json_type),
        "predict 50 MB": ("/predict", b"[" + b" " * (50 * 1000 * 1000) + b"]", json_type),
    }


@dataclass
class Server:
    name: str
    src: Path | None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(home: Path) -> Path:
    env = {**os.environ, "FASTTRACK_HOME": str(home)}
    subprocess.run(
        [PY, "-m", "fasttrack", "train", "--config", "configs/sample.yaml", "--cv-folds", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    models = sorted((home / "artifacts" / "models").glob("m-*"), key=lambda p: p.stat().st_mtime)
    return models[-1] / "artifacts"


def start(server: Server, folder: Path, home: Path) -> None:
    server.port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTTRACK_")}
    env["FASTTRACK_HOME"] = str(home)
    if server.src is not None:
        env["PYTHONPATH"] = str(server.src)
    command = [
        PY,
        "-m",
        "fasttrack",
        "serve",
        "--model",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
    ]
    server.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.name} did not become ready")


def sample_while(
    action: Callable[[], httpx.Response], pid: int, url: str
) -> tuple[httpx.Response, float, float, float]:
    """Run ``action``; meanwhile sample the RSS of ``pid`` and the latency of /health. Returns the answer, the
    seconds it took, the peak RSS in MB and the worst /health wait in seconds."""
    stop = threading.Event()
    peak = [0.0]
    worst = [0.0]
    process = psutil.Process(pid)

    def memory() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss / MIB)
            time.sleep(0.01)

    def health() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                began = time.perf_counter()
                client.get(url + "/health")
                worst[0] = max(worst[0], time.perf_counter() - began)
                time.sleep(0.02)

    threads = [threading.Thread(target=memory), threading.Thread(target=health)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    try:
        answer = action()
    finally:
        took = time.perf_counter() - began
        time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
    return answer, took, peak[0], worst[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare with")
    parser.add_argument("--only", default="", help="comma-separated body names (default: all)")
    args = parser.parse_args()
    all_bodies = bodies()
    chosen = [n for n in all_bodies if not args.only or any(part in n for part in args.only.split(","))]
    servers = [Server("current", None)]
    if args.baseline_src:
        servers.append(Server("@base", args.baseline_src.resolve()))
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        home = Path(tmp) / "home"
        folder = train(home)
        try:
            for server in servers:
                start(server, folder, home)
            print(f"load average {os.getloadavg()[0]:.2f} (2 cores, shared machine)")
            columns = ("status", "seconds", "RSS MB before/peak/after", "/health worst s")
            print(f"{'body':24} {'server':8} {columns[0]:>6} {columns[1]:>8} {columns[2]:>26} {columns[3]:>16}")
            for name in chosen:
                path, body, headers = all_bodies[name]
                for server in servers:
                    assert server.process is not None
                    pid = server.process.pid
                    before = psutil.Process(pid).memory_info().rss / MIB

                    def send(
                        url: str = server.url + path, content: bytes = body, sent: dict[str, str] = headers
                    ) -> httpx.Response:
                        return httpx.post(url, content=content, headers=sent, timeout=300)

                    answer, took, peak, worst = sample_while(send, pid, server.url)
                    time.sleep(1)
                    after = psutil.Process(pid).memory_info().rss / MIB
                    print(
                        f"{name:24} {server.name:8} {answer.status_code:>6} {took:8.2f} "
                        f"{before:8.0f}/{peak:6.0f}/{after:6.0f}   {worst:16.3f}"
                    )
            print(f"load average {os.getloadavg()[0]:.2f}")
        finally:
            for server in servers:
                if server.process is not None:
                    server.process.terminate()
                    server.process.wait(30)


if __name__ == "__main__":
    main()
