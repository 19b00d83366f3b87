"""Per-admitted-frame cost of each engine stage at several window sizes, on synthetic descriptors.

The cost should not depend on the window W: the ratio of the median engine total at the largest W to
that at the smallest is the number to watch (target <= 1.5). Each window is measured in its steady
state: warmed up until the window has turned over and the long-term memory, whose size is its capacity
and not W, is full (or has stopped growing). A warm-up of 1.5 W alone, as before, measured W = 32 with a
memory an eighth full against W = 256 with a full one: W's effect and the memory's filling mixed.
``memory=0`` measures the window alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamad.bench.streams import SyntheticStream, descriptor_detector

STAGES = ("associate", "trim", "index", "score", "heatmap")


def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, 99th percentile and mean of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}


def bench_engine(windows: Sequence[int], *, frames: int = 24, patches: int = 784, dim: int = 152, seeds: int = 10,
                 seed: int = 0, memory: int | None = None,
                 emit: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Stage costs (ms) for each window in ``windows``, over at least ``frames`` timed frames (and at least
    two promotion periods) after a warm-up to the steady state; ``memory``: the long-term memory's
    capacity (None: the stream default; 0: none); ``emit`` hears a line per window."""
    out: dict[str, Any] = {"patches": patches, "dim": dim, "seeds": seeds, "memory_capacity": memory, "windows": {}}
    for w in windows:
        out["windows"][str(w)] = bench_window(w, frames=frames, patches=patches, dim=dim, seeds=seeds, seed=seed,
                                              memory=memory)
        r = out["windows"][str(w)]
        emit(f"  W={w}: {r['timed_frames']} frames timed after {r['warmup_frames']} ({r['warmup_s']:.0f} s; "
             f"long-term memory {r['memory']:,} patches), total median {r['total_ms']['median']:.1f} ms")
    if len(windows) >= 2:
        lo, hi = min(windows), max(windows)
        out["ratio_median_total"] = (out["windows"][str(hi)]["total_ms"]["median"]
                                     / out["windows"][str(lo)]["total_ms"]["median"])
        out["ratio_windows"] = [lo, hi]
    return out


#: The steady state's warm-up gives up on a memory that has not grown for this many admissions (or after
#: MAX_WARMUP frames): a stream whose leaving patches the memory already covers never fills it.
STALL = 16
MAX_WARMUP = 4000


def bench_window(w: int, *, frames: int, patches: int, dim: int, seeds: int, seed: int,
                 memory: int | None = None) -> dict[str, Any]:
    """One window size: warm up to the steady state (the window filled and its first seeds gone, then the
    long-term memory full or no longer growing), then time ``process_descriptors``."""
    det = descriptor_detector(w, patches, dim, seeds, seed, memory=memory)
    stream = SyntheticStream(patches, dim, seed)
    spacing = det.channels.schedule.spacing
    t0 = time.perf_counter()
    warm = 0
    for _ in range(w + w // 2):  # fill the window and let the first seeds be replaced
        det.learn_descriptors(stream.next())
        warm += 1
    capacity = det.config.memory.capacity
    size, still = _memory_size(det), 0
    while capacity and size < capacity and still < STALL and warm < MAX_WARMUP:
        det.learn_descriptors(stream.next())
        warm += 1
        grown = _memory_size(det)
        still = still + 1 if grown <= size else 0
        size = max(size, grown)
    warm_s = time.perf_counter() - t0
    n = max(frames, 2 * spacing)
    rows, pairs0, promos = [], det.channels.stats["mutual_pairs"], 0
    for _ in range(n):
        before = det.channels.schedule.last_promotion
        r = det.process_descriptors(stream.next())
        promos += det.channels.schedule.last_promotion != before
        rows.append(r.timings)
    return {
        "timed_frames": n, "warmup_frames": warm, "warmup_s": warm_s, "spacing": spacing,
        "promotions": promos, "mutual_pairs_per_frame": (det.channels.stats["mutual_pairs"] - pairs0) / n,
        "nominal": det.nominal_count, "memory": _memory_size(det), "seeds_now": len(det.channels.seeds),
        "stages_ms": {s: stats([r.get(s, 0.0) for r in rows]) for s in STAGES},
        "total_ms": stats([sum(r.get(s, 0.0) for s in STAGES) for r in rows]),
    }


def _memory_size(det: Any) -> int:
    return 0 if det.memory is None else len(det.memory)


def engine_table(res: dict[str, Any]) -> str:
    """The table of :func:`bench_engine`: median / p99 / mean ms of each stage and the total, per window."""
    lines = [f"\nengine, per admitted frame (P={res['patches']}, d={res['dim']}, D={res['seeds']}), ms "
             "median / p99 / mean:",
             f"{'W':>5} " + " ".join(f"{s:>19}" for s in STAGES + ("total",)) + f" {'nominal':>8} {'memory':>7} {'promo':>5}"]
    for w, r in res["windows"].items():
        cells = [r["stages_ms"][s] for s in STAGES] + [r["total_ms"]]
        lines.append(f"{w:>5} " + " ".join(f"{c['median']:6.1f}/{c['p99']:6.1f}/{c['mean']:5.1f}" for c in cells)
                     + f" {r['nominal']:>8} {r.get('memory', 0):>7} {r['promotions']:>5}")
    if "ratio_median_total" in res:
        lo, hi = res["ratio_windows"]
        lines.append(f"median total W={hi} / W={lo}: {res['ratio_median_total']:.2f} (target <= 1.5)")
    return "\n".join(lines)
