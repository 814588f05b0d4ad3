"""Telling a process that is gone from one that runs: by host, boot, PID namespace, PID and start time."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from fasttrack.registry import liveness
from fasttrack.registry.liveness import Owner, is_gone, this_process


def child_owner() -> tuple[Owner, subprocess.Popen[bytes]]:
    """A running child process as an Owner (written as it would write itself)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    me = this_process()
    assert me is not None  # Linux, with /proc: what the tests run on
    start = liveness._start_time(child.pid)
    assert start is not None
    return replace(me, pid=child.pid, start=start), child


def test_this_process_runs() -> None:
    me = this_process()
    assert me is not None and not is_gone(me)
    assert Owner.decode(me.encode()) == me


def test_a_killed_process_is_gone_a_running_one_is_not() -> None:
    owner, child = child_owner()
    try:
        assert not is_gone(owner)
        child.kill()
        child.wait()  # reaped: no such process any more
        assert is_gone(owner)
    finally:
        child.kill()
        child.wait()


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    owner, child = child_owner()
    try:
        child.kill()
        # a zombie until wait(): its /proc entry stays, with its start time, but it runs no more
        deadline = 100
        while liveness._start_time(child.pid) is not None and deadline:
            deadline -= 1
            subprocess.run(["sleep", "0.05"], check=True)
        assert is_gone(owner)
    finally:
        child.wait()


def test_what_cannot_be_known_is_never_gone() -> None:
    owner, child = child_owner()
    child.kill()
    child.wait()
    # another machine, boot or container: the PID says nothing about it
    assert not is_gone(replace(owner, host=owner.host + "-elsewhere"))
    assert not is_gone(replace(owner, boot="another-boot"))
    assert not is_gone(replace(owner, pidns="pid:[1]"))
    assert Owner.decode("not json") is None and Owner.decode(None) is None and Owner.decode('{"host": 1}') is None


def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    me = this_process()
    assert me is not None
    assert is_gone(replace(me, start=str(int(me.start) + 1)))  # this PID now, but started at another time
