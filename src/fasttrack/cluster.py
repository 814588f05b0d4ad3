"""Reaching a Dask cluster: the one place FastTrack connects to a scheduler or starts a local one (docs/scale.md).

``--engine dask`` on ``ingest``, ``train`` and ``predict`` (and ``engine="dask"`` in the Python API) runs the work
on a Dask ``distributed`` cluster: the scheduler at ``--scheduler ADDRESS`` (``scheduler=`` in the API), else at
Dask's own ``DASK_SCHEDULER_ADDRESS`` (Dask's configuration key ``scheduler-address``), else a ``LocalCluster``
of worker processes sized to this machine, started for the command and stopped after it.

:func:`dask_client` is that choice. A scheduler that does not answer is one :class:`~fasttrack.errors.ClusterError`
line within :data:`CONNECT_TIMEOUT_SECONDS`, never a hang or a traceback. Dask is an optional extra
(``fasttrack[dask]``): nothing here imports it at module import, and :func:`require_dask` says how to install it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Literal

from fasttrack.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from distributed import Client

#: Where a stage runs: ``local`` (this process, the default) or ``dask`` (a Dask cluster).
ComputeEngine = Literal["local", "dask"]
COMPUTE_ENGINES: tuple[ComputeEngine, ...] = ("local", "dask")

#: Seconds a scheduler address has to answer before the command stops with one line.
CONNECT_TIMEOUT_SECONDS = 10.0

#: Seconds beyond the timeout a connecting client is waited for (Dask's own timeout ends it in most cases).
_CONNECT_GRACE_SECONDS = 2.0
_HINT = ": is it running, and is the address reachable from here?"

#: Dask's loggers, quietened to errors for a command's duration: the cluster's own chatter (shuffle plugins,
#: worker restarts it recovers from) is not what a person running ``fasttrack`` needs to read.
_DASK_LOGGERS = ("distributed", "dask")


def require_dask() -> None:
    """Raise a one-line :class:`~fasttrack.errors.ConfigError` when the ``dask`` extra is not installed (found
    without importing it: importing Dask's DataFrame and xgboost.dask takes seconds a failing command should not
    spend)."""
    from importlib.util import find_spec

    for module in ("dask", "distributed", "xgboost"):
        if find_spec(module) is None:
            raise ConfigError(
                f"the Dask engine needs the dask extra ({module} is missing): pip install 'fasttrack[dask]'"
            )


def check_engine(engine: str) -> ComputeEngine:
    """``engine`` as a :data:`ComputeEngine`; a one-line ``ConfigError`` for anything else."""
    if engine == "local":
        return "local"
    if engine == "dask":
        return "dask"
    raise ConfigError(f"unknown engine {engine!r}: use local or dask")


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to reach: ``scheduler``, else Dask's ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``), else
    ``None`` (a local cluster)."""
    if scheduler:
        return scheduler
    import dask

    configured = dask.config.get("scheduler-address", None)
    return str(configured) if configured else None


