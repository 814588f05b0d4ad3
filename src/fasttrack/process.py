"""Process-wide settings: the one module that changes how the whole process runs, called by entry points only.

The CLI (``fasttrack predict``) and the server (``fasttrack.serving.app.run`` and its workers) call these
functions; library code never does, so ``fasttrack.score_file`` or a ``Predictor`` used from a notebook leaves the
caller's process as it found it. Each setting exists for a figure measured on this project's 2-core
machine (docs/performance.md):

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

Nothing here runs at import: each function acts when it is called.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "defer_collection",
    "huge_pages_disabled",
    "release_free_memory",
    "resume_collection",
    "settle_heap",
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
