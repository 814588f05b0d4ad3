"""Process-wide settings: the one module that changes how the whole process runs, called by entry points only.

The CLI (``fasttrack.cli.main`` and its ``predict`` command) and the server (``fasttrack.serving.app.run`` and its
workers) call these functions; library code never does, so ``fasttrack.score_file`` or a ``Predictor`` used from a
notebook leaves the caller's process as it found it. Each setting exists for a figure measured on this project's
2-core machine (docs/performance.md):

- **Transparent huge pages off while scoring a file** (:func:`small_pages`). Batch scoring allocates and frees
  each batch's buffers again and again; pyarrow's allocator and numpy ask for huge pages, so the kernel zeroed
  2 MB at the first touch of each however little of it was used. ``perf`` showed that zeroing
  (``clear_page_erms`` under ``do_huge_pmd_anonymous_page``) as a fifth of the CPU time of scoring a million
  adult-like rows, about 0.3 s (``bench/batch_scoring.py``).
- **The garbage collector off while a server starts, then the heap frozen** (:func:`defer_collection`,
  :func:`settle_heap`). A server with its model loaded holds about a million long-lived objects; each full
  collection scanned them all: 200-400 ms pauses every few seconds under load (the p99 latency), and four such
  collections (1.4 s) while starting (``bench/serving.py``).
- **Freed memory handed back to the system after a model load** (:func:`release_free_memory`, glibc's
  ``malloc_trim``): a 100-tree random forest left the server at 418 MB where 194 MB were in use.
- **No interpreter teardown after a command that finished** (:func:`exit_without_teardown`). Once a command has
  done its work and every ``atexit`` handler has run, tearing the interpreter down (every module of MLflow,
  scikit-learn, pandas...) only costs time: measured with ``bench/teardown.py``, a median 1.5 s of CPU of
  ``fasttrack train`` and 0.14-0.16 s of ``fasttrack predict`` on a small file, a sixth of each command
  (docs/performance.md, "Ending a command"). It is taken after a success and after an expected error (a
  ``FastTrackError``), never after Ctrl-C or an unexpected exception: those exit the ordinary way, with the
  interpreter's full teardown. It hides no crash: the SIGABRT that ``fasttrack predict`` once met in that
  teardown came from Arrow's thread pool releasing a Python file, which :mod:`fasttrack.data.stream` no longer
  leaves to Arrow's threads.

Nothing here runs at import: each function acts when it is called.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

__all__ = [
    "defer_collection",
    "exit_without_teardown",
    "huge_pages_disabled",
    "release_free_memory",
    "resume_collection",
    "settle_heap",
    "skip_teardown_on_exit",
    "small_pages",
]

# ------------------------------------------------------------------------------------------- huge pages
#: prctl(2) options (linux/prctl.h).
_PR_SET_THP_DISABLE = 41
_PR_GET_THP_DISABLE = 42


@contextmanager
def small_pages() -> Iterator[None]:
    """Transparent huge pages off for this process inside the block (Linux), then as they were.

    With small pages the kernel zeroes only the pages a batch touches, not 2 MB per huge page (see the module
    docstring). Elsewhere, or when the process already had them off, this does nothing.
    """
    prctl = _prctl()
    if prctl is None:
        yield
        return
    changed = prctl(_PR_GET_THP_DISABLE, 0, 0, 0, 0) == 0 and prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        if changed:
            prctl(_PR_SET_THP_DISABLE, 0, 0, 0, 0)


def huge_pages_disabled() -> bool | None:
    """Whether transparent huge pages are off for this process; ``None`` where prctl cannot tell (not Linux)."""
    prctl = _prctl()
    if prctl is None:
        return None
    state = prctl(_PR_GET_THP_DISABLE, 0, 0, 0, 0)
    return None if state < 0 else state == 1


def _prctl() -> Callable[[int, int, int, int, int], int] | None:
    """libc's prctl, on Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at import: the CLI imports this module for every command

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    # Its arguments are unsigned longs: the kernel refuses the call when the unused ones are not all zero.
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    function: Callable[[int, int, int, int, int], int] = prctl
    return function


# ---------------------------------------------------------------------------------- garbage collection
def defer_collection() -> None:
    """Turn the garbage collector off until :func:`settle_heap` (or :func:`resume_collection`) turns it on.

    For a server process before it loads its model: start-up allocates about a million objects that live as
    long as the process, and every collection meanwhile would scan them all for nothing.
    """
    gc.disable()


def resume_collection() -> None:
    """Turn the garbage collector back on (a process that deferred it and will not settle a heap)."""
    gc.enable()


def settle_heap() -> None:
    """Freeze every object alive now out of the collector's sight, turn the collector on, return freed memory.

    Called by the server after each model swap: frozen objects are never scanned again, only what requests
    allocate is (see the module docstring). The first time, start-up's garbage is frozen with the rest
    (measured: a few dozen objects). On a reload, the previous freeze is undone and collected first, so the
    swapped-out model (whose objects hold reference cycles) is freed; that one full collection pauses the process
    once per reload, as a full collection would have anyway. Then :func:`release_free_memory`.
    """
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    gc.freeze()
    gc.enable()
    release_free_memory()


def release_free_memory() -> bool:
    """Give the memory the C allocator keeps after frees back to the system (glibc's ``malloc_trim``).

    Loading a model frees as much as it keeps: ONNX Runtime parses the whole graph and builds its own structures
    from it, and glibc keeps freed blocks for reuse, returning only what sits at the top of its heap. Returns
    whether it could ask (``False`` off glibc, e.g. on musl or macOS, where there is nothing to do here).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


# ------------------------------------------------------------------------------------------------- exit
_exit_code: list[int] = []  # set by exit_without_teardown, read by the handler at exit


def skip_teardown_on_exit() -> None:
    """Let :func:`exit_without_teardown` end the process right after the ``atexit`` handlers.

    Call it first in an entry point, before the command runs: ``atexit`` handlers run in the reverse order of
    their registration, so the one registered here runs after every handler the command's libraries register
    later (MLflow ending its runs, temporary folders' finalizers, ...). Handlers registered before it, at the
    import of the entry point's modules, would be skipped: today that is only ``logging.shutdown`` (registered when
    ``logging`` is imported), which the handler calls itself. Until :func:`exit_without_teardown` is called, the
    handler does nothing and the process exits the ordinary way.
    """
    atexit.register(_end_now)


def exit_without_teardown(code: int) -> NoReturn:
    """Exit with ``code`` the ordinary way (``SystemExit``), but skip the interpreter's teardown at the end.

    Non-daemon threads are joined and the ``atexit`` handlers run as on any exit; then, if
    :func:`skip_teardown_on_exit` was called first, the process ends with ``code`` without finalising the
    interpreter (see the module docstring for what that saves). Without it, this is ``sys.exit(code)``. For an
    entry point's expected ends only (success, a ``FastTrackError``): a caller that catches the ``SystemExit``
    and carries on would still end at its own exit with ``code``.
    """
    _exit_code[:] = [code]
    sys.exit(code)


def _end_now() -> None:
    if not _exit_code:
        return
    logging.shutdown()  # registered before this handler, so it would run after it: flush the log handlers now
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it anyway
            continue
    os._exit(_exit_code[0])
