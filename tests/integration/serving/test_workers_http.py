"""``--workers 2``: two processes behind one port, and ``/metrics`` counts for both (Prometheus multiprocess mode)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import Server, serve

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
REQUESTS = 40


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("multiproc")
    (folder / "counter_999999.db").write_bytes(b"stale samples of an earlier run")
    return folder


@pytest.fixture(scope="module")
def two_workers(model_home: Path, metrics_dir: Path) -> Iterator[Server]:
    with serve(
        "--model",
        "models:/sample/1",
        "--workers",
        "2",
        home=model_home,
        ready_timeout=120,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    ) as server:
        yield server


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_every_worker(two_workers: Server, metrics_dir: Path) -> None:
    success = 'fasttrack_predictions_total{model="sample",outcome="success",version="1"}'
    http = 'http_requests_total{handler="/predict",method="POST",status="2xx"}'
    before = httpx.get(two_workers.url + "/metrics").text
    for _ in range(REQUESTS):  # a new connection each time, so both workers get some
        response = httpx.post(two_workers.url + "/predict", json=RECORD)
        assert response.content == b'{"prediction":"positive"}'
    # every scrape, whichever worker answers it, shows the same totals
    scrapes = [httpx.get(two_workers.url + "/metrics").text for _ in range(6)]
    for text in scrapes:
        assert sample(text, success) - sample(before, success) == REQUESTS
        assert sample(text, http) - sample(before, http) == REQUESTS
        assert sample(text, 'fasttrack_model_info{model="sample",version="1"}') == 1
        assert sample(text, "fasttrack_model_ready") == 1
    assert not (metrics_dir / "counter_999999.db").exists()  # the folder was emptied at start
    writers = {m.group(1) for p in metrics_dir.glob("counter_*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}
    assert len(writers) >= 2, f"only {writers} wrote metrics"


def test_both_workers_serve_every_api(two_workers: Server) -> None:
    for _ in range(4):
        assert httpx.get(two_workers.url + "/predict?feature_1=5.3&feature_2=2.1").json() == {"prediction": "positive"}
        answer = httpx.post(two_workers.url + "/invocations", json={"dataframe_records": [RECORD]})
        assert answer.json() == {"predictions": ["positive"]}
        assert httpx.get(two_workers.url + "/ready").json()["version"] == "1"
