"""The thread budget: how many threads torch, BLAS and the HNSW index may use in this process.

On a camera box the cores are shared: the scorer runs the backbone (torch's OpenMP pool), the
background learner runs association and trimming (numpy's BLAS pool), and other processes run too.
Pools that each take every core spin against each other: two jobs on 2 cores cut torch's throughput
tenfold. :func:`resolve_threads` turns a :class:`~streamad.config.ThreadConfig` (0 = automatic) into
numbers, :func:`set_threads` sets them process-wide (torch, and BLAS through threadpoolctl) and
returns what is now in force, which ``streamad watch --stats`` and ``streamad bench`` print
(:func:`streamad.stream.threads.apply_threads` does both, and sets the association's threads).

Automatic choices, for ``n`` usable cores: BLAS ``1`` always; torch ``n`` without background
learning, ``n - 1`` (at least 1) with it; association ``n`` threads without background learning (each
pair of frames on one BLAS thread: the cores share a frame's pairs with its seeds, and no BLAS pool is
left spinning), 1 with it (the learner keeps to its core). BLAS keeps to one thread even when one thing runs at a
time because OpenBLAS's threads keep spinning after a call and starve torch's OpenMP pool on the next
frame: measured on 2 cores (``streamad bench --modes sync``), the backbone stage took 89.9 ms per
frame with BLAS 2 and 21.4 ms with BLAS 1 (synchronous 4.6 -> 6.8 fps). With background learning torch
gets ``n - 1`` so that the scorer's pool never waits on a core the learner holds: torch with 2 threads
beside a busy learner took 568 ms per frame instead of 51.
(HNSW query threads: ``IndexConfig.threads``.)

    >>> from streamad.config import ThreadConfig
    >>> resolve_threads(ThreadConfig(), background=True, cores=2)
    {'torch': 1, 'blas': 1, 'associate': 1}
    >>> resolve_threads(ThreadConfig(), background=False, cores=2)
    {'torch': 2, 'blas': 1, 'associate': 2}
    >>> resolve_threads(ThreadConfig(blas=2), background=True, cores=2)["blas"]
    2
"""

from __future__ import annotations

import os

from streamad.config import ThreadConfig

__all__ = ["current_threads", "resolve_threads", "set_threads", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(config: ThreadConfig, background: bool, cores: int | None = None) -> dict[str, int]:
    """The thread counts ``config`` asks for, its zeros replaced by the automatic choice."""
    n = cores or usable_cores()
    auto = ({"torch": max(1, n - 1), "blas": 1, "associate": 1} if background
            else {"torch": n, "blas": 1, "associate": n})
    return {name: getattr(config, name) or auto[name] for name in ("torch", "blas", "associate")}


def set_threads(want: dict[str, int]) -> dict[str, int]:
    """Set torch's and BLAS's thread counts to ``want["torch"]`` and ``want["blas"]`` (counts already
    resolved); returns :func:`current_threads`."""
    import torch

    torch.set_num_threads(want["torch"])
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=want["blas"], user_api="blas")  # in force until changed again
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency; without it BLAS keeps its own
        pass
    return current_threads()


def current_threads() -> dict[str, int]:
    """The thread counts in force: torch intra-op threads, and BLAS threads (the largest pool)."""
    import torch

    out = {"torch": int(torch.get_num_threads())}
    try:
        from threadpoolctl import threadpool_info

        blas = [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]
        out["blas"] = max(blas) if blas else 0
    except ImportError:  # pragma: no cover
        out["blas"] = 0
    return out
