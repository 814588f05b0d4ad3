"""The alias lock against a real embedded MLflow store: one holder at a time, dead holders expire, waiters give up."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from fasttrack.config import Settings, get_settings
from fasttrack.errors import AliasError
from fasttrack.registry.alias_lock import LOCK_PREFIX, AliasLock
from fasttrack.registry.store import client


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An embedded store of its own (MLflow's and FastTrack's variables cleared)."""
    with pytest.MonkeyPatch.context() as patch:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI", "FASTTRACK_MODEL"):
            patch.delenv(var, raising=False)
        yield get_settings(home=tmp_path_factory.mktemp("alias-lock") / "home")


@pytest.fixture
def name(store: Settings) -> str:
    """A new registered model (no version is needed to lock one of its aliases)."""
    model = f"lock-{uuid.uuid4().hex[:8]}"
    client(store).create_registered_model(model)
    return model


def lock_tags(settings: Settings, name: str) -> dict[str, str]:
    tags = client(settings).get_registered_model(name).tags
    return {k: v for k, v in tags.items() if k.startswith(LOCK_PREFIX)}


def test_holders_never_overlap(store: Settings, name: str) -> None:
    # A read-sleep-write increment loses updates unless the lock keeps the threads out of each other's way.
    counter = {"value": 0, "inside": 0, "most_inside": 0}

    def work() -> None:
        with AliasLock(client(store), name, "champion", poll=0.05):
            counter["inside"] += 1
            counter["most_inside"] = max(counter["most_inside"], counter["inside"])
            value = counter["value"]
            time.sleep(0.05)
            counter["value"] = value + 1
            counter["inside"] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert counter["value"] == 4
    assert counter["most_inside"] == 1
    assert lock_tags(store, name) == {}  # every holder removed its tag


def test_a_waiter_goes_after_the_holder_releases(store: Settings, name: str) -> None:
    order: list[str] = []
    holding = threading.Event()

    def second() -> None:
        holding.wait(timeout=30)
        with AliasLock(client(store), name, "champion", poll=0.05):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    with AliasLock(client(store), name, "champion") as lock:
        holding.set()
        # The waiter's tag appears (it is waiting, not ahead of us) while we hold the lock.
        deadline = time.monotonic() + 30
        while len(lock_tags(store, name)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(lock_tags(store, name)) == 2
        lock.check()
        order.append("first out")
    thread.join(timeout=30)
    assert order == ["first out", "second in"]


def test_other_aliases_are_not_locked(store: Settings, name: str) -> None:
    with AliasLock(client(store), name, "champion"), AliasLock(client(store), name, "staging", wait=1):
        assert len(lock_tags(store, name)) == 2


def test_a_dead_contenders_tag_expires_and_is_removed(store: Settings, name: str) -> None:
    # A process killed while it held the lock: its tag stays, never renewed.
    dead = f"{LOCK_PREFIX}champion.{'0' * 16}"
    client(store).set_registered_model_tag(name, dead, json.dumps({"ticket": 1, "beat": 3, "by": "killed"}))
    with AliasLock(client(store), name, "champion", lease=0.5, poll=0.05, wait=30):
        assert dead not in lock_tags(store, name)


def test_a_waiter_gives_up_naming_the_holder(store: Settings, name: str) -> None:
    refused = pytest.raises(AliasError, match=r"within 0\.3 s: another move of it \(by alice on laptop\)")
    with AliasLock(client(store), name, "champion", by="alice on laptop"):
        with refused, AliasLock(client(store), name, "champion", wait=0.3, poll=0.05):
            pytest.fail("two holders")
        assert len(lock_tags(store, name)) == 1  # the waiter that gave up removed its tag


class Clock:
    """A monotonic clock the test moves by hand (a stalled holder, without waiting for it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_holder_that_could_not_renew_its_lease_does_not_move(store: Settings, name: str) -> None:
    clock = Clock()
    with AliasLock(client(store), name, "champion", lease=30, clock=clock) as lock:
        lock.check()
        clock.now += 16  # more than half the lease without a renewal: another contender may count it dead
        with pytest.raises(AliasError, match=r"lost the lock on .*not renewed for 16 s"):
            lock.check()
    with pytest.raises(AliasError, match="not held"):
        lock.check()


def test_a_tag_that_is_not_a_lock_entry_does_not_block(store: Settings, name: str) -> None:
    client(store).set_registered_model_tag(name, f"{LOCK_PREFIX}champion.garbage", "not json")
    with AliasLock(client(store), name, "champion", wait=5, poll=0.05) as lock:
        lock.check()


def test_a_contender_whose_process_is_gone_is_removed_at_once(store: Settings, name: str) -> None:
    """A ``kill -9`` during a registration: the next one need not wait for the lease (30 s by default)."""
    import subprocess
    import sys
    from dataclasses import replace

    from fasttrack.registry.liveness import this_process

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    me = this_process()
    assert me is not None
    gone = replace(me, pid=child.pid, start="0")
    dead = f"{LOCK_PREFIX}champion.{'1' * 16}"
    value = json.dumps({"ticket": 1, "beat": 3, "by": "killed", "owner": gone.encode()})
    client(store).set_registered_model_tag(name, dead, value)
    alive = f"{LOCK_PREFIX}champion.{'2' * 16}"  # a live process's tag (this one's) is waited for, as before
    client(store).set_registered_model_tag(
        name, alive, json.dumps({"ticket": 2, "beat": 1, "by": "alive", "owner": me.encode()})
    )
    waiting = AliasLock(client(store), name, "champion", lease=600, poll=0.05, wait=1)
    with pytest.raises(AliasError, match=r"another move of it \(by alive\) is under way"), waiting:
        pass
    assert dead not in lock_tags(store, name) and alive in lock_tags(store, name)
    client(store).delete_registered_model_tag(name, alive)
    client(store).set_registered_model_tag(name, dead, value)
    # with a lease of 10 minutes, only the owner being gone lets this one through within its 5 s
    with AliasLock(client(store), name, "champion", lease=600, poll=0.05, wait=5) as lock:
        assert list(lock_tags(store, name)) == [lock.key]