def local_workers() -> int:
    """Worker processes a local cluster starts: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def dask_client(
    scheduler: str | Client | None = None,
    *,
    workers: int | None = None,
    memory_limit: str | float | None = "auto",
    timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> Iterator[Client]:
    """A Dask client for one command, closed (and a local cluster stopped) when the block ends.

    With an address (``scheduler`` or ``DASK_SCHEDULER_ADDRESS``) the client connects to that scheduler and
    leaves the cluster running. Without one, it starts a ``LocalCluster`` on 127.0.0.1 with ``workers`` worker
    processes (default: one per CPU, :func:`local_workers`), one thread each, the machine's memory shared
    between them (``memory_limit="auto"``; a Dask size such as ``"2GiB"`` per worker), its HTTP endpoints
    (dashboard, /health) on a free port.

    The client is the default one inside the block, so Dask collections computed there and joblib's ``dask``
    backend use it. ``scheduler`` may also be a ``distributed.Client`` of the caller's: it is used as it is and
    left open (the caller owns its cluster).

    Raises
    ------
    ConfigError
        The ``dask`` extra is not installed, or the address is not one Dask can parse.
    ClusterError
        The scheduler did not answer within ``timeout`` seconds, or the local cluster could not start.
    """
    require_dask()
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    address = scheduler_address(scheduler)
    with ExitStack() as stack:
        stack.enter_context(_quiet_dask())
        if address is None:
            try:
                cluster = stack.enter_context(
                    LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=workers or local_workers(),
                        threads_per_worker=1,
                        processes=True,
                        memory_limit=memory_limit,
                        host="127.0.0.1",
                        dashboard_address=":0",  # its HTTP endpoints on a free port, never a clash on 8787
                        silence_logs=logging.ERROR,
                    )
                )
            except (OSError, RuntimeError, TimeoutError) as exc:
                raise ClusterError(f"could not start a local Dask cluster: {_reason(exc)}") from None
            client = stack.enter_context(Client(cluster, set_as_default=True))  # type: ignore[no-untyped-call]
        else:
            client = stack.enter_context(_connect(address, timeout))
        yield client


@contextmanager
def _connect(address: str, timeout: float) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or one line saying why not within about ``timeout`` seconds.

    Dask's own ``timeout`` bounds each attempt, not the whole: a port that accepts connections but does not
    speak Dask's protocol (a dashboard, an HTTP server) kept it retrying for a minute here, and garbage in
    the handshake can even ask it for exabytes of memory. So the client is made on a thread of its own with
    a deadline; a client that connects after the deadline is closed by that thread.
    """
    from distributed import Client

    _probe(address, timeout)
    outcome: dict[str, Any] = {}
    gave_up = threading.Event()

    def connect() -> None:
        try:
            client = Client(address, timeout=timeout, set_as_default=True)  # type: ignore[no-untyped-call]
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc
            return
        if gave_up.is_set():
            client.close()  # type: ignore[no-untyped-call]
        else:
            outcome["client"] = client

    thread = threading.Thread(target=connect, name="fasttrack-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + _CONNECT_GRACE_SECONDS)
    if thread.is_alive():
        gave_up.set()
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: no answer within {timeout:g} s{_HINT}")
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, ValueError):
            raise ConfigError(f"not a Dask scheduler address: {address!r} ({_reason(exc)})") from None
        if isinstance(exc, (OSError, TimeoutError)):
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {_reason(exc)}{_HINT}") from None
        raise ClusterError(
            f"{address} answered, but not as a Dask scheduler ({type(exc).__name__}): is it the scheduler's port "
            "(8786 by default), not the dashboard's?"
        ) from None
    client: Client = outcome["client"]
    try:
        _check_workers(client, address)
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


#: Packages whose versions must agree between this process and every worker: the task graph pickles functions
#: of FastTrack and objects of these libraries (frames, Arrow tables, boosters, ONNX sessions' inputs).
SHARED_PACKAGES = (
    "fasttrack",
    "dask",
    "distributed",
    "pandas",
    "pyarrow",
    "numpy",
    "scikit-learn",
    "xgboost-cpu",
    "onnxruntime",
    "cloudpickle",
)


def package_versions() -> dict[str, str | None]:
    """The installed versions of :data:`SHARED_PACKAGES` in this process (``None`` for one not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in SHARED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _probe(address: str, timeout: float) -> None:
    """Fail at once where a plain TCP connection says enough: an unknown host, or nothing listening (Dask would
    retry those until its timeout). Other schemes (tls://, ws://) and slow answers are left to Dask's client."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or not parts.hostname:
        return
    try:
        port = parts.port or 8786
    except ValueError:
        return  # Dask's own parser names the problem
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(timeout, 3.0)):
            pass
    except socket.gaierror:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: unknown host {parts.hostname!r}") from None
    except ConnectionRefusedError:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address}: nothing listens on port {port} of {parts.hostname}{_HINT}"
        ) from None
    except OSError:
        return  # a timeout or an unreachable network: Dask's client tries for the full timeout


def _check_workers(client: Client, address: str) -> None:
    """One line when a worker of the cluster at ``address`` lacks FastTrack or runs other versions of the packages
    the work is shipped in (what Dask reports as a version mismatch, or a deserialisation error mid-job)."""
    ours = package_versions()
    theirs: dict[str, dict[str, str | None]] = client.run(package_versions)
    for worker, versions in sorted(theirs.items()):
        different = [
            f"{name} {versions.get(name) or 'missing'} (here {ours[name] or 'missing'})"
            for name in SHARED_PACKAGES
            if versions.get(name) != ours[name]
        ]
        if different:
            raise ClusterError(
                f"the Dask workers at {address} do not run this FastTrack's packages: worker {worker} has "
                f"{', '.join(different[:3])}{' and more' if len(different) > 3 else ''}; install fasttrack[dask] at "
                "the same versions on the workers (docs/scale.md)"
            )


def describe(client: Client) -> str:
    """The cluster in a few words, for progress output: ``2 workers, 2 threads, 23.4 GiB memory at tcp://...``."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    memory = sum(int(w.get("memory_limit", 0) or 0) for w in workers.values())
    gib = f", {memory / 2**30:.1f} GiB memory" if memory else ""
    plural = "s" if len(workers) != 1 else ""
    return f"{len(workers)} worker{plural}, {threads} threads{gib} at {info.get('address', '?')}"


@contextmanager
def _quiet_dask() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _DASK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
