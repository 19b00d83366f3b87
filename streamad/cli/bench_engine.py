"""Measure the streaming engine on synthetic patch descriptors (no backbone, no data needed).

Modes:
  engine  per-admitted-frame cost of each stage (associate, trim, index update, score = index query,
          heatmap) at several window sizes W, median / p99 / mean over the timed frames (the mean
          includes seed promotions, amortised), and the ratio median(largest W) / median(smallest W)
          of the engine total (target <= 1.3: the cost should not depend on W)
  memory  resident memory after a short and a long stream (target: within 5%); uses a smaller grid
          and dimension by default (P=100, d=64: 10,000 frames in about 3 minutes on 2 cores)
  hnsw    recall@1 of the HNSW index against exact search, and query time of both, for a few
          nominal set sizes (built by streaming frames in, then a few frames of churn); with
          --descriptors on REAL descriptors from a .npy file (e.g. the training descriptors
          `streamad eval --stream --cache out/desc` saves) and --queries for real query descriptors
  soak    a long run (default 20,000 frames, 10x10 grid, 64-d, W=64, one index thread) on a stream
          whose normal patches wander slowly (channels keep changing); every --report-every frames it
          prints the frames so far, resident memory and the median / p99 per-frame latency of that
          interval, and at the end a verdict: last interval against the first after warm-up

Synthetic frames (engine, memory, and hnsw without --descriptors): P fixed patch "places" (normal descriptors) plus per-frame noise, a slow drift and,
now and then, a defect (a few patches moved far away). Every number comes from the real engine
(StreamDetector.process_descriptors) or the real index.

examples:
  streamad bench-engine
  streamad bench-engine --mode hnsw --hnsw-sizes 10000 100000 --json hnsw.json
  streamad bench-engine --mode memory --memory-frames 2000 10000
  streamad bench-engine --mode soak --frames 20000 --report-every 1000 --json soak.json
  streamad bench-engine --mode hnsw --descriptors out/desc/bottle-<key>.train.npy \
      --queries out/desc/bottle-<key>.test.npy --hnsw-sizes 10000 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import time
from typing import Any

import numpy as np

NAME = "bench-engine"
HELP = "measure the streaming engine's per-frame cost, memory and HNSW recall on synthetic descriptors"

STAGES = ("associate", "trim", "index", "score", "heatmap")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("engine", "memory", "hnsw", "soak", "all"), default="engine",
                   help="what to measure (default: engine; 'all' is engine, memory and hnsw, not soak)")
    p.add_argument("--patches", type=int, default=784, metavar="P", help="patches per frame (default 784 = 28x28)")
    p.add_argument("--dim", type=int, default=152, metavar="D", help="descriptor dimension (default 152)")
    p.add_argument("--seeds", type=int, default=10, help="seed frames (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    g = p.add_argument_group("engine mode")
    g.add_argument("--windows", type=int, nargs="+", default=[32, 64, 128, 256], metavar="W",
                   help="window sizes (default 32 64 128 256)")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="engine: timed frames per window, at least two promotion periods (default 24); "
                   "soak: frames in all (default 20000)")
    g = p.add_argument_group("memory mode")
    g.add_argument("--memory-frames", type=int, nargs=2, default=[2000, 10000], metavar=("N1", "N2"),
                   help="read resident memory after N1 and N2 frames (default 2000 10000)")
    g.add_argument("--memory-patches", type=int, default=100, metavar="P", help="patches per frame (default 100)")
    g.add_argument("--memory-dim", type=int, default=64, metavar="D", help="descriptor dimension (default 64)")
    g.add_argument("--memory-window", type=int, default=64, metavar="W", help="window (default 64)")
    g = p.add_argument_group("soak mode")
    g.add_argument("--report-every", type=int, default=1000, metavar="N",
                   help="soak: a row every N frames; the first row is the warm-up (default 1000)")
    g.add_argument("--soak-patches", type=int, default=100, metavar="P",
                   help="soak: patches per frame (default 100 = 10x10; 196 = 14x14 takes about 2.5 times longer)")
    g.add_argument("--soak-dim", type=int, default=64, metavar="D", help="soak: descriptor dimension (default 64)")
    g.add_argument("--soak-window", type=int, default=64, metavar="W", help="soak: window (default 64)")
    g = p.add_argument_group("hnsw mode")
    g.add_argument("--hnsw-sizes", type=int, nargs="+", default=[10_000, 100_000], metavar="N",
                   help="nominal set sizes (default 10000 100000; 1000000 takes minutes)")
    g.add_argument("--hnsw-ef", type=int, nargs="+", default=None, metavar="EF",
                   help="query breadths to measure (default: 64, the configured one, 256)")
    g.add_argument("--hnsw-ef-construction", type=int, default=None, metavar="EFC",
                   help="graph construction breadth (default: the configured one)")
    g.add_argument("--hnsw-m", type=int, default=None, metavar="M", help="graph degree (default: the configured one)")
    g.add_argument("--descriptors", metavar="NPY", default=None,
                   help="real descriptors, (N, P, d) or (n, d), fed to the index in file order, P rows per "
                   "frame; sizes beyond the file repeat it with Gaussian noise (--tile-noise) and are reported "
                   "as tiled")
    g.add_argument("--queries", metavar="NPY", default=None,
                   help="real query descriptors, (M, P, d) or (m, d) (default: the last frame of --descriptors, "
                   "held out of the index)")
    g.add_argument("--hnsw-queries", type=int, default=2000, metavar="Q",
                   help="queries per size, a seeded sample of --queries (default 2000)")
    g.add_argument("--tile-noise", type=float, default=0.05, metavar="S",
                   help="noise of the repeated copies, in units of each dimension's standard deviation "
                   "(default 0.05)")
    g.add_argument("--insert-threads", type=int, default=None, metavar="T",
                   help="hnsw mode: threads for graph insertion (default: the configured one; 0 = all cores)")


class SyntheticStream:
    """Frames of ``patches`` descriptors: fixed places + noise + slow drift, a defect in 5% of frames."""

    def __init__(self, patches: int, dim: int, seed: int = 0, noise: float = 0.3) -> None:
        self.rng = np.random.default_rng(seed)
        self.places = self.rng.normal(size=(patches, dim)).astype(np.float32)
        self.direction = self.rng.normal(size=(patches, dim)).astype(np.float32)
        self.noise = noise
        self.t = 0

    def next(self) -> np.ndarray:
        drift = 0.2 * math.sin(self.t / 300.0)
        x = self.places + drift * self.direction
        x = x + self.noise * self.rng.standard_normal(x.shape, dtype=np.float32)
        if self.rng.random() < 0.05:
            hit = self.rng.choice(len(x), size=max(1, len(x) // 40), replace=False)
            x[hit] += 3.0 * self.rng.standard_normal((len(hit), x.shape[1]), dtype=np.float32)
        self.t += 1
        return x.astype(np.float32)


class WanderingStream(SyntheticStream):
    """``SyntheticStream`` whose normal places wander: each place follows an Ornstein-Uhlenbeck walk
    (mean-reverting, ``spread`` standard deviation around its start, correlation time ``tau`` frames),
    so the nominal patches keep changing for ever while the distances stay on one scale.

    >>> s = WanderingStream(4, 3, seed=1)
    >>> a, b = s.next(), s.next()
    >>> a.shape, a.dtype, bool((a != b).any())
    ((4, 3), dtype('float32'), True)
    """

    def __init__(self, patches: int, dim: int, seed: int = 0, noise: float = 0.3, tau: float = 2000.0,
                 spread: float = 0.5) -> None:
        super().__init__(patches, dim, seed, noise)
        self.home = self.places.copy()
        self.offset = np.zeros_like(self.places)
        self.theta = 1.0 / tau
        self.sigma = np.float32(spread * math.sqrt(2.0 * self.theta))

    def next(self) -> np.ndarray:
        self.offset *= np.float32(1.0 - self.theta)
        self.offset += self.sigma * self.rng.standard_normal(self.offset.shape, dtype=np.float32)
        self.places = self.home + self.offset
        return super().next()


class RealDescriptors:
    """Real descriptors served ``patches`` rows at a time, in file order; past the end, the file again
    with Gaussian noise (``noise`` x each dimension's standard deviation) on every repetition."""

    def __init__(self, path: str, patches: int | None = None, seed: int = 0, noise: float = 0.05,
                 hold_out: int = 0) -> None:
        from streamad.errors import UserError

        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read descriptors {path}: {exc}") from None
        if x.ndim not in (2, 3) or x.dtype.kind != "f":
            raise UserError(f"{path}: expected float descriptors of shape (N, P, d) or (n, d), got {x.shape} {x.dtype}")
        self.patches = int(x.shape[1]) if x.ndim == 3 else int(patches or 784)
        flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
        if hold_out:
            self.held_out = flat[-hold_out * self.patches:]
            flat = flat[:-hold_out * self.patches]
        self.vectors = flat
        self.dim = int(flat.shape[1])
        self.sd = flat.std(axis=0).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.noise = float(noise)
        self.pos = 0

    def next(self) -> np.ndarray:
        n = len(self.vectors)
        idx = (self.pos + np.arange(self.patches)) % n
        out = self.vectors[idx]
        rep = (self.pos + np.arange(self.patches)) // n
        if rep.max() > 0:
            out = out + (rep > 0)[:, None] * self.noise * self.sd * self.rng.standard_normal(out.shape, dtype=np.float32)
        self.pos += self.patches
        return np.ascontiguousarray(out, dtype=np.float32)


def _stand_in(patches: int) -> Any:
    """The detector only needs the grid and input size on the descriptor path: a square grid if it can."""
    from streamad.testing.standin import PrecomputedDescriptors

    side = int(math.isqrt(patches))
    return PrecomputedDescriptors((side, side) if side * side == patches else (1, patches), (224, 224))


def rss_mib() -> float:
    """Resident set size of this process in MiB (from /proc/self/statm; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}


def _detector(window: int, patches: int, dim: int, seeds: int, seed: int) -> Any:
    from streamad.config import ChannelConfig, FeatureConfig, StreamConfig
    from streamad.stream.detector import StreamDetector

    ex = _stand_in(patches)
    cfg = StreamConfig(window=window, channels=ChannelConfig(seeds=seeds),
                       features=FeatureConfig(grid=ex.grid, dim=dim), seed=seed)
    return StreamDetector(cfg, extractor=ex)


def bench_engine(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"patches": args.patches, "dim": args.dim, "seeds": args.seeds, "windows": {}}
    for w in args.windows:
        det = _detector(w, args.patches, args.dim, args.seeds, args.seed)
        stream = SyntheticStream(args.patches, args.dim, args.seed)
        spacing = det.channels.schedule.spacing
        warm = w + w // 2  # fill the window and let the first seeds be replaced
        t0 = time.perf_counter()
        for _ in range(warm):
            det.learn_descriptors(stream.next())
        warm_s = time.perf_counter() - t0
        n = max(args.frames, 2 * spacing)
        rows, pairs0, promos = [], det.channels.stats["mutual_pairs"], 0
        for _ in range(n):
            before = det.channels.schedule.last_promotion
            r = det.process_descriptors(stream.next())
            promos += det.channels.schedule.last_promotion != before
            rows.append(r.timings)
        per_stage = {s: _stats([r.get(s, 0.0) for r in rows]) for s in STAGES}
        total = _stats([sum(r.get(s, 0.0) for s in STAGES) for r in rows])
        out["windows"][str(w)] = {
            "timed_frames": n, "warmup_frames": warm, "warmup_s": warm_s, "spacing": spacing,
            "promotions": promos, "mutual_pairs_per_frame": (det.channels.stats["mutual_pairs"] - pairs0) / n,
            "nominal": det.nominal_count, "seeds_now": len(det.channels.seeds),
            "stages_ms": per_stage, "total_ms": total,
        }
        print(f"  W={w}: {n} frames timed after {warm} ({warm_s:.0f} s), total median "
              f"{total['median']:.1f} ms", flush=True)
    ws = [str(w) for w in args.windows]
    if len(ws) >= 2:
        lo, hi = min(args.windows), max(args.windows)
        out["ratio_median_total"] = (out["windows"][str(hi)]["total_ms"]["median"]
                                     / out["windows"][str(lo)]["total_ms"]["median"])
        out["ratio_windows"] = [lo, hi]
    return out


def print_engine(res: dict[str, Any]) -> None:
    print(f"\nengine, per admitted frame (P={res['patches']}, d={res['dim']}, D={res['seeds']}), ms "
          "median / p99 / mean:")
    head = f"{'W':>5} " + " ".join(f"{s:>19}" for s in STAGES + ("total",)) + f" {'nominal':>8} {'promo':>5}"
    print(head)
    for w, r in res["windows"].items():
        cells = [r["stages_ms"][s] for s in STAGES] + [r["total_ms"]]
        print(f"{w:>5} " + " ".join(f"{c['median']:6.1f}/{c['p99']:6.1f}/{c['mean']:5.1f}" for c in cells)
              + f" {r['nominal']:>8} {r['promotions']:>5}")
    if "ratio_median_total" in res:
        lo, hi = res["ratio_windows"]
        print(f"median total W={hi} / W={lo}: {res['ratio_median_total']:.2f} (target <= 1.3)")


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    n1, n2 = sorted(args.memory_frames)
    det = _detector(args.memory_window, args.memory_patches, args.memory_dim, args.seeds, args.seed)
    stream = SyntheticStream(args.memory_patches, args.memory_dim, args.seed)
    readings: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(1, n2 + 1):
        det.process_descriptors(stream.next(), frame_shape=(64, 64))
        if i in (n1, n2):
            gc.collect()
            readings[str(i)] = rss_mib()
            print(f"  after {i} frames: {readings[str(i)]:.1f} MiB resident ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    growth = readings[str(n2)] / readings[str(n1)] - 1.0
    return {"patches": args.memory_patches, "dim": args.memory_dim, "window": args.memory_window,
            "seeds": args.seeds, "rss_mib": readings, "growth": growth, "seconds": time.perf_counter() - t0,
            "nominal": det.nominal_count}


def _soak_row(frames: int, latencies: list[float], rss: float, nominal: int, seconds: float) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1e3
    return {"frames": frames, "rss_mib": rss, "median_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "nominal": nominal, "seconds": seconds}


def bench_soak(args: argparse.Namespace, emit: Any = print) -> dict[str, Any]:
    """Run the engine for ``args.frames`` frames of a :class:`WanderingStream`; a row of frames, resident
    memory (MiB), median and p99 latency (ms, of ``process_descriptors``: score + admit) per interval."""
    from streamad.config import ChannelConfig, FeatureConfig, IndexConfig, StreamConfig
    from streamad.stream.detector import StreamDetector

    total, every = args.frames, args.report_every
    ex = _stand_in(args.soak_patches)
    cfg = StreamConfig(window=args.soak_window, channels=ChannelConfig(seeds=args.seeds),
                       features=FeatureConfig(grid=ex.grid, dim=args.soak_dim),
                       index=IndexConfig(threads=1, insert_threads=1), seed=args.seed)
    det = StreamDetector(cfg, extractor=ex)
    stream = WanderingStream(args.soak_patches, args.soak_dim, args.seed)
    shape = (64, 64)
    rows: list[dict[str, Any]] = []
    lat: list[float] = []
    clock = time.perf_counter
    start = clock()
    emit(f"{'frames':>8} {'RSS MiB':>8} {'median ms':>10} {'p99 ms':>8} {'nominal':>8} {'elapsed s':>9}")
    for i in range(1, total + 1):
        x = stream.next()
        t0 = clock()
        det.process_descriptors(x, frame_shape=shape)
        lat.append(clock() - t0)
        if i % every == 0:
            gc.collect()  # outside the timed calls: the reading is of live memory, not of pending garbage
            row = _soak_row(i, lat, rss_mib(), det.nominal_count, clock() - start)
            rows.append(row)
            lat = []
            emit(f"{row['frames']:>8} {row['rss_mib']:>8.1f} {row['median_ms']:>10.2f} {row['p99_ms']:>8.2f} "
                 f"{row['nominal']:>8} {row['seconds']:>9.0f}")
    first, last = rows[1], rows[-1]  # rows[0] is the warm-up (the window fills, the first seeds go)
    verdict = {"compared": [first["frames"], last["frames"]],
               "rss_ratio": last["rss_mib"] / first["rss_mib"],
               "median_ratio": last["median_ms"] / first["median_ms"],
               "p99_ratio": last["p99_ms"] / first["p99_ms"]}
    verdict["stable"] = bool(verdict["rss_ratio"] <= 1.05 and verdict["median_ratio"] <= 1.25)
    return {"patches": args.soak_patches, "grid": list(ex.grid), "dim": args.soak_dim, "window": args.soak_window,
            "seeds": args.seeds, "frames": total, "report_every": every, "index_threads": 1,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows, "verdict": verdict,
            "seconds": clock() - start}


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


def bench_hnsw(args: argparse.Namespace) -> dict[str, Any]:
    from streamad.config import IndexConfig
    from streamad.errors import UserError
    from streamad.index.hnsw import NominalIndex, exact_knn

    ic = IndexConfig()
    efc = args.hnsw_ef_construction or ic.ef_construction
    m = args.hnsw_m or ic.M
    threads = ic.insert_threads if args.insert_threads is None else args.insert_threads
    efs = sorted(set(args.hnsw_ef or [64, ic.ef, 256]))
    real = args.descriptors is not None
    if real:
        probe = RealDescriptors(args.descriptors, args.patches, args.seed, args.tile_noise,
                                hold_out=0 if args.queries else 1)
        dim, patches, available = probe.dim, probe.patches, len(probe.vectors)
        if args.queries:
            q = np.load(args.queries, mmap_mode="r", allow_pickle=False)
            pool = np.ascontiguousarray(q.reshape(-1, q.shape[-1]), dtype=np.float32)
            if pool.shape[1] != dim:
                raise UserError(f"--queries have dimension {pool.shape[1]}, --descriptors {dim}")
        else:
            pool = probe.held_out
        pick = np.random.default_rng(args.seed).choice(len(pool), size=min(args.hnsw_queries, len(pool)), replace=False)
        queries = pool[np.sort(pick)]
        del probe
    else:
        dim, patches, available = args.dim, args.patches, None
    out: dict[str, Any] = {"M": m, "ef_construction": efc, "ef_default": ic.ef, "dim": dim, "patches": patches,
                           "insert_threads": threads, "source": args.descriptors or "synthetic",
                           "queries_source": (args.queries or "held-out last frame") if real else "synthetic frame",
                           "real_vectors_available": available, "tile_noise": args.tile_noise if real else None,
                           "sizes": {}}
    for size in args.hnsw_sizes:
        stream: Any = (RealDescriptors(args.descriptors, args.patches, args.seed, args.tile_noise,
                                       hold_out=0 if args.queries else 1)
                       if real else SyntheticStream(args.patches, args.dim, args.seed))
        idx = NominalIndex(dim, M=m, ef_construction=efc, ef=ic.ef, exact_below=0,
                           seed=args.seed, threads=ic.threads, insert_threads=threads)
        frames = max(1, -(-size // patches))
        t0 = time.perf_counter()
        for f in range(frames):
            idx.add(np.arange(patches) + f * patches, stream.next())
        build_s = time.perf_counter() - t0
        build_us = build_s / (frames * patches) * 1e6
        churn = 3  # a sliding window: the oldest frame out, a new one in (deleted slots reused)
        t0 = time.perf_counter()
        for f in range(frames, frames + churn):
            idx.remove(np.arange(patches) + (f - frames) * patches)
            idx.add(np.arange(patches) + f * patches, stream.next())
        churn_us = (time.perf_counter() - t0) / (churn * patches) * 1e6
        if not real:
            queries = stream.next()
        gallery = idx.vectors()
        t0 = time.perf_counter()
        # chunks of queries small enough that a (chunk x n) distance matrix stays ~200 MB at 10^6 vectors
        de, rows = exact_knn(gallery, queries, k=1, chunk=max(16, int(5e7 // len(gallery))))
        exact_ms = (time.perf_counter() - t0) * 1e3
        le = idx.labels()[rows]
        per_ef = {}
        for ef in efs:
            idx.ef = ef
            t0 = time.perf_counter()
            dh, lh = idx.query(queries, k=1)
            hnsw_ms = (time.perf_counter() - t0) * 1e3
            ratio = dh[:, 0] / np.maximum(de[:, 0], 1e-12)
            per_ef[str(ef)] = {"recall_at_1": float((lh[:, 0] == le[:, 0]).mean()),
                               # a different label at the same distance (a duplicate vector) is no miss
                               "recall_at_1_by_distance": float((dh[:, 0] <= de[:, 0] * (1 + 1e-5) + 1e-6).mean()),
                               "distance_ratio_mean": float(ratio.mean()),
                               "share_ratio_above_1.2": float((ratio > 1.2).mean()), "query_ms": hnsw_ms}
        n_real = min(len(idx), available) if real else 0
        out["sizes"][str(len(idx))] = {"query_ms_exact": exact_ms, "queries": len(queries), "ef": per_ef,
                                       "build_s": build_s, "insert_us_fresh": build_us,
                                       "insert_us_reusing_slots": churn_us,
                                       "real_vectors": n_real, "tiled_vectors": len(idx) - n_real if real else 0,
                                       "graph_elements": idx.graph_elements}
        best = per_ef[str(ic.ef)] if str(ic.ef) in per_ef else next(iter(per_ef.values()))
        print(f"  {len(idx)} vectors: recall@1 {best['recall_at_1']:.3f} at ef={ic.ef}, exact {exact_ms:.0f} ms, "
              f"HNSW {best['query_ms']:.0f} ms for {len(queries)} queries (built in {build_s:.0f} s)", flush=True)
        del idx, gallery, stream
        gc.collect()
    return out


def print_hnsw(h: dict[str, Any]) -> None:
    print(f"\nHNSW (M={h['M']}, ef_construction={h['ef_construction']}, d={h['dim']}) on {h['source']} vectors, "
          f"queries: {h['queries_source']}, against exact search:")
    print(f"{'vectors':>9} {'ef':>4} {'recall@1':>9} {'by dist':>8} {'dist ratio':>10} {'>1.2':>6} {'query ms':>9} "
          f"{'exact ms':>9} {'insert us':>10} {'reuse us':>9}")
    for n, r in h["sizes"].items():
        for ef, e in r["ef"].items():
            print(f"{n:>9} {ef:>4} {e['recall_at_1']:>9.3f} {e['recall_at_1_by_distance']:>8.3f} "
                  f"{e['distance_ratio_mean']:>10.4f} "
                  f"{100 * e['share_ratio_above_1.2']:>5.1f}% {e['query_ms']:>9.1f} {r['query_ms_exact']:>9.1f} "
                  f"{r['insert_us_fresh']:>10.0f} {r['insert_us_reusing_slots']:>9.0f}")


def run(args: argparse.Namespace) -> int:
    from streamad.errors import UserError

    if args.patches < 4 or args.dim < 1 or args.seeds < 1 or min(args.windows) <= args.seeds:
        raise UserError("need --patches >= 4, --dim >= 1, --seeds >= 1 and every --windows value > --seeds")
    if args.mode == "soak":
        if args.frames is None:
            args.frames = 20_000
        if args.report_every < 1 or args.frames < 3 * args.report_every:
            raise UserError(f"soak needs --report-every >= 1 and --frames >= 3 x --report-every (a warm-up "
                            f"interval, then two to compare), got --frames {args.frames} --report-every "
                            f"{args.report_every}")
        if args.soak_patches < 4 or args.soak_dim < 1 or args.soak_window <= args.seeds:
            raise UserError("soak needs --soak-patches >= 4, --soak-dim >= 1 and --soak-window > --seeds")
    elif args.frames is None:
        args.frames = 24
    modes = ("engine", "memory", "hnsw") if args.mode == "all" else (args.mode,)
    results: dict[str, Any] = {"cpu_count": os.cpu_count()}
    if "engine" in modes:
        print("engine mode:", flush=True)
        results["engine"] = bench_engine(args)
        print_engine(results["engine"])
    if "memory" in modes:
        print("memory mode:", flush=True)
        m = bench_memory(args)
        results["memory"] = m
        n1, n2 = sorted(args.memory_frames)
        print(f"resident memory (P={m['patches']}, d={m['dim']}, W={m['window']}): "
              f"{m['rss_mib'][str(n1)]:.1f} MiB after {n1} frames, {m['rss_mib'][str(n2)]:.1f} MiB after {n2}: "
              f"{100 * m['growth']:+.1f}% (target within 5%)")
    if "hnsw" in modes:
        print("hnsw mode:", flush=True)
        h = bench_hnsw(args)
        results["hnsw"] = h
        print_hnsw(h)
    if "soak" in modes:
        print(f"soak mode: {args.frames} frames, P={args.soak_patches}, d={args.soak_dim}, W={args.soak_window}, "
              f"a row every {args.report_every} (the first is the warm-up):", flush=True)
        soak = bench_soak(args, emit=lambda line: print(line, flush=True))
        results["soak"] = soak
        print(soak_verdict_line(soak))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"results written to {args.json}")
    return 0
