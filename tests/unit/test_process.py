"""Process-wide settings (fasttrack.process) and the CLI's exits: each does what it says, and only entry points
use them. Settings that would outlive a test (a frozen heap, the collector off, the exit) are tried in a process of
their own."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fasttrack import process
from support import REPO, clean_env

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


# ------------------------------------------------------------------------------------------------- exit
# An object whose finaliser runs only in the interpreter's teardown (module globals are cleared there), and an
# atexit handler registered after skip_teardown_on_exit, as a command's libraries register theirs.
EXIT_SCRIPT = """
import atexit, logging, logging.handlers, os, sys
from fasttrack import process

class Teardown:
    def __del__(self, write=os.write):
        write(1, b"teardown\\n")

process.skip_teardown_on_exit()
marker = Teardown()
atexit.register(lambda: print("atexit handler", flush=True))
# Buffered until the handler is flushed or closed (logging.shutdown at exit).
handler = logging.handlers.MemoryHandler(100, target=logging.FileHandler(sys.argv[2], delay=True))
logging.getLogger("check").addHandler(handler)
logging.getLogger("check").warning("logged")
if sys.argv[1] == "fast":
    process.exit_without_teardown(3)
sys.exit(3)
"""


@pytest.mark.parametrize("how", ["fast", "ordinary"])
def test_exit_without_teardown_runs_atexit_handlers_and_skips_the_rest(how: str, tmp_path: Path) -> None:
    log = tmp_path / "check.log"
    done = run_python(EXIT_SCRIPT, how, str(log))
    assert done.returncode == 3, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "atexit handler"  # atexit handlers registered after skip_teardown_on_exit ran
    assert log.read_text() == "logged\n"  # logging's buffered handler was flushed
    # The interpreter's teardown: skipped by exit_without_teardown only.
    assert lines[1:] == ([] if how == "fast" else ["teardown"])


def test_only_logging_registers_an_atexit_handler_before_the_cli_starts() -> None:
    """skip_teardown_on_exit's handler runs after every atexit handler registered after it; those registered
    before it (at the import of fasttrack.cli) would be skipped, except logging.shutdown, which it calls itself."""
    done = run_python(
        """
        import atexit
        registered = []
        register = atexit.register
        atexit.register = lambda function, *args, **kwargs: registered.append(function) or register(function)
        import fasttrack.cli
        print([f"{function.__module__}.{function.__qualname__}" for function in registered])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['logging.shutdown']"


def test_only_entry_points_change_the_process() -> None:
    """The CLI and the server's entry points use fasttrack.process; no other module imports it or makes its
    changes itself."""
    imports = re.compile(r"^\s*(from fasttrack import .*\bprocess\b|(from|import) fasttrack\.process\b)", re.MULTILINE)
    tweaks = re.compile(r"\bgc\.(disable|enable|freeze|unfreeze)\(|malloc_trim|THP_DISABLE|os\._exit\(|_run_exitfuncs")
    sources = {path.relative_to(SRC).as_posix(): path.read_text(encoding="utf-8") for path in SRC.rglob("*.py")}
    users = {name for name, text in sources.items() if imports.search(text)}
    assert users, "the entry points use fasttrack.process"
    assert all(name.startswith("cli") or name == "serving/app.py" for name in users), users
    assert [name for name, text in sources.items() if tweaks.search(text)] == ["process.py"]


# A command's real ends, each in a process of its own: the CLI's main() with commands that succeed, fail as
# FastTrack expects, are interrupted by a real SIGINT, and fail unexpectedly. `teardown` is printed only when the
# interpreter is torn down.
CLI_SCRIPT = """
import os, signal, sys, time
from fasttrack.cli import app, main
from fasttrack.errors import DataError

class Teardown:
    def __del__(self, write=os.write):
        write(1, b"teardown\\n")

marker = Teardown()

@app.command("check-ok")
def check_ok() -> None:
    print("done")

@app.command("check-expected")
def check_expected() -> None:
    raise DataError("the input has no rows")

@app.command("check-interrupted")
def check_interrupted() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(60)

@app.command("check-unexpected")
def check_unexpected() -> None:
    raise ZeroDivisionError("division by zero")

main()
"""


@pytest.mark.parametrize(
    ("command", "code", "stdout", "stderr"),
    [
        ("check-ok", 0, ["done"], []),
        ("check-expected", 1, [], ["error: the input has no rows"]),
        ("check-interrupted", 130, ["teardown"], ["interrupted"]),
        (
            "check-unexpected",
            1,
            ["teardown"],
            ["error: unexpected ZeroDivisionError: division by zero (run with --debug for the traceback)"],
        ),
    ],
)
def test_the_cli_exits_with_the_right_code_and_one_line(
    command: str, code: int, stdout: list[str], stderr: list[str], tmp_path: Path
) -> None:
    """Success and expected errors skip the interpreter's teardown; Ctrl-C and unexpected errors exit the
    ordinary way (``teardown`` printed)."""
    done = run_python(CLI_SCRIPT, command, env=clean_env(tmp_path / "home"))
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines() == stdout
    assert [line for line in done.stderr.splitlines() if line.strip()] == stderr
