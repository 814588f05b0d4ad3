"""Starting and stopping ``fasttrack serve``: fail fast with one line, drain in-flight requests on SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from support import free_port, run_cli, serve, serving_settings

pytestmark = pytest.mark.integration

BODY = json.dumps({"feature_1": 5.3, "feature_2": 2.1}).encode()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_an_unknown_model_fails_at_once_with_one_line(model_home: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = run_cli(
        "serve", "--model", "models:/no-such-model@champion", "--port", str(port), home=model_home, timeout=120
    )
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "no-such-model" in line
    assert "Uvicorn running" not in result.stderr + result.stdout  # the port was never bound
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_that_cannot_load_stops_the_server(model_home: Path, tmp_path: Path, workers: str) -> None:
    from fasttrack.registry.resolve import resolve_model

    folder = tmp_path / "broken-model"
    shutil.copytree(resolve_model("models:/sample/1", serving_settings(model_home)).path, folder)
    # Neither the ONNX graph nor the saved pipeline loads; the manifest names the first file that changed.
    (folder / "model.skops").write_bytes(b"not a skops archive")
    (folder / "extra_files" / "model.onnx").write_bytes(b"not an ONNX model")
    result = run_cli(
        "serve", "--model", str(folder), "--port", str(free_port()), "--workers", workers, home=model_home, timeout=120
    )
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "model folder refused: extra_files/model.onnx changed since registration" in line


def test_access_log_and_draining_on_sigterm(model_home: Path) -> None:
    with serve("--model", "models:/sample/1", "--access-log", home=model_home) as server:
        assert httpx.post(server.url + "/predict", json={"feature_1": 5.3, "feature_2": 2.1}).status_code == 200
        deadline = time.monotonic() + 10
        while '"path":"/predict"' not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        [logged] = [line for line in server.output().splitlines() if '"path":"/predict"' in line]
        entry = json.loads(logged[logged.index("{") :])
        assert (entry["method"], entry["status"], entry["model_version"]) == ("POST", 200, "1")

        # A request in flight when SIGTERM arrives is still answered. "Expect: 100-continue" makes the server
        # say when the route starts reading the body: from then on the request is surely in flight.
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            head = (
                f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(BODY)}\r\nExpect: 100-continue\r\n\r\n"
            ).encode()
            sock.sendall(head)
            interim = b""
            while b"\r\n\r\n" not in interim:
                chunk = sock.recv(4096)
                assert chunk, "the server closed the connection"
                interim += chunk
            assert interim.startswith(b"HTTP/1.1 100"), interim
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.process.poll() is None, "the server exited with a request in flight"
            sock.sendall(BODY)
            answer = b""
            while b'"}' not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(b'{"prediction":"positive"}')
        # Uvicorn re-raises the SIGTERM it drained for, so the exit status says "stopped by SIGTERM" (143).
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Shutting down" in server.output()
