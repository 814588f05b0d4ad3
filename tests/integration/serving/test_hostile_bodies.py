"""Hostile bodies against a real ``fasttrack serve`` with its default limits (16 MiB bodies, 10,000 rows).

Each is answered with a clear 4xx naming the reason, never a 500; the big ones are refused before the server builds
an object per value: its resident memory (psutil) stays within ``PEAK_MB`` of where it was (before issue 17, a V2
tensor shaped [4193804] took it up by 860 MB and a 4.2 M-row ``dataframe_split`` by 1.2 GB), and ``/health``, asked
over and over meanwhile, answers every time. Slow senders (a body sent byte by byte) are left to the per-request
timeout of the load limits (``FASTTRACK_REQUEST_TIMEOUT``, 504), and tested with them.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from support import Server, serve

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
#: How far the server's resident memory may rise while refusing a big body (it rose by up to 1.2 GB before).
PEAK_MB = 250
JSON = {"content-type": "application/json"}
RECORD = {"feature_1": 5.3, "feature_2": 2.1}


@pytest.fixture(scope="module")
def server(model_home: Path) -> Iterator[Server]:
    """The sample classifier with the default body and batch limits."""
    with serve("--model", "models:/sample@champion", home=model_home, FASTTRACK_RELOAD_INTERVAL="0") as running:
        yield running


def send_watched(server: Server, path: str, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    """POST ``body`` while sampling the server's RSS and asking ``/health``; the answer and the RSS rise in MB.

    Fails if ``/health`` failed to answer while the body was being processed.
    """
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss / MIB
    peak = [before]
    health: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss / MIB)
                health.append(client.get(server.url + "/health").status_code)
                time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answer = httpx.post(server.url + path, content=body, headers=headers, timeout=120)
    finally:
        done.set()
        watcher.join()
    assert health and set(health) == {200}, health
    return answer, peak[0] - before


def v2_bytes() -> tuple[bytes, dict[str, str]]:
    """A V2 BYTES tensor of 4,193,804 empty strings in binary form: 16 MiB."""
    rows = 4193804
    tensor = {"name": "feature_1", "shape": [rows], "datatype": "BYTES", "parameters": {"binary_data_size": rows * 4}}
    header = orjson.dumps({"inputs": [tensor]})
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}
    return header + struct.pack("<I", 0) * rows, headers


#: name -> (path, body and headers made when the test runs, what the 413 says).
BIG: dict[str, tuple[str, Any, str]] = {
    "feedback-10MB-list": (
        "/feedback",
        lambda: (orjson.dumps([{"id": "5f0c3b6e9d8a4c2b8e1f7a6d3c2b1a09-1", "label": "positive"}] * 166_000), JSON),
        "JSON values",
    ),
    "v2-bytes-4193804": ("/v2/models/sample/infer", v2_bytes, "batch of 4193804 rows"),
    "split-4.19M-rows": (
        "/invocations",
        lambda: (
            b'{"dataframe_split":{"columns":["feature_1"],"data":[' + b",".join([b"[0]"] * 4_190_000) + b"]}}",
            JSON,
        ),
        "JSON values",
    ),
    "16MiB-of-empty-records": (
        "/predict",
        lambda: (b"[" + b",".join([b"{}"] * (16 * MIB // 3 - 2)) + b"]", JSON),
        "JSON values",
    ),
    "100k-rows": ("/predict", lambda: (orjson.dumps([RECORD] * 100_000), JSON), "batch of 100000 rows"),
    "50MB-body": ("/predict", lambda: (b"[" + b" " * (50 * 1000 * 1000) + b"]", JSON), "over the limit"),
}


@pytest.mark.parametrize("name", BIG)
def test_big_bodies_are_413_without_the_memory_or_the_event_loop(server: Server, name: str) -> None:
    path, make, reason = BIG[name]
    body, headers = make()
    answer, rise = send_watched(server, path, body, headers)
    assert answer.status_code == 413, answer.text[:300]
    assert reason in answer.text
    assert rise < PEAK_MB, f"resident memory rose by {rise:.0f} MB"


def post(server: Server, path: str, body: bytes) -> httpx.Response:
    return httpx.post(server.url + path, content=body, headers=JSON, timeout=30)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", ["/predict", "/feedback", "/invocations", "/v2/models/sample/infer"])
def test_deep_nesting_is_a_4xx_on_every_route(server: Server, path: str) -> None:
    for depth in (970, 1023, 1025, 100_000):
        answer = post(server, path, nested(depth))
        assert 400 <= answer.status_code < 500, (depth, answer.text[:300])
        assert "internal error" not in answer.text


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/predict", rb'{"\ud800": 1}', "$ key '\\\\ud800'"),
        ("/predict", rb'{"feature_1": "\udc00", "feature_2": 1}', "$.feature_1"),
        ("/invocations", rb'{"dataframe_records": [{"\ud800": 1}]}', "$.dataframe_records[0] key"),
        ("/feedback", rb'{"id": "\ud800", "label": "positive"}', "$.id"),
    ],
)
def test_a_lone_surrogate_is_400_naming_where(server: Server, path: str, body: bytes, where: str) -> None:
    answer = post(server, path, body)
    assert answer.status_code == 400
    assert where in answer.text and "lone surrogate" in answer.text


def test_v2_refuses_a_lone_surrogate_as_a_malformed_request(server: Server) -> None:
    body = rb'{"inputs": [{"name": "\ud800", "shape": [1], "datatype": "FP64", "data": [1]}]}'
    answer = post(server, "/v2/models/sample/infer", body)
    assert answer.status_code == 400 and answer.json()["error"].startswith("malformed inference request")


def test_huge_numbers_are_refused_naming_the_field(server: Server) -> None:
    infinite = post(server, "/predict", b'{"feature_1": 1e400, "feature_2": 1}')
    assert infinite.status_code == 422
    assert infinite.json()["details"][0]["field"] == "feature_1"
    digits = post(server, "/predict", b'{"feature_1": ' + b"9" * 5000 + b', "feature_2": 1}')
    assert digits.status_code == 400 and digits.json()["error"].startswith("malformed JSON")
    big = post(server, "/predict", b'{"feature_1": ' + b"9" * 400 + b', "feature_2": 1}')  # a valid, huge integer
    assert big.status_code in (200, 422) and "internal error" not in big.text


def test_duplicate_keys_the_last_one_wins(server: Server) -> None:
    once = post(server, "/predict", b'{"feature_1": 1.0, "feature_2": 6.0}').json()
    twice = post(server, "/predict", b'{"feature_1": 5.3, "feature_2": 6.0, "feature_1": 1.0}').json()
    assert twice == once == {"prediction": "negative"}


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b'{"feature_1": "5\x00", "feature_2": 1}', 400, "malformed JSON"),  # a raw NUL: not JSON
        (b'{"feature_1": "5\\u0000", "feature_2": 1}', 422, "feature_1"),  # an escaped one: not a number
        (b'{"feature_1": "\xff\xfe", "feature_2": 1}', 400, "not UTF-8 at byte"),
    ],
)
def test_nul_bytes_and_invalid_utf8_are_4xx(server: Server, body: bytes, status: int, text: str) -> None:
    answer = post(server, "/predict", body)
    assert answer.status_code == status and text in answer.text


def test_the_server_still_answers_and_gave_memory_back(server: Server) -> None:
    # Run last in the module: after every hostile body above, a plain request is answered as before.
    assert post(server, "/predict", orjson.dumps(RECORD)).json() == {"prediction": "positive"}
    rss = psutil.Process(server.process.pid).memory_info().rss / MIB
    assert rss < 600, f"{rss:.0f} MB resident after the hostile bodies"
