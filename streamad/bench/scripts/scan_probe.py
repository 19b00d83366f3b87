"""What the scorer's nominal search costs on the demo stream, and how much of its work the bounds skip.

A detector (the defaults, one thread) learns the first 100 frames of the demo stream, then scores the
next 100 (``score_descriptors`` on precomputed descriptors, so the backbone is not timed). Per frame:
the window's search, the long-term memory's (bounded by the window's answers) and the whole score
stage, in ms (p50 / p99); per query, for each index: the (query, list) scans of the compiled scan
(:mod:`streamad.index.ivf_scan`: the own list and the probed lists whose bisector lies within the
best distance), the vectors bounded in principal coordinates, the full distances computed after the
bounds and the distances computed by matrix product (a list with many queries). The window's answers
are checked against exact search over the same vectors.

First, how long the first search of the process takes (the scan compiled, or loaded from numba's cache).
Then the two ways to scan a list, on random data (240 vectors a list, 152 dimensions, 38 principal
coordinates), in ns per (query, vector) pair by the number of queries scanning the list at once: the
bound pass alone (no full distance after it: its least cost) and one matrix product. The scan takes
the product from the group size where it costs at most 1.3 x the bound pass alone
(``streamad.index.ivf.PRODUCT_FROM``; speed only: both give the same answers).

    python -m streamad.bench.scripts.scan_probe
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames learned, then as many scored")
    args = parser.parse_args(argv)

    import threadpoolctl
    import torch

    from streamad.bench.throughput import bench_config, demo_frames
    from streamad.index import exact_knn
    from streamad.stream.detector import StreamDetector

    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)
    print(f"first search in this process: {first_search_seconds():.2f} s (numba compiles the scan on a "
          f"machine's first run, then loads it from its cache)")
    frames = demo_frames(2 * args.frames)
    det = StreamDetector(bench_config())
    for f in frames[:args.frames]:
        det.process(f)
    det.close()
    shape = frames[0].shape[:2]
    desc = [det.extractor([f])[0] for f in frames[args.frames:]]
    window, memory = det.index, det.memory
    assert window is not None and memory is not None
    for d in desc[:5]:  # compiled and warm before it is timed
        det.score_descriptors(d, shape)
    window.work[:] = 0
    memory.index.work[:] = 0
    t_window, t_memory, t_score = [], [], []
    for d in desc:
        t0 = time.perf_counter()
        dist, _ = window.query(d, k=1)
        t_window.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        memory.query(d, within=dist[:, 0])
        t_memory.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        det.score_descriptors(d, shape)
        t_score.append((time.perf_counter() - t0) * 1e3)
    queries = 2 * len(desc) * len(desc[0])  # each index answered every frame twice (alone, then in scoring)
    exact, _ = exact_knn(window.vectors(), np.concatenate(desc[:20]), 1)
    found, _ = window.query(np.concatenate(desc[:20]), k=1)
    print(f"window {len(window):,} patches, memory {len(memory):,}; {len(desc)} frames of {len(desc[0])} queries")
    print("| search | ms p50 / p99 | lists scanned / query | vectors bounded / query | full distances after "
          "the bounds / query | distances by product / query |")
    print("|---|---|---|---|---|---|")
    for name, ms, work in (("window", t_window, window.work), ("memory (within the window's)", t_memory,
                                                                 memory.index.work)):
        scans, bounded, fulls, products = (work / queries).tolist()
        print(f"| {name} | {np.median(ms):.2f} / {np.quantile(ms, 0.99):.2f} | {scans:.2f} | {bounded:.0f} | "
              f"{fulls:.1f} | {products:.0f} |")
    print(f"| score stage (both, the heatmap and the frame score) | {np.median(t_score):.2f} / "
          f"{np.quantile(t_score, 0.99):.2f} | | | | |")
    same = np.abs(found[:, 0].astype(np.float64) - exact[:, 0]) <= 1e-5 * np.maximum(1.0, exact[:, 0])
    print(f"window answers at exact search's distance (20 frames): {same.mean():.4f}")
    print()
    print("| queries scanning a list at once | bound pass alone, ns / pair | matrix product, ns / pair |")
    print("|---|---|---|")
    for group, (bound_ns, product_ns) in scan_costs().items():
        print(f"| {group} | {bound_ns:.2f} | {product_ns:.2f} |")


def first_search_seconds(seed: int = 0) -> float:
    """Seconds the first nearest-neighbour search of a trained IVF index takes in this process: the
    compiled scan's compilation, or its loading from numba's cache."""
    from streamad.index import IVFIndex

    x = np.random.default_rng(seed).normal(size=(5000, 152)).astype(np.float32)
    idx = IVFIndex(152, exact_below=0, seed=seed)
    idx.add(np.arange(len(x)), x)
    t0 = time.perf_counter()
    idx.query(x[:200], 1)
    return time.perf_counter() - t0


def scan_costs(groups: tuple[int, ...] = (4, 8, 16, 32, 48, 64, 128, 240), lists: int = 200, size: int = 240,
               dim: int = 152, seed: int = 0) -> dict[int, tuple[float, float]]:
    """{group size: (ns a pair by the bound pass alone, by one matrix product)} on random lists that do
    not fit in the cache together, as a frame's lists do not."""
    from streamad.index.ivf import projection_dims
    from streamad.index.ivf_scan import KEEP, _scan

    rng = np.random.default_rng(seed)
    p = projection_dims(dim)
    vectors = rng.normal(size=(lists * size, dim)).astype(np.float32)
    sqnorms = np.einsum("ij,ij->i", vectors, vectors).astype(np.float32)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:p].astype(np.float32)
    proj = np.ascontiguousarray(basis @ vectors.T)
    q = rng.normal(size=(784, dim)).astype(np.float32)
    q_sq = np.einsum("ij,ij->i", q, q).astype(np.float32)
    qp = np.ascontiguousarray(q @ basis.T)
    no_full = np.zeros(len(q), np.float32)  # a bound of 0: every vector ruled out after its lower bound
    alive = np.ones(len(vectors), bool)
    out = {}
    for group in groups:
        cost = []
        for product_from in (10 ** 9, 1):
            best_d = np.full((len(q), KEEP), np.inf, np.float32)
            best_r = np.full((len(q), KEEP), -1, np.int64)
            work = np.zeros(4, np.int64)
            members = np.arange(group)
            _scan(vectors, sqnorms, proj, alive, 0, size, q, q_sq, qp, members, no_full, no_full, best_d, best_r,
                  product_from, work)
            t0 = time.perf_counter()
            for li in range(lists):
                _scan(vectors, sqnorms, proj, alive, li * size, (li + 1) * size, q, q_sq, qp, (members + li) % len(q),
                      no_full, no_full, best_d, best_r, product_from, work)
            cost.append((time.perf_counter() - t0) / (lists * group * size) * 1e9)
        out[group] = (cost[0], cost[1])
    return out


if __name__ == "__main__":
    main()
