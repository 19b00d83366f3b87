"""Which nominal index serves a sliding window best: measured on real nominal-set changes.

The engine's channels are run over real descriptors (``(N, P, d)``, stream order) with window ``W``;
every admission's net change of the nominal set (what the index must absorb) is recorded. Each
index option then replays exactly those changes, timed per admission, and finally answers the
query descriptors, compared with exact search on the same final set: recall@1 (a hit when the
distance equals the exact one, so that exact duplicates count as hits), the 99.9th percentile and
the maximum of the score error (a frame's score is a maximum over its patches, so rare large misses
matter), and the query time per 784 queries (one frame of the default grid).

    >>> import numpy as np
    >>> from streamad.config import ChannelConfig
    >>> rng = np.random.default_rng(0)
    >>> frames = (rng.normal(size=(1, 20, 4)) + 0.05 * rng.normal(size=(12, 20, 4))).astype(np.float32)
    >>> changes = record_changes(frames, window=6, channels=ChannelConfig(seeds=2, min_span=2))
    >>> len(changes), sum(len(c.added) for c in changes) > 0
    (12, True)
    >>> row = measure_option("ivf", {"kind": "ivf", "nprobe": 4, "exact_below": 0}, changes, frames[0], 4)
    >>> row["recall_at_1"]
    1.0
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from streamad.config import ChannelConfig, IndexConfig
from streamad.core.incremental import IncrementalChannels, NominalChanges
from streamad.index import BaseIndex, ExactIndex, make_index

__all__ = ["DEFAULT_OPTIONS", "compare_options", "measure_option", "record_changes"]

# name -> IndexConfig fields: the options compared by default.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "hnsw efc200 ef256 (before)": {"kind": "hnsw", "ef_construction": 200, "ef": 256},
    "hnsw efc64 ef128": {"kind": "hnsw", "ef_construction": 64, "ef": 128},
    "ivf nprobe 8": {"kind": "ivf", "nprobe": 8},
    "ivf nprobe 16": {"kind": "ivf", "nprobe": 16},
    "ivf nprobe 32 (default)": {"kind": "ivf", "nprobe": 32},
    "ivf nprobe 48": {"kind": "ivf", "nprobe": 48},
}


def record_changes(descriptors: np.ndarray, window: int, channels: ChannelConfig | None = None) -> list[NominalChanges]:
    """The nominal set's net change after each admission of ``descriptors`` (N, P, d) through a window."""
    inc = IncrementalChannels(window, channels or ChannelConfig())
    out = []
    for i, frame in enumerate(descriptors):
        inc.push(i, np.ascontiguousarray(frame, np.float32))
        out.append(inc.drain_changes())
    return out


def _apply(index: BaseIndex, change: NominalChanges) -> None:
    index.apply(change.added, change.added_vectors, change.removed)


def measure_option(name: str, fields: dict[str, Any], changes: list[NominalChanges], queries: np.ndarray,
                   dim: int, timed_after: int = 0, frame_queries: int = 784, seed: int = 0) -> dict[str, Any]:
    """Replay ``changes`` into the index ``fields`` describe; time, then compare with exact search."""
    index = make_index(dim, replace(IndexConfig(), **fields), seed=seed)
    exact = ExactIndex(dim)
    update_ms = []
    for i, change in enumerate(changes):
        t0 = time.perf_counter()
        _apply(index, change)
        if i >= timed_after:
            update_ms.append((time.perf_counter() - t0) * 1e3)
        _apply(exact, change)
    queries = np.ascontiguousarray(queries, np.float32)
    query_ms = []
    for start in range(0, len(queries), frame_queries):
        t0 = time.perf_counter()
        index.query(queries[start:start + frame_queries])
        query_ms.append((time.perf_counter() - t0) * 1e3 * frame_queries / len(queries[start:start + frame_queries]))
    d_idx = index.query(queries)[0][:, 0].astype(np.float64)
    d_ex = exact.query(queries)[0][:, 0].astype(np.float64)
    err = d_idx - d_ex
    tol = 1e-5 * np.maximum(1.0, d_ex)
    return {"option": name, **fields, "nominal": len(exact), "update_ms_median": float(np.median(update_ms)),
            "update_ms_p99": float(np.quantile(update_ms, 0.99)), "update_ms_mean": float(np.mean(update_ms)),
            "query_ms_per_frame": float(np.median(query_ms)), "recall_at_1": float(np.mean(err <= tol)),
            "score_error_p999": float(np.quantile(err, 0.999)), "score_error_max": float(err.max()),
            "median_score": float(np.median(d_ex))}


