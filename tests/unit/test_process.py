"""Process-wide settings (fasttrack.process): each does what it says, and only entry points use them. Settings
that would outlive a test (a frozen heap, the collector off) are tried in a process of their own."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import textwrap

import pytest

from fasttrack import process
from support import REPO

SRC = REPO / "src" / "fasttrack"


def run_python(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


# --------------------------------------------------------------------------------------------- huge pages
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_small_pages_turns_huge_pages_off_then_back() -> None:
    before = process.huge_pages_disabled()
    assert before is False  # a test process starts with them allowed
    with process.small_pages():
        assert process.huge_pages_disabled() is True
        with process.small_pages():  # already off: left off, and not turned back on by the inner block
            assert process.huge_pages_disabled() is True
        assert process.huge_pages_disabled() is True
    assert process.huge_pages_disabled() is False
    with pytest.raises(RuntimeError), process.small_pages():
        raise RuntimeError("scoring failed")
    assert process.huge_pages_disabled() is False


# ----------------------------------------------------------------------------------- garbage collection
def test_collection_deferred_then_resumed() -> None:
    assert gc.isenabled()
    try:
        process.defer_collection()
        assert not gc.isenabled()
    finally:
        process.resume_collection()
    assert gc.isenabled()


# In a process of its own: freezing the heap of the test process would keep every test's garbage alive.
SETTLE_SCRIPT = """
import gc, weakref
from fasttrack import process

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

process.defer_collection()
before_first = cycle()  # garbage from start-up: frozen with the rest by the first settle
process.settle_heap()
print(gc.isenabled(), gc.get_freeze_count() > 0, before_first() is not None)
after_first = cycle()  # garbage of the serving process (a swapped-out model): freed by the next settle
process.settle_heap()
print(gc.isenabled(), gc.get_freeze_count() > 0, before_first() is None, after_first() is None)
"""


def test_settling_the_heap_freezes_it_and_frees_what_a_swap_left() -> None:
    done = run_python(SETTLE_SCRIPT)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "True True True"  # collector back on, everything frozen, start-up garbage kept (frozen)
    assert second == "True True True True"  # unfrozen, collected (both cycles freed), frozen again


TRIM_SCRIPT = """
from fasttrack import process

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

blocks = [bytes(2000) for _ in range(100_000)]  # about 200 MB through malloc
keep = blocks[-1]  # the top of the heap stays in use, so glibc cannot give the rest back by itself
del blocks
freed = rss_mb()
print(process.release_free_memory(), freed - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_memory_goes_back_to_the_system() -> None:
    done = run_python(TRIM_SCRIPT)
    assert done.returncode == 0, done.stderr
    asked, returned_mb = done.stdout.split()
    assert asked == "True"  # this is glibc (Debian)
    assert int(returned_mb) > 100


def test_only_entry_points_change_the_process() -> None:
    """The CLI and the server's entry points use fasttrack.process; no other module imports it or makes its
    changes itself."""
    imports = re.compile(r"^\s*(from fasttrack import .*\bprocess\b|(from|import) fasttrack\.process\b)", re.MULTILINE)
    tweaks = re.compile(r"\bgc\.(disable|enable|freeze|unfreeze)\(|malloc_trim|THP_DISABLE")
    sources = {path.relative_to(SRC).as_posix(): path.read_text(encoding="utf-8") for path in SRC.rglob("*.py")}
    users = {name for name, text in sources.items() if imports.search(text)}
    assert users, "the entry points use fasttrack.process"
    assert all(name.startswith("cli") or name == "serving/app.py" for name in users), users
    assert [name for name, text in sources.items() if tweaks.search(text)] == ["process.py"]
