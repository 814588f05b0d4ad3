"""Hot reload of a real server: new versions swap in under load with zero failed requests; broken ones are refused."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import Server, register_broken, register_copy, serve

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}


@pytest.fixture(scope="module")
def followed(model_home: Path) -> str:
    """A registered model of its own (version 1 = the sample classifier, alias champion)."""
    name = f"follow-{uuid.uuid4().hex[:8]}"
    register_copy(model_home, name, alias="champion")
    return name


@pytest.fixture(scope="module")
def server(model_home: Path, followed: str) -> Iterator[Server]:
    """A server following ``followed``'s champion, polling the registry twice a second."""
    with serve("--model", f"models:/{followed}@champion", "--reload-interval", "0.5", home=model_home) as running:
        yield running


def value(metrics: str, series: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


class Load:
    """A client sending predictions in a loop (bounded) from a thread, recording every answer."""

    def __init__(self, url: str, limit: int = 20_000) -> None:
        self.url = url
        self.limit = limit
        self.answers: list[tuple[int, str | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for _ in range(self.limit):
                if self._stop.is_set():
                    return
                try:
                    response = client.post("/predict", json=RECORD)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.answers.append((response.status_code, response.headers.get("X-Model-Version")))
                if response.status_code != 200 or response.content != b'{"prediction":"positive"}':
                    self.failures.append(f"{response.status_code}: {response.text}")

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def versions(self) -> list[str | None]:
        """The versions that answered, in order, repeats collapsed."""
        seen: list[str | None] = []
        for _, version in self.answers:
            if not seen or seen[-1] != version:
                seen.append(version)
        return seen

    def wait_for_version(self, version: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1] == version:
                return True
            time.sleep(0.05)
        return False


def test_new_versions_swap_in_under_load_with_zero_failures(server: Server, model_home: Path, followed: str) -> None:
    with Load(server.url) as load:
        assert load.wait_for_version("1")
        register_copy(model_home, followed, alias="champion")  # version 2: forced check
        reloaded = httpx.post(server.url + "/admin/reload", json={}, timeout=60).json()
        # the forced check swaps version 2 in, unless a poll got there first
        assert reloaded["outcome"] in ("reloaded", "unchanged") and reloaded["version"] == "2"
        assert load.wait_for_version("2")
        register_copy(model_home, followed, alias="champion")  # version 3: found by polling
        assert load.wait_for_version("3")
        time.sleep(0.3)
    assert not load.failures
    assert load.versions() == ["1", "2", "3"]
    assert len(load.answers) > 20
    assert httpx.get(server.url + "/ready").json()["version"] == "3"


def test_a_broken_version_is_refused_while_the_old_keeps_serving(
    server: Server, model_home: Path, followed: str, tmp_path: Path
) -> None:
    serving = httpx.get(server.url + "/ready").json()["version"]
    with Load(server.url) as load:
        assert load.wait_for_version(serving)
        broken = register_broken(model_home, followed, tmp_path / "broken", alias="champion")
        refused = httpx.post(server.url + "/admin/reload", json={}, timeout=60).json()
        assert (refused["outcome"], refused["version"], refused["candidate"]) == ("refused", serving, broken)
        assert "cannot load" in refused["error"]
        time.sleep(1.2)  # a couple of polls: the broken version is not retried, the old one serves on
    assert not load.failures
    assert load.versions() == [serving]
    metrics = httpx.get(server.url + "/metrics").text
    # counted under the version that keeps serving (its failure counter exists at 0 from its swap)
    failures = f'fasttrack_model_reloads_total{{model="{followed}",outcome="failure",version="{serving}"}}'
    # refused by the forced check (and perhaps by a poll just before it), never again by later polls
    assert value(metrics, failures) in (1.0, 2.0)
    assert f'fasttrack_model_info{{model="{followed}",version="{serving}"}} 1.0' in metrics
    assert f"refused {followed} version {broken}" in server.output()
