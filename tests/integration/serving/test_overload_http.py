"""A real ``fasttrack serve`` (Uvicorn) under clients that go away: their requests are dropped, never predicted.

Issue 17 found work finished for clients that had gone (1,000-row batches at 256 connections: 3,030 predictions
counted for 2,006 answers). Here one client holds the only slot (``FASTTRACK_MAX_IN_FLIGHT=1``) by sending half of
its body, twenty clients send a 1,000-row batch each and hang up while they wait for a slot, then the first client
finishes its body: the server must predict for it and for a well-behaved client after, and for nobody else.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from support import Server, serve

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
GONE = 20
#: Longest the test waits for the server to notice something (a bound against hangs, never asserted).
PATIENCE = 30.0


@pytest.fixture(scope="module")
def one_slot_server(model_home: Path) -> Iterator[Server]:
    """The classifier, serving one request at a time, the others waiting (long) for their turn."""
    with serve(
        "--model",
        "models:/sample@champion",
        "--reload-interval",
        "0",
        home=model_home,
        FASTTRACK_MAX_IN_FLIGHT="1",
        FASTTRACK_MAX_QUEUED="100",
        FASTTRACK_QUEUE_TIMEOUT=str(PATIENCE),
    ) as server:
        yield server


def raw_request(server: Server, body: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=PATIENCE)


def read_answer(client: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on ``client`` (headers and body may come in separate pieces)."""
    reader = client.makefile("rb")
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=PATIENCE).text
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in /metrics")


def test_requests_of_clients_that_went_away_are_never_predicted(one_slot_server: Server) -> None:
    server = one_slot_server
    success = {"model": "sample", "version": "1", "outcome": "success"}
    predicted_before = metric(server, "fasttrack_predictions_total", **success)
    gone_before = metric(server, "fasttrack_requests_dropped_total", reason="client_gone")
    holder = connect(server)
    body = orjson.dumps(RECORD)
    request = raw_request(server, body)
    holder.sendall(request[: -len(body) // 2])  # half of the body: in flight, holding the only slot
    batch = raw_request(server, orjson.dumps([RECORD] * 1000))
    leaving = []
    for _ in range(GONE):
        client = connect(server)
        client.sendall(batch)
        leaving.append(client)
    time.sleep(0.5)  # let them reach the queue
    for client in leaving:
        client.close()  # gone while waiting for the slot
    time.sleep(0.5)  # let the server see the connections close
    holder.sendall(request[-len(body) // 2 :])
    status, content = read_answer(holder)
    holder.close()
    assert (status, content) == (200, b'{"prediction":"positive"}')
    deadline = time.monotonic() + PATIENCE
    while metric(server, "fasttrack_requests_dropped_total", reason="client_gone") - gone_before < GONE:
        assert time.monotonic() < deadline, "the requests of the clients that left were not all dropped"
        time.sleep(0.1)
    for _ in range(3):  # a client that waits for its answers gets them
        assert httpx.post(server.url + "/predict", json=RECORD, timeout=PATIENCE).status_code == 200
    # Four answers sent (the holder's, the three after), four predictions counted: none for the twenty gone.
    assert metric(server, "fasttrack_predictions_total", **success) - predicted_before == 4
    assert metric(server, "fasttrack_requests_dropped_total", reason="client_gone") - gone_before == GONE
