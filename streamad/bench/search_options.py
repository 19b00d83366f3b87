"""Less search per frame at the same answers? Ways to cut the nominal search, measured on real nominal sets.

The engine's channels run over real descriptors (``(N, P, d)``, stream order) with window ``W``; the
nominal set after the last admission is searched with the test patches of ``--frames`` seeded test
frames (784 queries each, the default grid) by:

- ``library``: the engine's IVF index (the reference) and well-kept libraries at comparable settings:
  FAISS IVFFlat, FAISS IVF with 4-bit product-quantized fast-scan codes and exact re-ranking, FAISS
  HNSW and hnswlib (one thread each, as the live scorer has one core);
- ``positional``: exact search restricted to nominal patches within Chebyshev radius ``r`` grid cells
  of the query's own position (SPADE / PNI's premise that a fixed scene puts a patch where it was);
- ``cover``: the nominal set thinned to a greedy epsilon-cover (a coreset with a score error bound of
  epsilon), epsilon a share of the median score;
- ``projection``: a shortlist of the nearest in the leading principal components, re-ranked exactly;
- ``scan``: the engine's IVF as the scorer runs it (k = 1: the compiled scan of
  :mod:`streamad.index.ivf_scan`), plain and with the exact answers as ``within`` (the memory's search,
  bounded by the window's answer), with the work it did: (query, list) scans and full distances a query.

Each row: milliseconds per frame (``library`` only: the others are about how much work is left, given
as candidates per query), recall@1 against exact search (a hit when the distance equals the exact
one) and the 99.9th percentile and maximum of the score error. docs/DESIGN.md section 4 holds the
results and what they decided.

    python -m streamad.bench.search_options out/desc/NAME.train.npy out/desc/NAME.test.npy --window 64
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamad.bench.index_options import record_changes
from streamad.config import ChannelConfig, IndexConfig, StreamConfig
from streamad.index import exact_knn, make_index

__all__ = ["nominal_set", "exact_nearest", "compare"]

Search = Callable[[np.ndarray], np.ndarray]


def nominal_set(descriptors: np.ndarray, window: int, channels: ChannelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, d), labels (n,)) of the nominal set after the last admission of ``descriptors``.

        >>> rng = np.random.default_rng(0)
        >>> frames = (rng.normal(size=(1, 20, 4)) + 0.05 * rng.normal(size=(12, 20, 4))).astype(np.float32)
        >>> v, lab = nominal_set(frames, 6, ChannelConfig(seeds=2, min_span=2))
        >>> v.shape[1], len(v) == len(lab) > 0
        (4, True)
    """
    held: dict[int, np.ndarray] = {}
    for change in record_changes(descriptors, window, channels):
        for label in change.removed.tolist():
            held.pop(int(label))
        for label, vector in zip(change.added.tolist(), change.added_vectors):
            held[int(label)] = vector
    labels = np.array(sorted(held), np.int64)
    return np.stack([held[int(k)] for k in labels]).astype(np.float32), labels


def exact_nearest(x: np.ndarray, q: np.ndarray, mask: Callable[[slice], np.ndarray] | None = None) -> np.ndarray:
    """float64 distance of each query to its nearest row of ``x`` (``mask(rows)``: allowed pairs; without one,
    the index package's exact search)."""
    if mask is None:
        return exact_knn(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(q, np.float32), 1)[0][:, 0] \
            .astype(np.float64)
    x64 = x.astype(np.float64)
    xs = (x64 * x64).sum(1)
    out = np.empty(len(q))
    for s in range(0, len(q), 784):
        rows = slice(s, s + 784)
        qq = q[rows].astype(np.float64)
        d = np.maximum((qq * qq).sum(1)[:, None] - 2.0 * qq @ x64.T + xs[None], 0.0)
        d = np.where(mask(rows), d, np.inf)
        out[rows] = np.sqrt(d.min(axis=1))
    return out


def _row(kind: str, option: str, found: np.ndarray, truth: np.ndarray, **extra: Any) -> dict[str, Any]:
    err = found.astype(np.float64) - truth
    return {"kind": kind, "option": option, "recall_at_1": float(np.mean(err <= 1e-4 * np.maximum(1.0, truth))),
            "score_error_p999": float(np.quantile(err, 0.999)), "score_error_max": float(err.max()),
            "median_score": float(np.median(truth)), **extra}


def _timed(search: Callable[[np.ndarray, slice], np.ndarray], q: np.ndarray,
           reps: int = 2) -> tuple[np.ndarray, float]:
    """``search(frame's queries, their rows of q)`` on each frame of 784 queries: the answers, and the
    median milliseconds a frame over ``reps`` passes after one warm-up frame."""
    frames = [slice(s, s + 784) for s in range(0, len(q), 784)]
    search(q[frames[0]], frames[0])
    times = []
    for _ in range(reps):
        for rows in frames:
            t0 = time.perf_counter()
            search(q[rows], rows)
            times.append((time.perf_counter() - t0) * 1e3)
    return np.concatenate([search(q[rows], rows) for rows in frames]), float(np.median(times))


