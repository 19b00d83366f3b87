"""Resident memory of the engine after a short and a long synthetic stream (it should not grow)."""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from streamad.bench.streams import SyntheticStream, descriptor_detector


def rss_mib() -> float:
    """Resident set size of this process in MiB (from /proc/self/statm; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(frames: tuple[int, int], *, patches: int = 100, dim: int = 64, window: int = 64, seeds: int = 10,
                 seed: int = 0, live: bool = False, emit: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Resident memory (MiB) after the smaller and the larger of ``frames`` synthetic frames, and the growth
    between them; ``live``: every frame scored while the background learner admits the newest due one;
    ``emit`` hears a line at each reading."""
    n1, n2 = sorted(frames)
    det = descriptor_detector(window, patches, dim, seeds, seed, background=live)
    stream = SyntheticStream(patches, dim, seed)
    readings: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(1, n2 + 1):
        det.process_descriptors(stream.next(), frame_shape=(64, 64))
        if i in (n1, n2):
            gc.collect()
            readings[str(i)] = rss_mib()
            emit(f"  after {i} frames: {readings[str(i)]:.1f} MiB resident ({time.perf_counter() - t0:.0f} s)")
    growth = readings[str(n2)] / readings[str(n1)] - 1.0
    learner = det.learner_stats()
    det.close()
    return {"patches": patches, "dim": dim, "window": window, "seeds": seeds, "rss_mib": readings, "growth": growth,
            "seconds": time.perf_counter() - t0, "nominal": det.nominal_count, "live": live,
            "admissions": int(learner.get("admitted", n2))}


def memory_line(m: dict[str, Any]) -> str:
    """The one-line result of :func:`bench_memory`."""
    n1, n2 = sorted(int(n) for n in m["rss_mib"])
    mode = f"live, {m['admissions']} admissions" if m.get("live") else "synchronous"
    return (f"resident memory (P={m['patches']}, d={m['dim']}, W={m['window']}, {mode}): "
            f"{m['rss_mib'][str(n1)]:.1f} MiB after {n1} frames, {m['rss_mib'][str(n2)]:.1f} MiB after {n2}: "
            f"{100 * m['growth']:+.1f}% (target within 5%)")
