"""Measure the streaming engine on synthetic patch descriptors (no backbone, no data needed).

Modes:
  engine  per-admitted-frame cost of each stage (associate, trim, index update, score = index query,
          heatmap) at several window sizes W, median / p99 / mean over the timed frames (the mean
          includes seed promotions, amortised), and the ratio median(largest W) / median(smallest W)
          of the engine total (target <= 1.5: the cost should not grow with W); each W in its steady
          state: warmed up until the window turned over and the long-term memory (its size set by
          --memory, not by W) is full or stops growing; --memory 0 measures the window alone
  memory  resident memory after a short and a long stream (target: within 5%); uses a smaller grid
          and dimension by default (P=100, d=64: 10,000 frames in about 3 minutes on 2 cores)
  hnsw    recall@1 of the HNSW index against exact search, and query time of both, for a few
          nominal set sizes (built by streaming frames in, then a few frames of churn); with
          --descriptors on REAL descriptors from a .npy file (e.g. the training descriptors
          `streamad eval --stream --cache out/desc` saves) and --queries for real query descriptors
  index   which nominal index serves a sliding window: the engine's channels run over REAL descriptors
          (--descriptors, (N, P, d) in stream order) with each --windows W, every admission's change of
          the nominal set is replayed into each index option (HNSW as before, IVF at several nprobe),
          timed, and the final index answers --queries against exact search: recall@1, the 99.9th
          percentile and the maximum of the score error, update and query milliseconds
  soak    a long run (default 20,000 frames, 10x10 grid, 64-d, W=64, one index thread) on a stream
          whose normal patches wander slowly (channels keep changing); every --report-every frames it
          prints the frames so far, resident memory and the median / p99 per-frame latency of that
          interval, and at the end a verdict: last interval against the first after warm-up

Synthetic frames (engine, memory, and hnsw without --descriptors): P fixed patch "places" (normal descriptors) plus per-frame noise, a slow drift and,
now and then, a defect (a few patches moved far away). Every number comes from the real engine
(StreamDetector.process_descriptors) or the real index. The measuring lives in streamad.bench
(engine, memory, hnsw_recall, soak; the streams in streams).

examples:
  streamad bench-engine
  streamad bench-engine --mode hnsw --hnsw-sizes 10000 100000 --json hnsw.json
  streamad bench-engine --mode memory --memory-frames 2000 10000
  streamad bench-engine --mode soak --frames 20000 --report-every 1000 --json soak.json
  streamad bench-engine --mode hnsw --descriptors out/desc/bottle-<key>.train.npy \
      --queries out/desc/bottle-<key>.test.npy --hnsw-sizes 10000 100000
  streamad bench-engine --mode index --descriptors out/desc/bottle-<key>.train.npy \
      --queries out/desc/bottle-<key>.test.npy --windows 64 256
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from streamad.cli.options import add
from streamad.errors import UserError

NAME = "bench-engine"
HELP = "measure the streaming engine's per-frame cost, memory and HNSW recall on synthetic descriptors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("engine", "memory", "hnsw", "index", "soak", "all"), default="engine",
                   help="what to measure (default: engine; 'all' is engine, memory and hnsw, not soak)")
    p.add_argument("--patches", type=int, default=784, metavar="P", help="patches per frame (default 784 = 28x28)")
    p.add_argument("--dim", type=int, default=152, metavar="D",
                   help="dimension of the synthetic descriptors (default 152)")
    add(p, "seeds", "seed", "json")
    g = p.add_argument_group("engine mode")
    g.add_argument("--windows", type=int, nargs="+", default=[32, 64, 128, 256], metavar="W",
                   help="window sizes (default 32 64 128 256)")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="engine: timed frames per window, at least two promotion periods (default 24); "
                   "soak: frames in all (default 20000)")
    add(g, "memory")  # engine: each window is warmed up until the memory is full or stops growing
    g = p.add_argument_group("memory mode")
    g.add_argument("--memory-frames", type=int, nargs=2, default=[2000, 10000], metavar=("N1", "N2"),
                   help="read resident memory after N1 and N2 frames (default 2000 10000)")
    g.add_argument("--memory-patches", type=int, default=100, metavar="P", help="patches per frame (default 100)")
    g.add_argument("--memory-dim", type=int, default=64, metavar="D", help="descriptor dimension (default 64)")
    g.add_argument("--memory-window", type=int, default=64, metavar="W", help="window (default 64)")
    g.add_argument("--live", action="store_true",
                   help="memory mode: learn on the background learner while every frame is scored (as watch does)")
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
    g.add_argument("--index-frames", type=int, default=320, metavar="N",
                   help="index mode: the first N frames of --descriptors (default 320: a W = 256 window turns over)")
    g.add_argument("--index-options", nargs="+", default=None, metavar="NAME",
                   help="index mode: the options to compare, names from streamad.bench.index_options.DEFAULT_OPTIONS "
                        "(default: all)")
    g.add_argument("--index-queries", type=int, default=6272, metavar="Q",
                   help="index mode: query patches, a seeded sample of --queries (default 6272 = 8 frames of 784)")
    g.add_argument("--insert-threads", type=int, default=None, metavar="T",
                   help="hnsw mode: threads for graph insertion (default: the configured one; 0 = all cores)")


def check(args: argparse.Namespace) -> None:
    """Refuse impossible settings; fill in the mode's default --frames."""
    if args.patches < 4 or args.dim < 1 or args.seeds < 1 or min(args.windows) <= args.seeds:
        raise UserError("need --patches >= 4, --dim >= 1, --seed-frames >= 1 and every --windows value > --seed-frames")
    if args.mode == "soak":
        if args.frames is None:
            args.frames = 20_000
        if args.report_every < 1 or args.frames < 3 * args.report_every:
            raise UserError(f"soak needs --report-every >= 1 and --frames >= 3 x --report-every (a warm-up "
                            f"interval, then two to compare), got --frames {args.frames} --report-every "
                            f"{args.report_every}")
        if args.soak_patches < 4 or args.soak_dim < 1 or args.soak_window <= args.seeds:
            raise UserError("soak needs --soak-patches >= 4, --soak-dim >= 1 and --soak-window > --seed-frames")
    elif args.frames is None:
        args.frames = 24


