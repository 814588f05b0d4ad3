"""A real ``fasttrack serve`` with the inference log on: every prediction and label logged once, across SIGTERM,
a restart and several workers; a store that fails costs no request; files land whole in an S3-compatible store."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from fasttrack.monitoring import log_layout as layout
from services import Moto
from support import Server, free_port, read_only_folder, serve

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
#: Only SIGTERM writes files in these servers: nothing rotates by age while a test runs.
NO_ROTATION = {"FASTTRACK_INFERENCE_LOG_ROTATE_SECONDS": "3600"}
BUCKET = "fasttrack-inference-log"


def traffic(url: str, clients: int = 6, requests: int = 30) -> list[str]:
    """Concurrent predictions (one record, or a batch every fifth request), all answered 200; their ids."""
    ids: list[str] = []
    lock = threading.Lock()
    failures: list[str] = []

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for request in range(requests):
                record = {"feature_1": number + request / 10, "feature_2": 2.1}
                if request % 5 == 0:
                    answer = http.post("/predict?ids=true", json=[record, RECORD, record])
                    got = answer.json()["ids"] if answer.status_code == 200 else []
                else:
                    answer = http.post("/predict", json=record)
                    got = [answer.headers.get("X-Prediction-Id", "")]
                with lock:
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code}: {answer.text}")
                    ids.extend(got)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    return ids


def label(server: Server, ids: list[str]) -> dict[str, Any]:
    answer = httpx.post(server.url + "/feedback", json=[{"id": i, "label": "positive"} for i in ids], timeout=30)
    assert answer.status_code == 200, answer.text
    counts: dict[str, Any] = answer.json()["counts"]
    return counts


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{wanted}}} not in /metrics")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(0.2)


def stopped_cleanly(server: Server) -> None:
    """The server shut down through its lifespan (Uvicorn ends with the signal it was stopped by, SIGTERM)."""
    assert server.process.returncode in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()
    assert "not written" not in server.output()


def logged(root: Path, table: str = "predictions") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pylist()
    return rows


def test_sigterm_and_a_restart_lose_no_prediction(model_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "log"
    env = {"FASTTRACK_INFERENCE_LOG": str(root), **NO_ROTATION}
    with serve("--model", "models:/sample@champion", home=model_home, **env) as server:
        before = traffic(server.url)
        assert label(server, before[:20])["matched"] == 20
        assert metric(server, "fasttrack_inference_log_written_rows_total", table="predictions") == 0
    stopped_cleanly(server)
    assert sorted(row["prediction_id"] for row in logged(root)) == sorted(before)  # SIGTERM wrote them all

    with serve("--model", "models:/sample@champion", home=model_home, **env) as server:
        after = traffic(server.url)
        # Labels for predictions of the first process: unknown to this one, joined by the log.
        assert label(server, before[20:30] + after[:10]) == {
            "matched": 10,
            "unknown": 10,
            "expired": 0,
            "duplicate": 0,
            "invalid": 0,
        }
    stopped_cleanly(server)

    ids = Counter(row["prediction_id"] for row in logged(root))
    assert sorted(ids) == sorted(before + after) and set(ids.values()) == {1}
    assert {(row["model"], row["version"]) for row in logged(root)} == {("sample", "1")}
    labels = {row["prediction_id"]: (row["label"], row["outcome"]) for row in logged(root, "feedback")}
    assert labels == {
        **dict.fromkeys(before[:20] + after[:10], ("positive", "matched")),
        **dict.fromkeys(before[20:30], ("positive", "unknown")),
    }
    pids = {name.split("-")[2] for name in (p.name for p in root.rglob("*.parquet"))}
    assert len(pids) == 2  # one writer per process, no name ever reused


def test_every_worker_writes_its_own_rows_on_sigterm(model_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "log"
    env = {"FASTTRACK_INFERENCE_LOG": str(root), **NO_ROTATION}
    with serve("--model", "models:/sample/1", "--workers", "2", home=model_home, ready_timeout=120, **env) as server:
        ids = []
        for _ in range(40):  # a new connection each time, so both workers predict
            answer = httpx.post(server.url + "/predict", json=RECORD)
            assert answer.status_code == 200
            ids.append(answer.headers["X-Prediction-Id"])
    stopped_cleanly(server)
    logged_ids = Counter(row["prediction_id"] for row in logged(root))
    assert sorted(logged_ids) == sorted(ids) and set(logged_ids.values()) == {1}
    writers = {p.name.split("-")[2] for p in root.rglob("*.parquet")}
    assert len(writers) == 2, f"only {writers} wrote"


def unreachable_s3() -> dict[str, str]:
    """An S3 endpoint on a loopback port nobody listens on."""
    closed = free_port()
    return {"FASTTRACK_INFERENCE_LOG": f"s3://{BUCKET}/log", **Moto(f"http://127.0.0.1:{closed}", "k", "s").env()}


@pytest.mark.parametrize("store", ["read-only folder", "unreachable S3 endpoint"])
def test_a_failing_store_costs_no_request(model_home: Path, tmp_path: Path, store: str) -> None:
    folder = tmp_path / "read-only"
    with read_only_folder(folder) if store == "read-only folder" else nullcontext(folder):
        env = {"FASTTRACK_INFERENCE_LOG": str(folder / "log")} if store == "read-only folder" else unreachable_s3()
        env |= {"FASTTRACK_INFERENCE_LOG_ROTATE_ROWS": "25", "FASTTRACK_INFERENCE_LOG_ROTATE_SECONDS": "1"}
        with serve("--model", "models:/sample@champion", home=model_home, **env) as server:
            ids = traffic(server.url, clients=4, requests=25)  # every one answered 200
            assert label(server, ids[:5])["matched"] == 5
            total = len(ids)
            wait_for(
                lambda: (
                    metric(
                        server, "fasttrack_inference_log_dropped_rows_total", table="predictions", reason="store_error"
                    )
                    == total
                ),
                f"{total} prediction rows counted as dropped",
            )
            assert metric(server, "fasttrack_inference_log_written_rows_total", table="predictions") == 0
            assert httpx.get(server.url + "/health").status_code == 200
            assert httpx.get(server.url + "/ready").status_code == 200
            assert httpx.post(server.url + "/predict", json=RECORD).status_code == 200
            problems = [line for line in server.output().splitlines() if "ERROR" in line and "inference log" in line]
            assert len(problems) == 1, problems  # several files refused: one line for the one problem
        stopped_cleanly(server)
        assert not (folder / "log").exists()


def test_files_land_whole_in_an_s3_compatible_store(model_home: Path, moto: Moto) -> None:
    import s3fs

    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    env = {"FASTTRACK_INFERENCE_LOG": f"s3://{BUCKET}/log", "FASTTRACK_INFERENCE_LOG_ROTATE_ROWS": "40", **NO_ROTATION}
    env |= moto.env()
    with serve("--model", "models:/sample@champion", home=model_home, **env) as server:
        ids = traffic(server.url)
        assert label(server, ids[:7])["matched"] == 7
        wait_for(
            lambda: metric(server, "fasttrack_inference_log_files_total", table="predictions") >= len(ids) // 40,
            "the files of full buffers",
        )
    stopped_cleanly(server)

    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="log/")["Contents"]  # type: ignore[attr-defined]
    keys = [item["Key"] for item in listed]
    shape = re.compile(r"log/(predictions|feedback)/model=sample/date=\d{4}-\d{2}-\d{2}/part-[^/]+\.parquet")
    assert all(shape.fullmatch(key) and layout.is_complete(key) for key in keys), keys
    fs = s3fs.S3FileSystem(endpoint_url=moto.url, key=moto.access_key, secret=moto.secret_key)
    sizes: dict[str, list[int]] = {"predictions": [], "feedback": []}
    for key in sorted(keys):
        with fs.open(f"{BUCKET}/{key}", "rb") as handle:  # each one a whole Parquet file
            sizes[key.split("/")[1]].append(pq.read_table(handle).num_rows)
    # Full buffers made files of 40 rows while serving; SIGTERM wrote the rest.
    assert sizes["predictions"][:-1] == [40] * (len(sizes["predictions"]) - 1)
    assert (sum(sizes["predictions"]), sizes["feedback"]) == (len(ids), [7])
    rows = ds.dataset(f"{BUCKET}/log/predictions", filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert sorted(rows.column("prediction_id").to_pylist()) == sorted(ids)
