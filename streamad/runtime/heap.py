"""The C heap's free memory handed back to the system, now and then, in processes that run for months.

glibc's ``malloc`` keeps memory that was freed for the next allocations: a heap's top is returned only
when the top itself is free, and freed blocks below a live one stay resident. A process whose
allocations change shape (the backbone's batch sizes, a worker restarted, a burst of threads while one
waits on a hung worker) keeps its high-water mark for good, so its memory (RSS) climbs in steps that
are not a leak and never come back. ``malloc_trim(0)`` gives every whole free page of every arena back
(measured: the backbone on random batch sizes 1-4 holds 600-660 MiB, trimmed 567 MiB, flat).

Trimming has a price: a page handed back is faulted in again when it is used next (trimming after
every backbone call made it 12-15 ms slower a call), so :class:`HeapTrimmer` trims once a minute on a
thread of its own, a cost of a few milliseconds a minute. Where the C library is not glibc (macOS,
Windows, musl) there is nothing to call: :func:`release_free_memory` says False and the trimmer idles.

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
import threading
from dataclasses import dataclass

TRIM_EVERY_S = 60.0  # how often a long-running process hands its free heap back


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


class HeapTrimmer:
    """A thread (``streamad-heap``) that calls :func:`release_free_memory` every ``every`` seconds until
    :meth:`stop` (or the ``with`` block's end), which wakes it and joins it. It touches nothing of the
    caller's; ``trims`` counts its calls. Started by each ``serve`` / ``watch`` process and each worker
    process."""

    def __init__(self, every: float = TRIM_EVERY_S, name: str = "streamad-heap") -> None:
        if not every > 0:
            raise ValueError(f"HeapTrimmer.every must be a positive number of seconds, got {every!r}")
        self.every = float(every)
        self.trims = 0
        self._stop = threading.Event()
        self._trimmed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> HeapTrimmer:
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
