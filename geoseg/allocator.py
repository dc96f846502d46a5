"""How the C allocator treats the network's large, short-lived tensors (glibc only).

A forward pass on a 1248² tile allocates and frees about a gigabyte of activations,
in tensors of up to ~100 MB. glibc serves every allocation above its mmap threshold
(at most 32 MB under its dynamic rule) with a fresh mapping and unmaps it on free, so
every pass pays the kernel to fault in and zero those pages again: on 2 CPU cores,
a third of a pass's time was system time (measured: README, Speed).

:func:`keep_freed_memory` serves allocations up to :data:`HEAP_LIMIT` from the heap,
keeps freed heap memory for the next pass instead of trimming it, and limits the
process to one arena (glibc gives threads their own arenas, and each would keep its
own copy of a pass's activations). Memory then stays at its peak of one pass plus the
heap's fragmentation, instead of returning to the system between passes.
The memory stays with the process for its next pass and its next job (a batch's next
scene) unless polygons follow (``geoseg.workflow.run_predict`` gives it back before
them: their allocations would fragment it); :func:`release_free_memory` gives it
back, for a long-lived process that is done predicting. :func:`after_network_pass`
does so after every pass where memory is not kept (the previous behaviour, and the
fallback off glibc).

The process-wide settings are taken once and never undone (glibc cannot restore its
dynamic thresholds). ``GEOSEG_KEEP_FREED_MEMORY=0`` turns them off. Worker processes
get them from :func:`worker_environment` at spawn; a process started with
``MALLOC_ARENA_MAX=1`` and ``MALLOC_MMAP_THRESHOLD_`` (as such workers are) keeps freed
memory from its start.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

#: Allocations up to this size come from the heap (measured: a pass's largest tensors
#: on a 1248 px tile are between 64 and 128 MB, growing with the tile's area; larger
#: ones are still mapped and unmapped).
HEAP_LIMIT = 512 * 2**20
#: Free memory at the top of the heap is not returned automatically below this
#: (mallopt takes a C int: the largest one).
TRIM_LIMIT = 2**31 - 1
#: The variable that turns keeping freed memory off (``0``) or on (default).
SWITCH = "GEOSEG_KEEP_FREED_MEMORY"

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_lock = threading.Lock()


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist (glibc)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def _enabled() -> bool:
    """Whether glibc is there and ``GEOSEG_KEEP_FREED_MEMORY`` is not ``0``."""
    return _LIBC is not None and os.environ.get(SWITCH, "1") != "0"


def _started_keeping() -> bool:
    env = os.environ
    return _enabled() and env.get("MALLOC_ARENA_MAX") == "1" and "MALLOC_MMAP_THRESHOLD_" in env


def _thread_count() -> int:
    """Threads of this process, native ones included (0 where ``/proc`` is missing)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


_keeping = _started_keeping()


def keeping_freed_memory() -> bool:
    """Whether this process keeps freed memory for reuse (see the module docstring)."""
    return _keeping


def keep_freed_memory() -> bool:
    """Keep freed memory for the next network pass, for the rest of this process.

    Only takes effect while the process has a single thread (the ``geoseg`` network commands
    calls it first thing): glibc fixes its arena limit when a second thread first
    allocates, and with an arena per thread, each thread would keep a pass's
    activations. Idempotent.

    Returns
    -------
    bool
        Whether freed memory is now kept (``False`` off glibc, once other threads run,
        where a setting was refused, or with ``GEOSEG_KEEP_FREED_MEMORY=0``).
    """
    global _keeping
    with _lock:
        libc = _LIBC
        if _keeping or libc is None or not _enabled() or _thread_count() != 1:
            return _keeping
        ok = all(
            libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1
            for param, value in (
                (_M_ARENA_MAX, 1),
                (_M_MMAP_THRESHOLD, HEAP_LIMIT),
                (_M_TRIM_THRESHOLD, TRIM_LIMIT),
            )
        )
        _keeping = ok
    return _keeping


def worker_environment() -> dict[str, str]:
    """Environment variables that make a spawned process keep freed memory from its start.

    Empty off glibc or with ``GEOSEG_KEEP_FREED_MEMORY=0``.
    """
    if not _enabled():
        return {}
    return {
        "MALLOC_ARENA_MAX": "1",
        "MALLOC_MMAP_THRESHOLD_": str(HEAP_LIMIT),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_LIMIT),
    }


def freed_memory_kept(scheduler: str) -> bool | None:
    """Whether the processes that run a job's network passes keep freed memory.

    This process for ``sync`` and ``threads``; the workers a ``local`` cluster spawns
    (:func:`worker_environment`); ``None`` for an existing cluster, whose workers'
    environment is its own.
    """
    if scheduler in ("sync", "threads"):
        return _keeping
    if scheduler == "local":
        return bool(worker_environment())
    return None


def release_free_memory() -> None:
    """Give the memory freed so far back to the system (glibc only; else nothing)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def after_network_pass() -> None:
    """Release a pass's freed memory, unless this process keeps it for the next pass.

    Without kept memory, glibc keeps freed tensor memory in per-thread arenas; with two
    threads labelling blocks each arena would keep a tile's activations, so trimming
    after each pass keeps the peak at one pass.
    """
    if not _keeping:
        release_free_memory()