def library_searches(x: np.ndarray) -> dict[str, Search]:
    """The engine's IVF and the FAISS / hnswlib options compared with it (one thread each)."""
    import faiss
    import hnswlib

    faiss.omp_set_num_threads(1)
    n, d = x.shape
    out: dict[str, Search] = {}
    eng = make_index(d, IndexConfig(kind="ivf"), seed=0)
    eng.apply(np.arange(n), x, np.zeros(0, np.int64))
    out["streamad IVF nprobe 32 (default)"] = lambda q: eng.query(q, k=1)[0][:, 0]
    nlist = int(round(np.sqrt(n)))
    flat = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    flat.train(x)
    flat.add(x)

    def ivf(nprobe: int) -> Search:
        def run(q: np.ndarray) -> np.ndarray:
            flat.nprobe = nprobe
            return np.sqrt(flat.search(q, 1)[0][:, 0])
        return run
    for nprobe in (16, 32):
        out[f"faiss IVFFlat nlist {nlist} nprobe {nprobe}"] = ivf(nprobe)
    base = faiss.IndexIVFPQFastScan(faiss.IndexFlatL2(d), d, nlist, d // 4, 4)
    refine = faiss.IndexRefineFlat(base)
    refine.train(x)
    refine.add(x)
    base.nprobe = 32

    def fast_scan(k_factor: int) -> Search:
        def run(q: np.ndarray) -> np.ndarray:
            refine.k_factor = k_factor
            return np.sqrt(np.maximum(refine.search(q, 1)[0][:, 0], 0.0))
        return run
    for k_factor in (8, 64):
        out[f"faiss IVF-PQ 4-bit fast-scan nprobe 32, exact re-rank of {k_factor}"] = fast_scan(k_factor)
    graph = faiss.IndexHNSWFlat(d, 32)
    graph.hnsw.efConstruction = 80
    graph.add(x)

    def hnsw(ef: int) -> Search:
        def run(q: np.ndarray) -> np.ndarray:
            graph.hnsw.efSearch = ef
            return np.sqrt(graph.search(q, 1)[0][:, 0])
        return run
    lib = hnswlib.Index(space="l2", dim=d)
    lib.init_index(max_elements=n, M=16, ef_construction=200, random_seed=0)
    lib.set_num_threads(1)
    lib.add_items(x)

    def hnswlib_ef(ef: int) -> Search:
        def run(q: np.ndarray) -> np.ndarray:
            lib.set_ef(ef)
            return np.sqrt(lib.knn_query(q, k=1)[1][:, 0])
        return run
    for ef in (32, 64):
        out[f"faiss HNSW M 32 ef {ef}"] = hnsw(ef)
        out[f"hnswlib M 16 ef {ef}"] = hnswlib_ef(ef)
    return out


def greedy_cover(x: np.ndarray, epsilon: float, block: int = 4096) -> np.ndarray:
    """Row indices of a greedy ``epsilon``-cover of ``x`` (every row within ``epsilon`` of a chosen one).

        >>> greedy_cover(np.array([[0.0], [0.1], [3.0]]), 0.5).tolist()
        [0, 2]
    """
    x = np.asarray(x, np.float64)
    chosen: list[int] = []
    reps = np.zeros((0, x.shape[1]))
    for s in range(0, len(x), block):
        part = x[s:s + block]
        covered = np.zeros(len(part), bool)
        if len(reps):
            d = exact_nearest(reps, part)
            covered = d <= epsilon
        new: list[int] = []
        for i in np.flatnonzero(~covered).tolist():  # greedy within the block, in order
            if new and np.sqrt(((part[new] - part[i]) ** 2).sum(1)).min() <= epsilon:
                continue
            new.append(i)
        chosen.extend(s + i for i in new)
        reps = np.concatenate([reps, part[new]])
    return np.array(chosen, np.int64)


def compare(x: np.ndarray, labels: np.ndarray, q: np.ndarray, q_positions: np.ndarray, grid: tuple[int, int],
            kinds: tuple[str, ...] = ("library", "positional", "cover", "projection", "scan")) -> list[dict[str, Any]]:
    """Every option of ``kinds`` on one nominal set ``x`` (``labels``: frame * P + patch) and queries ``q``."""
    truth = exact_nearest(x, q)
    rows: list[dict[str, Any]] = []
    n_patches = grid[0] * grid[1]
    if "library" in kinds:
        for option, search in library_searches(x).items():
            found, ms = _timed(lambda part, _rows, search=search: search(part), q)
            rows.append(_row("library", option, found, truth, ms_per_frame=ms))
    if "scan" in kinds:
        eng = make_index(x.shape[1], IndexConfig(kind="ivf"), seed=0)
        eng.apply(np.arange(len(x)), x, np.zeros(0, np.int64))
        for option, bound in (("plain", None), ("within = exact (a bound, as the memory gets)", truth)):
            def search(part: np.ndarray, rows: slice, bound: np.ndarray | None = bound) -> np.ndarray:
                return eng.query(part, k=1, within=None if bound is None else bound[rows])[0][:, 0]
            found, ms = _timed(search, q)
            eng.work[:] = 0
            search(q, slice(0, len(q)))
            scans, bounded, fulls, products = (eng.work / len(q)).tolist()
            rows.append(_row("scan", f"IVF nprobe 32, compiled scan, {option}: {scans:.2f} lists, "
                             f"{bounded:.0f} vectors bounded and {fulls:.1f} full distances after the bounds, "
                             f"{products:.0f} by product, a query", found, truth, ms_per_frame=ms,
                             candidates=int(round(fulls + products))))
    if "positional" in kinds:
        pos = labels % n_patches
        py, px = pos // grid[1], pos % grid[1]
        qy, qx = q_positions // grid[1], q_positions % grid[1]
        for r in (1, 2, 3, 5):
            def near(rows: slice, r: int = r) -> np.ndarray:
                return np.maximum(np.abs(qy[rows, None] - py[None]), np.abs(qx[rows, None] - px[None])) <= r
            rows.append(_row("positional", f"radius {r}", exact_nearest(x, q, near), truth,
                             candidates=int(round((2 * r + 1) ** 2 * len(x) / n_patches))))
    if "cover" in kinds:
        for share in (0.25, 0.5):
            keep = greedy_cover(x, share * float(np.median(truth)))
            rows.append(_row("cover", f"epsilon {share} x median score", exact_nearest(x[keep], q), truth,
                             candidates=len(keep)))
    if "projection" in kinds:
        x64 = x.astype(np.float64)
        mean = x64.mean(0)
        _, vecs = np.linalg.eigh(np.cov((x64 - mean).T))
        for dims in (32, 52, 76):
            basis = vecs[:, ::-1][:, :dims]
            xr, qr = (x64 - mean) @ basis, (q.astype(np.float64) - mean) @ basis
            xs = (xr * xr).sum(1)
            for shortlist in (8, 32):
                found = np.empty(len(q))
                for s in range(0, len(q), 784):
                    d = xs[None] - 2.0 * qr[s:s + 784] @ xr.T
                    cand = np.argpartition(d, shortlist - 1, axis=1)[:, :shortlist]
                    diff = x64[cand] - q[s:s + 784, None, :].astype(np.float64)
                    found[s:s + 784] = np.sqrt((diff * diff).sum(2).min(1))
                rows.append(_row("projection", f"{dims} components, exact re-rank of {shortlist}", found, truth,
                                 candidates=len(x), dims=dims))
    return rows


def main(argv: list[str] | None = None) -> int:
    import json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("train", help=".npy of (N, P, d) training descriptors in stream order (streamad eval --cache)")
    p.add_argument("test", help=".npy of (M, P, d) test descriptors: the queries")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--frames", type=int, default=8, help="seeded test frames queried (784 patches each)")
    p.add_argument("--grid", default="28,28")
    p.add_argument("--kinds", default="library,positional,cover,projection,scan")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    grid = tuple(int(v) for v in args.grid.split(","))
    train = np.load(args.train, mmap_mode="r", allow_pickle=False)
    test = np.load(args.test, mmap_mode="r", allow_pickle=False)
    n = min(len(train), args.window + 40)  # full window, then 40 admissions of turnover
    x, labels = nominal_set(np.asarray(train[:n]), args.window, StreamConfig().channels)
    pick = np.sort(np.random.default_rng(0).choice(len(test), min(args.frames, len(test)), replace=False))
    q = np.asarray(test[pick], np.float32).reshape(-1, x.shape[1])
    q_pos = np.tile(np.arange(test.shape[1]), len(pick))
    print(f"nominal set W={args.window}: {len(x):,} patches; {len(q):,} queries", flush=True)
    rows = compare(x, labels, q, q_pos, grid, tuple(args.kinds.split(",")))
    print("| kind | option | ms / frame | candidates / query | recall@1 | score error p99.9 | max |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ms = f"{r['ms_per_frame']:.1f}" if "ms_per_frame" in r else "-"
        cand = f"{r['candidates']:,}" if "candidates" in r else "-"
        print(f"| {r['kind']} | {r['option']} | {ms} | {cand} | {r['recall_at_1']:.4f} | "
              f"{r['score_error_p999']:.3f} | {r['score_error_max']:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"window": args.window, "nominal": len(x), "queries": len(q), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
