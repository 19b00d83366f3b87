"""Recall@1 of the HNSW index against exact search, query time of both, and insertion cost, for a few
nominal set sizes.

Each index is built by streaming frames in (``patches`` vectors each), then a few frames of churn (the
oldest frame out, a new one in, as a sliding window does). The vectors are synthetic
(:class:`~streamad.bench.streams.SyntheticStream`) or real descriptors from a ``.npy`` file
(:class:`~streamad.bench.streams.RealDescriptors`, repeated with noise past its end), queried with a
synthetic frame, the held-out last frame of the file, or a sample of a second file.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamad.errors import UserError
from streamad.bench.streams import RealDescriptors, SyntheticStream

CHURN_FRAMES = 3  # frames replaced after the build (deleted slots reused)


@dataclass
class _Setup:
    """The resolved settings of one :func:`bench_hnsw` run."""

    m: int
    ef_construction: int
    ef_default: int
    query_threads: int
    insert_threads: int
    efs: list[int]
    dim: int
    patches: int
    seed: int
    descriptors: str | None = None       # real vectors: the file, and how to serve it
    hold_out: int = 0
    tile_noise: float = 0.05
    requested_patches: int | None = None
    available: int | None = None         # real vectors in the file (None: synthetic)
    queries: np.ndarray | None = None    # real queries (synthetic: a fresh frame per size)

    @property
    def real(self) -> bool:
        return self.descriptors is not None

    def stream(self) -> Any:
        """A fresh stream of frames to build an index from."""
        if self.real:
            return RealDescriptors(self.descriptors, self.requested_patches, self.seed, self.tile_noise,
                                   hold_out=self.hold_out)
        return SyntheticStream(self.patches, self.dim, self.seed)


def bench_hnsw(sizes: Sequence[int], *, patches: int = 784, dim: int = 152, seed: int = 0,
               efs: Sequence[int] | None = None, ef_construction: int | None = None, m: int | None = None,
               insert_threads: int | None = None, descriptors: str | None = None, queries: str | None = None,
               n_queries: int = 2000, tile_noise: float = 0.05,
               emit: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Recall and timings per nominal set size in ``sizes`` (rounded up to whole frames), for each query
    breadth in ``efs`` (default: 64, the configured one, 256). ``None`` settings are the configured ones
    (``IndexConfig``). ``descriptors``: real vectors from that ``.npy`` file; ``queries``: real query
    vectors (default: the held-out last frame of ``descriptors``). ``emit`` hears a line per size."""
    setup = _setup(patches, dim, seed, efs, ef_construction, m, insert_threads, descriptors, queries, n_queries,
                   tile_noise)
    out: dict[str, Any] = {"M": setup.m, "ef_construction": setup.ef_construction, "ef_default": setup.ef_default,
                           "dim": setup.dim, "patches": setup.patches, "insert_threads": setup.insert_threads,
                           "source": descriptors or "synthetic",
                           "queries_source": (queries or "held-out last frame") if setup.real else "synthetic frame",
                           "real_vectors_available": setup.available,
                           "tile_noise": tile_noise if setup.real else None, "sizes": {}}
    for size in sizes:
        n, row = bench_size(setup, size)
        out["sizes"][str(n)] = row
        best = row["ef"].get(str(setup.ef_default)) or next(iter(row["ef"].values()))
        emit(f"  {n} vectors: recall@1 {best['recall_at_1']:.3f} at ef={setup.ef_default}, exact "
             f"{row['query_ms_exact']:.0f} ms, HNSW {best['query_ms']:.0f} ms for {row['queries']} queries "
             f"(built in {row['build_s']:.0f} s)")
        gc.collect()
    return out


def _setup(patches: int, dim: int, seed: int, efs: Sequence[int] | None, ef_construction: int | None,
           m: int | None, insert_threads: int | None, descriptors: str | None, queries: str | None,
           n_queries: int, tile_noise: float) -> _Setup:
    from streamad.config import IndexConfig

    ic = IndexConfig()
    setup = _Setup(m=m or ic.M, ef_construction=ef_construction or ic.ef_construction, ef_default=ic.ef,
                   query_threads=ic.threads,
                   insert_threads=ic.insert_threads if insert_threads is None else insert_threads,
                   efs=sorted(set(efs or [64, ic.ef, 256])), dim=dim, patches=patches, seed=seed)
    if descriptors is not None:
        _use_real(setup, descriptors, queries, patches, n_queries, tile_noise)
    return setup


def _use_real(setup: _Setup, descriptors: str, queries: str | None, patches: int, n_queries: int,
              tile_noise: float) -> None:
    """Point ``setup`` at the real descriptors and draw its queries (a seeded sample of at most ``n_queries``)."""
    setup.descriptors, setup.hold_out, setup.tile_noise = descriptors, 0 if queries else 1, tile_noise
    setup.requested_patches = patches
    probe = RealDescriptors(descriptors, patches, setup.seed, tile_noise, hold_out=setup.hold_out)
    setup.dim, setup.patches, setup.available = probe.dim, probe.patches, len(probe.vectors)
    if queries:
        q = np.load(queries, mmap_mode="r", allow_pickle=False)
        pool = np.ascontiguousarray(q.reshape(-1, q.shape[-1]), dtype=np.float32)
        if pool.shape[1] != setup.dim:
            raise UserError(f"--queries have dimension {pool.shape[1]}, --descriptors {setup.dim}")
    else:
        pool = probe.held_out
    pick = np.random.default_rng(setup.seed).choice(len(pool), size=min(n_queries, len(pool)), replace=False)
    setup.queries = pool[np.sort(pick)]


