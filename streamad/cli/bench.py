"""Frames per second of the backbone alone and of the full pipeline, live and synchronous, on the same frames.

The frames are the images of IMAGES (a folder, searched recursively) or, without IMAGES, the first
--frames frames of the built-in demo stream (the generated scene of 'streamad watch demo', 384x384),
read once into memory (images repeated to --frames), so disk and decoding are not timed. Passes,
one frame at a time:

  backbone   the feature extractor alone (the physical floor of the pipeline)
  live       the window filled first (untimed); then the frames go through watch's live loop: a
             reader thread computes each frame's features one frame ahead while the loop scores
             the frame before (score, heatmap, decisions) and the background learner admits the
             newest due frame (association, trimming, reseeding, index update)
  sync       every frame scored AND admitted on the loop's thread (watch --learning sync; the
             reader describes the next frame meanwhile), timed once the window is full

Reported: backbone fps; live fps (= pipeline_fps), its ratio to the backbone, the latency from a
frame's read to its result (p50, p99), the detector's own time a frame (features + scoring, without
the wait between the threads) and the learner's admissions per second; synchronous fps and latency; the mean
milliseconds of each stage; the thread budget of each pass (--torch-threads, --blas-threads: 0 =
automatic, see streamad.vision.threads). With a long-term memory (--memory, on by default) each pass
first learns every frame once, untimed, so the memory holds what left the window, as in a running
stream (a memory filling from empty retrains its index at every doubling: the stream's first minutes). --device auto
measures on CUDA when there is one (the default is cpu, as everywhere). The measuring lives in
streamad.bench.throughput.

examples:
  streamad bench --device cpu                   # the demo stream: no data needed
  streamad bench ../shared/data/mvtec_ad/bottle/test --frames 200
  streamad bench ../shared/data/mtd/magnetic_tile/train --device cpu --json bench.json
"""

from __future__ import annotations

import argparse
import json
import sys

from streamad.cli.options import STREAM_SETTINGS, add, config_error, settings
from streamad.errors import UserError

NAME = "bench"
HELP = ("backbone-only vs live (background learning) and synchronous pipeline frames per second on the same "
        "frames (a folder, or the demo stream), latency, learner admissions/s, per-stage milliseconds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGES", nargs="?", default=None,
                   help="folder of images (searched recursively); without it, the built-in demo stream")
    p.add_argument("--frames", type=int, default=200, metavar="N",
                   help="frames per pass, images repeated as needed (default 200; must exceed --window)")
    add(p, "window", "device", "backbone", "weights")
    p.add_argument("--exact-below", type=int, default=None, metavar="N",
                   help="exact nearest-neighbour search below N nominal patches (default: IndexConfig's)")
    p.add_argument("--ef-construction", type=int, default=None, metavar="N",
                   help="HNSW graph quality (default: IndexConfig's)")
    p.add_argument("--index", choices=("ivf", "hnsw"), default=None,
                   help="nominal index kind (default: the stream's, ivf); live mode needs ivf")
    p.add_argument("--nprobe", type=int, default=None, metavar="N", help="IVF lists searched per query")
    add(p, "learner_duty", "learner_nice", "layers")
    p.add_argument("--aggregate", type=int, default=None, metavar="A", help="A x A local averaging (default 3)")
    add(p, "dim", "image_size", "blur", "k_sigma", "memory")
    p.add_argument("--modes", default="live,sync", help="passes after the backbone's: live, sync or both (default)")
    add(p, "torch_threads", "blas_threads", "associate_threads")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed backbone calls first (default 5)")
    add(p, "json", "quiet")


def run(args: argparse.Namespace) -> int:
    from streamad.bench import throughput
    from streamad.runtime.heap import heap_as_in_watch

    try:
        config = throughput.bench_config(**settings(args, STREAM_SETTINGS))
    except ValueError as exc:
        raise config_error(exc) from exc
    if args.frames <= config.window:
        raise UserError(f"--frames ({args.frames}) must exceed --window ({config.window}): the pipeline is timed "
                        "once the window is full")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    print(heap_as_in_watch())
    if args.images is None:
        frames = throughput.demo_frames(args.frames)
        print(f"frames: the first {len(frames)} of the built-in demo stream "
              f"({frames[0].shape[1]}x{frames[0].shape[0]})")
    else:
        frames = throughput.folder_frames(args.images, args.frames)
    result = throughput.measure_throughput(frames, config, warmup=args.warmup, progress=not args.quiet,
                                           modes=modes)
    print("\n".join(throughput.report_lines(result)))
    warning = throughput.not_ready_warning(result)
    if warning is not None:
        print(warning, file=sys.stderr)
    reseeds = throughput.reseed_line(result)
    if reseeds is not None:
        print(reseeds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"results written to {args.json}", file=sys.stderr)
    return 0
