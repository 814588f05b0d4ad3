"""A lock on one alias of a registered model, built from registered-model tags, since MLflow has no compare-and-set.

MLflow moves an alias unconditionally (``set_registered_model_alias``) and its API offers no transaction, lock or
conditional write. So two promotions that each read "version 1 holds @champion", compared against it and moved
the alias would both win, the second silently undoing the first. :func:`fasttrack.registry.history.record_move`
therefore re-reads the holder just before it moves the alias, under this lock, and refuses to move it when the
holder is not the one the decision was made against.

What every MLflow store offers (the embedded SQLite store, a tracking server on any database, through the public
API alone) is tags: setting or deleting one tag is atomic, and a read sees every write that finished before it.
That is enough for Lamport's bakery algorithm, which needs no atomic read-modify-write and works with any number
of contenders, including ones that join while others wait. Each contender of ``NAME@ALIAS`` writes one tag of its
own, ``fasttrack.alias_lock.ALIAS.ID`` (``ID`` random), first as "choosing", then holding a ticket one higher than
every ticket it read; it then waits until no other contender is choosing and none holds a smaller ticket (ties
broken by ``ID``), does its work, and deletes its tag. Of two contenders, the later chooser reads the earlier one's
ticket or is seen choosing by it, so they never both go ahead.

A contender that dies leaves its tag behind, so tags are leases: every contender rewrites its tag (a heartbeat
counter) every ``lease / 5`` seconds while it waits or holds the lock, and the others ignore, then delete, a tag
whose value they have seen unchanged for ``lease`` seconds by their own monotonic clock (no clock is compared
between machines). A tag also names its process (:class:`~fasttrack.registry.liveness.Owner`): one whose process
is certainly gone (the same machine, boot and PID namespace, no such process: a ``kill -9`` during a
registration) is deleted at once instead of after the lease. A holder that could not renew its tag for more than
``lease / 2`` seconds (a paused process, a server that stopped answering) no longer counts on the lock:
:meth:`AliasLock.check` raises before the move.

What is not guaranteed: the lock has no fencing token (MLflow could not check one), so a holder that stalls for
longer than the lease between :meth:`AliasLock.check` and its next write could still overlap with the next
holder. The work done under the lock (one read, one alias move, a few tag writes) takes milliseconds, against a
lease of 30 seconds by default.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fasttrack.errors import AliasError
from fasttrack.registry.layout import TAG_ALIAS_LOCK
from fasttrack.registry.liveness import Owner, is_gone, this_process

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

#: Prefix of the lock tags of a registered model: ``fasttrack.alias_lock.ALIAS.ID``.
LOCK_PREFIX = TAG_ALIAS_LOCK
#: Seconds a contender's tag may stay unchanged before the others count it as dead.
LEASE = 30.0
#: Seconds a contender waits for the lock before it gives up.
WAIT = 120.0


@dataclass(frozen=True)
class _Entry:
    """One contender's tag: its ticket (``None`` while choosing), heartbeat counter and who it is."""

    id: str
    ticket: int | None
    beat: int
    by: str
    owner: Owner | None = None

    def encode(self) -> str:
        data: dict[str, object] = {"ticket": self.ticket, "beat": self.beat, "by": self.by}
        if self.owner is not None:
            data["owner"] = self.owner.encode()
        return json.dumps(data, separators=(",", ":"))


def _decode(id: str, value: str) -> _Entry | None:
    try:
        data = json.loads(value)
        ticket = data["ticket"]
        owner = Owner.decode(data.get("owner")) if isinstance(data.get("owner"), str) else None
        return _Entry(
            id, int(ticket) if ticket is not None else None, int(data["beat"]), str(data.get("by", "?")), owner
        )
    except (ValueError, TypeError, KeyError):
        return None


