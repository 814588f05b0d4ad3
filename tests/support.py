"""Helpers for tests that run real processes: the ``fasttrack`` command and ``fasttrack serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
FASTTRACK = [sys.executable, "-m", "fasttrack"]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: FastTrack's home in ``home``, no inherited tracking settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTTRACK_", "MLFLOW_"))}
    env.update({"FASTTRACK_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", **extra})
    return env


def run_cli(
    *args: str, home: Path, cwd: Path = REPO, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``fasttrack ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*FASTTRACK, *args],
        cwd=cwd,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``fasttrack serve`` process."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve(*args: str, home: Path, cwd: Path = REPO, ready_timeout: float = 60, **env: str) -> Iterator[Server]:
    """Start ``fasttrack serve ARGS`` on a free loopback port, wait until ``/ready``, stop it afterwards."""
    port = free_port()
    log = home.parent / f"server-{port}.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [*FASTTRACK, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=cwd,
            env=clean_env(home, **env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {ready_timeout} s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
