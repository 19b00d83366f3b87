"""A long run on a stream whose normal patches keep wandering: memory and latency must stay flat.

Every ``report_every`` frames a row: frames so far, resident memory, median and p99 latency of
``process_descriptors`` (score + admit) over that interval; at the end a verdict, the last interval
against the first after the warm-up.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamad.bench.memory import rss_mib
from streamad.bench.streams import WanderingStream, descriptor_detector

HEADER = f"{'frames':>8} {'RSS MiB':>8} {'median ms':>10} {'p99 ms':>8} {'nominal':>8} {'elapsed s':>9}"


def soak_row(frames: int, latencies: list[float], rss: float, nominal: int, seconds: float) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1e3
    return {"frames": frames, "rss_mib": rss, "median_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "nominal": nominal, "seconds": seconds}


def row_line(row: dict[str, Any]) -> str:
    return (f"{row['frames']:>8} {row['rss_mib']:>8.1f} {row['median_ms']:>10.2f} {row['p99_ms']:>8.2f} "
            f"{row['nominal']:>8} {row['seconds']:>9.0f}")


def bench_soak(frames: int, report_every: int, *, patches: int = 100, dim: int = 64, window: int = 64,
               seeds: int = 10, seed: int = 0, emit: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run the engine for ``frames`` frames of a :class:`~streamad.bench.streams.WanderingStream` (one index
    thread); ``emit`` hears the header and a row per ``report_every`` frames. Needs at least three rows."""
    from streamad.config import IndexConfig

    det = descriptor_detector(window, patches, dim, seeds, seed, index=IndexConfig(threads=1, insert_threads=1))
    stream = WanderingStream(patches, dim, seed)
    rows: list[dict[str, Any]] = []
    lat: list[float] = []
    clock = time.perf_counter
    start = clock()
    emit(HEADER)
    for i in range(1, frames + 1):
        x = stream.next()
        t0 = clock()
        det.process_descriptors(x, frame_shape=(64, 64))
        lat.append(clock() - t0)
        if i % report_every == 0:
            gc.collect()  # outside the timed calls: the reading is of live memory, not of pending garbage
            rows.append(soak_row(i, lat, rss_mib(), det.nominal_count, clock() - start))
            lat = []
            emit(row_line(rows[-1]))
    return {"patches": patches, "grid": list(det.extractor.grid), "dim": dim, "window": window,
            "seeds": seeds, "frames": frames, "report_every": report_every, "index_threads": 1,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows, "verdict": soak_verdict(rows),
            "seconds": clock() - start}


def soak_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Last row against the first after the warm-up (``rows[0]``: the window fills, the first seeds go)."""
    first, last = rows[1], rows[-1]
    verdict = {"compared": [first["frames"], last["frames"]],
               "rss_ratio": last["rss_mib"] / first["rss_mib"],
               "median_ratio": last["median_ms"] / first["median_ms"],
               "p99_ratio": last["p99_ms"] / first["p99_ms"]}
    verdict["stable"] = bool(verdict["rss_ratio"] <= 1.05 and verdict["median_ratio"] <= 1.25)
    return verdict


def soak_verdict_line(res: dict[str, Any]) -> str:
    """The one-line verdict of :func:`bench_soak`: last interval / first interval after the warm-up.

    >>> print(soak_verdict_line({"verdict": {"compared": [2000, 20000], "rss_ratio": 1.004, "median_ratio": 0.98,
    ...                                      "p99_ratio": 1.1, "stable": True}}))  # doctest: +ELLIPSIS
    soak verdict: STABLE: frames 20000 vs 2000 (...): memory x1.004, median latency x0.98, p99 latency x1.10 ...
    """
    v = res["verdict"]
    a, b = v["compared"]
    return (f"soak verdict: {'STABLE' if v['stable'] else 'GROWING'}: frames {b} vs {a} (first interval after "
            f"warm-up): memory x{v['rss_ratio']:.3f}, median latency x{v['median_ratio']:.2f}, "
            f"p99 latency x{v['p99_ratio']:.2f} (limits: memory <= 1.05, median <= 1.25)")
