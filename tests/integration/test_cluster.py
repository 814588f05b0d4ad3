"""Reaching Dask (fasttrack.cluster): a real local cluster of worker processes, a scheduler reached by address, and
the addresses that must end as one line within seconds (nothing listening, an HTTP server, a bad scheme)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import dask
import pytest

from fasttrack.cluster import check_engine, dask_client, describe, require_dask, scheduler_address
from fasttrack.errors import ClusterError, ConfigError

#: Every unreachable address must fail well within this (timeout 2 s + grace): no hang, no retrying for a minute.
pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A plain HTTP server on loopback: what a scheduler's dashboard port (8787) looks like to a client."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(30)
def test_nothing_listening_is_one_line() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    with (
        pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}") as caught,
        dask_client(address, timeout=2),
    ):
        pass
    assert "\n" not in str(caught.value)


@pytest.mark.timeout(30)
def test_a_port_that_is_not_a_scheduler_is_one_line(http_server: str) -> None:
    # Dask alone kept retrying such a port for about a minute (its timeout bounds each attempt).
    with pytest.raises(ClusterError, match=f"{http_server}") as caught, dask_client(http_server, timeout=2):
        pass
    assert "\n" not in str(caught.value)


def test_an_address_dask_cannot_parse_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="not a Dask scheduler address: 'nonsense://x'"), dask_client("nonsense://x"):
        pass


def test_engines_are_named() -> None:
    assert (check_engine("local"), check_engine("dask")) == ("local", "dask")
    with pytest.raises(ConfigError, match="unknown engine 'ray': use local or dask"):
        check_engine("ray")


def test_the_extra_is_named_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "distributed" else real(name))
    with pytest.raises(ConfigError, match=r"pip install 'fasttrack\[dask\]'"):
        require_dask()


def test_a_local_cluster_and_a_scheduler_reached_by_address() -> None:
    from distributed import default_client

    with dask_client(workers=2) as local:
        assert describe(local).startswith("2 workers, 2 threads")
        assert default_client() is local  # Dask collections and joblib's dask backend use it inside the block
        assert sorted(local.run(lambda: 1).values()) == [1, 1]  # two worker processes answer
        address = local.scheduler_info()["address"]
        assert scheduler_address(address) == address
        with dask.config.set({"scheduler-address": address}):  # what DASK_SCHEDULER_ADDRESS sets
            assert scheduler_address() == address
            with dask_client() as remote:
                assert remote is not local and describe(remote).startswith("2 workers")
                assert remote.submit(sum, [1, 2, 3]).result() == 6
        assert local.status == "running"  # a client of an address leaves that cluster running
    assert local.status == "closed"


def test_workers_with_other_package_versions_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    with dask_client(workers=1) as local:
        address = local.scheduler_info()["address"]
        with dask_client(address):  # the same environment: accepted
            pass
        real = importlib.metadata.version
        # This process now reports another pandas than the workers run (they call the real function).
        monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.1" if name == "pandas" else real(name))
        mismatch = r"do not run this FastTrack's packages: worker .* pandas"
        with pytest.raises(ClusterError, match=mismatch) as caught, dask_client(address):
            pass
        assert "(here 0.0.1)" in str(caught.value) and "\n" not in str(caught.value)