def compare_options(descriptors: np.ndarray, queries: np.ndarray, window: int,
                    options: dict[str, dict[str, Any]] | None = None,
                    channels: ChannelConfig | None = None) -> list[dict[str, Any]]:
    """Every option of ``options`` (default :data:`DEFAULT_OPTIONS`) on the same recorded changes;
    update times are taken once the window is full (the steady state)."""
    changes = record_changes(descriptors, window, channels)
    timed_after = min(window, len(changes) - 1)
    return [measure_option(name, fields, changes, queries, descriptors.shape[2], timed_after=timed_after)
            for name, fields in (options or DEFAULT_OPTIONS).items()]


def load_descriptors(descriptors: str, queries: str | None, n_queries: int = 6272,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N, P, d) float32, query patches (m, d) float32) from .npy files: the queries a seeded sample
    of ``queries`` ((M, P, d) or (m, d); default: the last frame of ``descriptors``, then held out)."""
    from streamad.errors import UserError

    desc = np.load(descriptors, allow_pickle=False)
    if desc.ndim != 3:
        raise UserError(f"{descriptors}: expected (N, P, d) descriptors of frames in stream order, got {desc.shape}")
    if queries is None:
        q, desc = desc[-1], desc[:-1]
    else:
        q = np.load(queries, allow_pickle=False)
    q = np.asarray(q, np.float32).reshape(-1, desc.shape[2])
    rng = np.random.default_rng(seed)
    if len(q) > n_queries:
        q = q[np.sort(rng.choice(len(q), n_queries, replace=False))]
    return np.ascontiguousarray(desc, np.float32), np.ascontiguousarray(q)


def option_line(row: dict[str, Any]) -> str:
    """One printed row of :func:`compare_options`."""
    return (f"W={row['window']:<4} {row['option']:<28} nominal {row['nominal']:>7} update ms "
            f"{row['update_ms_median']:7.1f} (p99 {row['update_ms_p99']:7.1f}) query ms/frame "
            f"{row['query_ms_per_frame']:6.1f} recall@1 {row['recall_at_1']:.4f} err p99.9 "
            f"{row['score_error_p999']:.4f} max {row['score_error_max']:.3f} (median score {row['median_score']:.2f})")


def main(argv: list[str] | None = None) -> int:
    """``python -m streamad.bench.index_options TRAIN.npy QUERIES.npy --windows 64 256 [--frames N]``."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("descriptors", help=".npy of (N, P, d) descriptors in stream order")
    p.add_argument("queries", help=".npy of (m, d) query descriptors")
    p.add_argument("--windows", type=int, nargs="+", default=[64, 256])
    p.add_argument("--frames", type=int, default=0, help="use the first N frames (0: all)")
    p.add_argument("--options", nargs="*", default=None, help="names from DEFAULT_OPTIONS (default: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    desc = np.load(args.descriptors, mmap_mode="r", allow_pickle=False)
    desc = np.asarray(desc[:args.frames] if args.frames else desc)
    queries = np.load(args.queries, allow_pickle=False)
    options = {k: DEFAULT_OPTIONS[k] for k in args.options} if args.options else None
    rows = []
    for w in args.windows:
        for row in compare_options(desc, queries, w, options):
            row["window"] = w
            rows.append(row)
            print(option_line(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
