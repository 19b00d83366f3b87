"""The C heap's free memory handed back to the system, now and then, in processes that run for months.

glibc's ``malloc`` keeps memory that was freed for the next allocations: a heap's top is returned only
when the top itself is free, and freed blocks below a live one stay resident. A process whose
allocations change shape (the backbone's batch sizes, a worker restarted, a burst of threads while one
waits on a hung worker) keeps its high-water mark for good, so its memory (RSS) climbs in steps that
are not a leak and never come back. ``malloc_trim(0)`` gives every whole free page of every arena back
(measured: the backbone on random batch sizes 1-4 holds 600-660 MiB, trimmed 567 MiB, flat).

Trimming has a price: a page handed back is faulted in again when it is used next (trimming after
every backbone call made it 12-15 ms slower a call), so :class:`HeapTrimmer` trims once a minute on a
thread of its own, a cost of a few milliseconds a minute. glibc trims on its own too, by default after
any ``free`` that leaves more than a small threshold free at the top of a heap, and serves blocks above
another threshold from ``mmap`` (handed back at each ``free``): a frame's work that frees a heap's top
each time is faulted in again at the next frame (measured: a serve camera whose detector runs in a
worker process, so that nothing of the learner's pins the main heap's top, spent 16 % of a core in the
kernel, the machine 72,000 page faults a second, its backbone 21-26 ms a frame against 15-16). So a process that
trims once a minute turns glibc's own trimming off (:func:`defer_heap_trimming`, done by
:meth:`HeapTrimmer.start`): its free memory goes back at the next trim, never in the middle of a frame.
Where the C library is not glibc (macOS, Windows, musl) there is nothing to call:
:func:`release_free_memory` and :func:`defer_heap_trimming` say False and the trimmer idles.

>>> stats = heap_stats()
>>> stats is None or stats.used_mib >= 0
True
>>> with HeapTrimmer(every=0.01) as trimmer:
...     trimmer.wait_for_trims(2, timeout=5.0)
True
>>> trimmer.thread.is_alive()
False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from dataclasses import dataclass

TRIM_EVERY_S = 60.0  # how often a long-running process hands its free heap back

# glibc's mallopt parameters (malloc.h) and the values :func:`defer_heap_trimming` sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_NEVER = 2**31 - 1  # mallopt takes a C int: the largest, so that a heap's free top is kept for the next trim
# glibc's own ceiling for its dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit): blocks up to
# this size come from the heaps, where freed memory is reused; larger ones still go to mmap.
MMAP_FROM = 32 * 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


@dataclass(frozen=True)
class HeapStats:
    """The C heap of this process (MiB, over every arena): ``arena`` taken from the system for small and
    medium blocks, ``mmapped`` for large ones, ``used`` in live blocks, ``free`` kept for reuse."""

    arena_mib: float
    mmapped_mib: float
    used_mib: float
    free_mib: float


def heap_stats() -> HeapStats | None:
    """The C heap's figures (glibc 2.33 or later), or None where they cannot be read."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    info = libc.mallinfo2()
    mib = 2.0 ** -20
    return HeapStats(info.arena * mib, info.hblkhd * mib, info.uordblks * mib, info.fordblks * mib)


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim(0)``): True if the call was
    made, False where the C library has none. Safe from any thread (it locks each arena in turn)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def defer_heap_trimming() -> bool:
    """Turn glibc's trimming after each ``free`` off for this process: blocks up to :data:`MMAP_FROM`
    come from the heaps and a heap's free top stays until :func:`release_free_memory` (the
    :class:`HeapTrimmer`) hands it back. True if set; False where the C library is not glibc, or where
    ``GLIBC_TUNABLES`` already sets malloc's tunables (the user's choice stands). Process-wide and
    idempotent; it frees nothing and allocates nothing. It holds for the rest of the process's life
    (glibc's dynamic thresholds cannot be turned back on): freed memory is reused, so the heap grows no
    higher than its peak, but after the last trimmer stops it is handed back only when the process ends
    or :func:`release_free_memory` is called.

        >>> defer_heap_trimming() in (True, False)
        True
    """
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt") or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    # setting either turns glibc's dynamic thresholds off (so both are set)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_FROM)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER))


def heap_as_in_watch() -> str:
    """Set the heap as ``watch`` and ``serve`` have it (:func:`defer_heap_trimming`), for a benchmark that
    measures what they run; returns the line its report prints about it."""
    if defer_heap_trimming():
        return "heap: glibc's trimming after each free deferred, as in watch and serve"
    return "heap: the C library's own (not glibc, or GLIBC_TUNABLES sets malloc's tunables)"


class HeapTrimmer:
    """A thread (``streamad-heap``) that calls :func:`release_free_memory` every ``every`` seconds until
    :meth:`stop` (or the ``with`` block's end), which wakes it and joins it. It touches nothing of the
    caller's; ``trims`` counts its calls. Started by each ``serve`` / ``watch`` process and each worker
    process; :meth:`start` also turns glibc's own trimming off (:func:`defer_heap_trimming`), since this
    thread now hands the free memory back."""

    def __init__(self, every: float = TRIM_EVERY_S, name: str = "streamad-heap") -> None:
        if not every > 0:
            raise ValueError(f"HeapTrimmer.every must be a positive number of seconds, got {every!r}")
        self.every = float(every)
        self.trims = 0
        self._stop = threading.Event()
        self._trimmed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> HeapTrimmer:
        defer_heap_trimming()
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def __enter__(self) -> HeapTrimmer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_trims(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` trims were made (tests); False on timeout."""
        with self._trimmed:
            return self._trimmed.wait_for(lambda: self.trims >= n, timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            release_free_memory()
            with self._trimmed:
                self.trims += 1
                self._trimmed.notify_all()