def bench_size(setup: _Setup, size: int) -> tuple[int, dict[str, Any]]:
    """Build an index of about ``size`` vectors, churn it, and compare it with exact search: (its size, row)."""
    from streamad.index.hnsw import HNSWIndex

    stream = setup.stream()
    idx = HNSWIndex(setup.dim, M=setup.m, ef_construction=setup.ef_construction, ef=setup.ef_default,
                    exact_below=0, seed=setup.seed, threads=setup.query_threads,
                    insert_threads=setup.insert_threads)
    frames = max(1, -(-size // setup.patches))
    build_s = _fill(idx, stream, frames, setup.patches)
    churn_us = _churn(idx, stream, frames, setup.patches)
    queries = setup.queries if setup.real else stream.next()
    exact_ms, de, le = _exact(idx, queries)
    per_ef = {str(ef): _recall(idx, queries, ef, de, le) for ef in setup.efs}
    n_real = min(len(idx), setup.available) if setup.real else 0
    return len(idx), {"query_ms_exact": exact_ms, "queries": len(queries), "ef": per_ef, "build_s": build_s,
                      "insert_us_fresh": build_s / (frames * setup.patches) * 1e6,
                      "insert_us_reusing_slots": churn_us, "real_vectors": n_real,
                      "tiled_vectors": len(idx) - n_real if setup.real else 0,
                      "graph_elements": idx.graph_elements}


def _fill(idx: Any, stream: Any, frames: int, patches: int) -> float:
    """Add ``frames`` frames of ``stream`` to ``idx``; the seconds it took."""
    t0 = time.perf_counter()
    for f in range(frames):
        idx.add(np.arange(patches) + f * patches, stream.next())
    return time.perf_counter() - t0


def _churn(idx: Any, stream: Any, frames: int, patches: int) -> float:
    """Replace the oldest frames by new ones, :data:`CHURN_FRAMES` times; microseconds per vector."""
    t0 = time.perf_counter()
    for f in range(frames, frames + CHURN_FRAMES):
        idx.remove(np.arange(patches) + (f - frames) * patches)
        idx.add(np.arange(patches) + f * patches, stream.next())
    return (time.perf_counter() - t0) / (CHURN_FRAMES * patches) * 1e6


def _exact(idx: Any, queries: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Exact nearest neighbours of ``queries`` in ``idx``: (milliseconds, distances, labels)."""
    from streamad.index.hnsw import exact_knn

    gallery = idx.vectors()
    t0 = time.perf_counter()
    # chunks of queries small enough that a (chunk x n) distance matrix stays ~200 MB at 10^6 vectors
    de, rows = exact_knn(gallery, queries, k=1, chunk=max(16, int(5e7 // len(gallery))))
    exact_ms = (time.perf_counter() - t0) * 1e3
    return exact_ms, de, idx.labels()[rows]


def _recall(idx: Any, queries: np.ndarray, ef: int, de: np.ndarray, le: np.ndarray) -> dict[str, float]:
    """HNSW at query breadth ``ef`` against the exact distances ``de`` and labels ``le``."""
    idx.ef = ef
    t0 = time.perf_counter()
    dh, lh = idx.query(queries, k=1)
    hnsw_ms = (time.perf_counter() - t0) * 1e3
    ratio = dh[:, 0] / np.maximum(de[:, 0], 1e-12)
    return {"recall_at_1": float((lh[:, 0] == le[:, 0]).mean()),
            # a different label at the same distance (a duplicate vector) is no miss
            "recall_at_1_by_distance": float((dh[:, 0] <= de[:, 0] * (1 + 1e-5) + 1e-6).mean()),
            "distance_ratio_mean": float(ratio.mean()),
            "share_ratio_above_1.2": float((ratio > 1.2).mean()), "query_ms": hnsw_ms}


def hnsw_table(h: dict[str, Any]) -> str:
    """The table of :func:`bench_hnsw`: a row per size and query breadth."""
    lines = [f"\nHNSW (M={h['M']}, ef_construction={h['ef_construction']}, d={h['dim']}) on {h['source']} vectors, "
             f"queries: {h['queries_source']}, against exact search:",
             f"{'vectors':>9} {'ef':>4} {'recall@1':>9} {'by dist':>8} {'dist ratio':>10} {'>1.2':>6} "
             f"{'query ms':>9} {'exact ms':>9} {'insert us':>10} {'reuse us':>9}"]
    for n, r in h["sizes"].items():
        for ef, e in r["ef"].items():
            lines.append(f"{n:>9} {ef:>4} {e['recall_at_1']:>9.3f} {e['recall_at_1_by_distance']:>8.3f} "
                         f"{e['distance_ratio_mean']:>10.4f} "
                         f"{100 * e['share_ratio_above_1.2']:>5.1f}% {e['query_ms']:>9.1f} "
                         f"{r['query_ms_exact']:>9.1f} {r['insert_us_fresh']:>10.0f} "
                         f"{r['insert_us_reusing_slots']:>9.0f}")
    return "\n".join(lines)