class AliasLock:
    """Mutual exclusion between FastTrack processes moving ``alias`` of registered model ``name``.

    Use as a context manager around the re-read and the move::

        with AliasLock(mlflow_client, name, alias) as lock:
            holder = ...  # read where the alias points now
            lock.check()
            mlflow_client.set_registered_model_alias(name, alias, version)

    Entering waits up to ``wait`` seconds and raises :class:`~fasttrack.errors.AliasError` naming the holder when
    it cannot take the lock. ``clock`` and ``sleep`` are the monotonic clock and the pause between reads.
    """

    def __init__(
        self,
        mlflow_client: MlflowClient,
        name: str,
        alias: str,
        *,
        lease: float = LEASE,
        wait: float = WAIT,
        poll: float = 0.2,
        by: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = mlflow_client
        self.name, self.alias = name, alias
        self.lease, self.wait, self.poll = lease, wait, poll
        self._clock, self._sleep = clock, sleep
        self._prefix = f"{LOCK_PREFIX}{alias}."
        self._entry = _Entry(
            secrets.token_hex(8), None, 0, by or f"{socket.gethostname()}:{os.getpid()}", this_process()
        )
        self._renewed_at = 0.0  # when the last write of our tag started (monotonic)
        self._seen: dict[str, tuple[str, float]] = {}  # other tags: value, and when we first saw that value
        self._held = False
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._write_lock = threading.Lock()

    @property
    def key(self) -> str:
        """This contender's tag key."""
        return self._prefix + self._entry.id

    # ------------------------------------------------------------------------------------------------- taking
    def __enter__(self) -> AliasLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (the bakery's doorway, then the wait); :class:`AliasError` after ``wait`` seconds."""
        started = self._clock()
        try:
            self._write(self._entry)  # choosing
            ticket = 1 + max((e.ticket for e in self._others() if e.ticket is not None), default=0)
            self._write(self._next(ticket))
            while blockers := [e for e in self._others() if self._before_us(e)]:
                if self._clock() - started > self.wait:
                    first = min(blockers, key=lambda e: (e.ticket is not None, e.ticket or 0, e.id))
                    raise AliasError(
                        f"could not move {self.name}@{self.alias} within {self.wait:g} s: another move of it "
                        f"(by {first.by}) is under way; try again"
                    )
                if self._clock() - self._renewed_at >= self.lease / 5:
                    self._write(self._next(ticket))
                self._sleep(self.poll * (0.5 + random.random()))  # jitter: contenders do not poll in step
        except BaseException:
            self._delete(quiet=True)  # the error that stopped us is the one to report
            raise
        self._held = True
        self._stop.clear()
        self._heart = threading.Thread(target=self._beat, name=f"alias-lock-{self.alias}", daemon=True)
        self._heart.start()

    def check(self) -> None:
        """Raise :class:`AliasError` unless the lock is held and its lease was renewed recently enough that no other
        contender can have counted it as dead (call it just before the move)."""
        if not self._held:
            raise AliasError(f"the lock on {self.name}@{self.alias} is not held")
        silent = self._clock() - self._renewed_at
        if silent > self.lease / 2:
            raise AliasError(
                f"lost the lock on {self.name}@{self.alias}: its lease was not renewed for {silent:.0f} s "
                f"(a stalled process or tracking server); nothing was moved, try again"
            )

    def release(self) -> None:
        """Stop renewing and delete this contender's tag (a tag that cannot be deleted expires after the lease)."""
        self._held = False
        self._stop.set()
        if self._heart is not None:
            self._heart.join()
            self._heart = None
        self._delete()

    # ---------------------------------------------------------------------------------------------- internals
    def _before_us(self, other: _Entry) -> bool:
        """Whether ``other`` goes first: it is still choosing, or holds a smaller ticket (ties: the smaller id)."""
        if other.ticket is None:
            return True
        mine = self._entry.ticket or 0
        return (other.ticket, other.id) < (mine, self._entry.id)

    def _others(self) -> list[_Entry]:
        """The live tags of the other contenders for this alias; dead ones (unchanged for the lease) are deleted."""
        tags: dict[str, str] = dict(self._client.get_registered_model(self.name).tags)
        now = self._clock()
        live: list[_Entry] = []
        current: dict[str, tuple[str, float]] = {}
        for key, raw in tags.items():
            if not key.startswith(self._prefix) or key == self.key:
                continue
            value = raw or ""
            first_seen = self._seen.get(key)
            since = first_seen[1] if first_seen is not None and first_seen[0] == value else now
            current[key] = (value, since)
            entry = _decode(key.removeprefix(self._prefix), value)
            if entry is not None and entry.owner is not None and is_gone(entry.owner):
                self._forget(key, entry, why="its process is gone")
                continue
            if now - since >= self.lease or entry is None:
                if now - since >= self.lease:
                    self._forget(key, entry, why=f"unchanged for {self.lease:.0f} s")
                continue
            live.append(entry)
        self._seen = current
        return live

    def _forget(self, key: str, entry: _Entry | None, *, why: str) -> None:
        """Delete a dead contender's tag (another contender may do it first: that is fine)."""
        who = entry.by if entry is not None else "an unreadable entry"
        log.warning("%s@%s: removing the lock tag of %s, %s", self.name, self.alias, who, why)
        try:
            self._client.delete_registered_model_tag(self.name, key)
        except Exception:  # a tag deleted meanwhile, or a transient error: it stays ignored either way
            log.debug("could not delete %s", key, exc_info=True)

    def _next(self, ticket: int | None) -> _Entry:
        """Our tag with ``ticket`` and the heartbeat counter moved on (so the others see it change)."""
        return _Entry(self._entry.id, ticket, self._entry.beat + 1, self._entry.by, self._entry.owner)

    def _write(self, entry: _Entry) -> None:
        """Write our tag; the lease counts from when a successful write started (others cannot have seen the new
        value earlier)."""
        with self._write_lock:
            started = self._clock()
            self._client.set_registered_model_tag(self.name, self.key, entry.encode())
            self._entry, self._renewed_at = entry, started

    def _delete(self, *, quiet: bool = False) -> None:
        try:
            self._client.delete_registered_model_tag(self.name, self.key)
        except Exception as exc:  # the entry expires after the lease for everyone else
            log.log(logging.DEBUG if quiet else logging.WARNING, "could not remove the lock tag %s: %s", self.key, exc)

    def _beat(self) -> None:
        """Renew the lease while the lock is held, until :meth:`release` (runs in its own thread)."""
        while not self._stop.wait(self.lease / 5):
            if self._clock() - self._renewed_at > self.lease / 2:
                return  # too late to renew safely: check() refuses the move
            try:
                self._write(self._next(self._entry.ticket))
            except Exception as exc:  # check() refuses the move if renewals keep failing
                log.warning("could not renew the lock on %s@%s: %s", self.name, self.alias, exc)
