"""Whether the process that left a record in the store is certainly gone: runs and alias locks of a killed process.

A process killed with ``kill -9`` (or by the out-of-memory killer, or a full disk that stopped its last writes)
leaves what it was doing behind: an MLflow run still ``RUNNING``, an alias-lock tag that nobody renews. MLflow has
no owner or lease on a run (``mlflow gc`` only deletes runs already marked deleted), so FastTrack records who
wrote them, :class:`Owner`, and a later process that finds such a record asks :func:`is_gone`.

An owner is the host name, the boot (``/proc/sys/kernel/random/boot_id``), the PID namespace
(``/proc/self/ns/pid``), the PID and the process's start time (``/proc/PID/stat``, in clock ticks since boot).
:func:`is_gone` answers ``True`` only when the record was written on this very machine, boot and PID namespace and
no process with that PID and start time exists: two containers sharing a host name (``--network host``) have
different PID namespaces, and a PID reused by another process has another start time, so neither makes a live
process look dead. Everywhere else (another machine, another container, a system without ``/proc``) it answers
``False``: the record waits for its lease (locks) or stays as it is (runs).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    """The process that wrote a record, precisely enough to tell later that it is gone."""

    host: str
    boot: str
    pidns: str
    pid: int
    start: str

    def encode(self) -> str:
        """The owner as compact JSON (a tag value)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, value: str | None) -> Owner | None:
        """An owner written by :meth:`encode`; ``None`` for anything else."""
        if not value:
            return None
        try:
            data = json.loads(value)
            return cls(
                host=str(data["host"]),
                boot=str(data["boot"]),
                pidns=str(data["pidns"]),
                pid=int(data["pid"]),
                start=str(data["start"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


def this_process() -> Owner | None:
    """This process as an :class:`Owner`; ``None`` where ``/proc`` cannot say (not Linux)."""
    machine = _machine()
    start = _start_time(os.getpid())
    if machine is None or start is None:
        return None
    boot, pidns = machine
    return Owner(host=socket.gethostname(), boot=boot, pidns=pidns, pid=os.getpid(), start=start)


def is_gone(owner: Owner) -> bool:
    """Whether ``owner`` certainly no longer runs: same host, boot and PID namespace as this process, and no process
    with its PID and start time. ``False`` whenever that cannot be known."""
    machine = _machine()
    if machine is None or (owner.host, owner.boot, owner.pidns) != (socket.gethostname(), *machine):
        return False
    return _start_time(owner.pid) != owner.start


@cache
def _machine() -> tuple[str, str] | None:
    """This boot's id and this process's PID namespace (fixed for the process's life)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        pidns = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return None
    return boot, pidns


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks after boot; field 22 of ``/proc/PID/stat``), ``None`` when
    no such process runs (a zombie, killed but not yet reaped by its parent, runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses: fields count after the last.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):
        return None
    return fields[19]