def say(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    from streamad.runtime.heap import heap_as_in_watch

    check(args)
    say(heap_as_in_watch())
    modes = ("engine", "memory", "hnsw") if args.mode == "all" else (args.mode,)
    results: dict[str, Any] = {"cpu_count": os.cpu_count()}
    for mode in modes:
        results[mode] = RUNS[mode](args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"results written to {args.json}")
    return 0


def run_engine(args: argparse.Namespace) -> dict[str, Any]:
    from streamad.bench.engine import bench_engine, engine_table

    say("engine mode:")
    res = bench_engine(args.windows, frames=args.frames, patches=args.patches, dim=args.dim, seeds=args.seeds,
                       seed=args.seed, memory=args.memory, emit=say)
    print(engine_table(res))
    return res


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    from streamad.bench.memory import bench_memory, memory_line

    say("memory mode:")
    res = bench_memory(tuple(args.memory_frames), patches=args.memory_patches, dim=args.memory_dim,
                       window=args.memory_window, seeds=args.seeds, seed=args.seed, live=args.live, emit=say)
    print(memory_line(res))
    return res


def run_hnsw(args: argparse.Namespace) -> dict[str, Any]:
    from streamad.bench.hnsw_recall import bench_hnsw, hnsw_table

    say("hnsw mode:")
    res = bench_hnsw(args.hnsw_sizes, patches=args.patches, dim=args.dim, seed=args.seed, efs=args.hnsw_ef,
                     ef_construction=args.hnsw_ef_construction, m=args.hnsw_m, insert_threads=args.insert_threads,
                     descriptors=args.descriptors, queries=args.queries, n_queries=args.hnsw_queries,
                     tile_noise=args.tile_noise, emit=say)
    print(hnsw_table(res))
    return res


def run_index(args: argparse.Namespace) -> dict[str, Any]:
    from streamad.bench.index_options import DEFAULT_OPTIONS, compare_options, load_descriptors, option_line

    if args.descriptors is None:
        raise UserError("--mode index needs --descriptors (N, P, d) of real frames in stream order (e.g. the "
                        "training descriptors 'streamad eval --stream --cache out/desc' saves) and --queries")
    desc, queries = load_descriptors(args.descriptors, args.queries, n_queries=args.index_queries, seed=args.seed)
    desc = desc[:args.index_frames] if args.index_frames > 0 else desc
    say(f"index mode: {len(desc)} frames of {desc.shape[1]} patches, {len(queries)} query patches")
    unknown = [n for n in args.index_options or () if n not in DEFAULT_OPTIONS]
    if unknown:
        raise UserError(f"unknown --index-options {unknown}: choose from {list(DEFAULT_OPTIONS)}")
    options = {n: DEFAULT_OPTIONS[n] for n in args.index_options} if args.index_options else None
    rows = []
    for w in args.windows:
        for row in compare_options(desc, queries, w, options):
            rows.append({**row, "window": w})
            say(option_line(rows[-1]))
    return {"rows": rows}


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    from streamad.bench.soak import bench_soak, soak_verdict_line

    say(f"soak mode: {args.frames} frames, P={args.soak_patches}, d={args.soak_dim}, W={args.soak_window}, "
        f"a row every {args.report_every} (the first is the warm-up):")
    res = bench_soak(args.frames, args.report_every, patches=args.soak_patches, dim=args.soak_dim,
                     window=args.soak_window, seeds=args.seeds, seed=args.seed, emit=say)
    print(soak_verdict_line(res))
    return res


RUNS = {"engine": run_engine, "memory": run_memory, "hnsw": run_hnsw, "index": run_index, "soak": run_soak}
