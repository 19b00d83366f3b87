"""Frames per second of the backbone alone and of the full pipeline, live and synchronous, on the same frames.

The frames are the images of IMAGES (a folder, searched recursively) or, without IMAGES, the first
--frames frames of the built-in demo stream (the generated scene of 'streamad watch demo', 384x384),
read once into memory (images repeated to --frames), so disk and decoding are not timed. Passes,
one frame at a time:

  backbone   the feature extractor alone (the physical floor of the pipeline)
  live       the window filled first (untimed); then StreamDetector.process scores every frame
             (features, score, heatmap, decisions) while the background learner admits the newest
             due frame (association, trimming, reseeding, index update): 'watch' runs this way
  sync       StreamDetector.process scores AND admits every frame on the caller's thread (as eval
             does), timed once the window is full

Reported: backbone fps; live fps (= pipeline_fps), its ratio to the backbone, the scoring latency
(p50, p99) and the learner's admissions per second; synchronous fps and latency; the mean
milliseconds of each stage; the thread budget of each pass (--torch-threads, --blas-threads: 0 =
automatic, see streamad.vision.threads). The measuring lives in streamad.bench.throughput.

examples:
  streamad bench --device cpu                   # the demo stream: no data needed
  streamad bench ../shared/data/mvtec_ad/bottle/test --frames 200
  streamad bench ../shared/data/mtd/magnetic_tile/train --device cpu --json bench.json
"""

from __future__ import annotations

import argparse
import json
import sys

from streamad.errors import UserError

NAME = "bench"
HELP = ("backbone-only vs live (background learning) and synchronous pipeline frames per second on the same "
        "frames (a folder, or the demo stream), latency, learner admissions/s, per-stage milliseconds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGES", nargs="?", default=None,
                   help="folder of images (searched recursively); without it, the built-in demo stream")
    p.add_argument("--frames", type=int, default=200, metavar="N",
                   help="frames per pass, images repeated as needed (default 200; must exceed --window)")
    p.add_argument("--window", type=int, default=64, metavar="W", help="window of the pipeline (default 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default auto)")
    p.add_argument("--backbone", default=None, help="backbone (default: the default FeatureConfig's)")
    p.add_argument("--weights", default=None, metavar="PATH", help="local weight file ('random' for timing only)")
    p.add_argument("--exact-below", type=int, default=None, metavar="N",
                   help="exact nearest-neighbour search below N nominal patches (default: IndexConfig's)")
    p.add_argument("--ef-construction", type=int, default=None, metavar="N",
                   help="HNSW graph quality (default: IndexConfig's)")
    p.add_argument("--index", choices=("ivf", "hnsw"), default=None,
                   help="nominal index kind (default: the stream's, ivf); live mode needs ivf")
    p.add_argument("--nprobe", type=int, default=None, metavar="N", help="IVF lists searched per query")
    p.add_argument("--learner-duty", type=float, default=None, metavar="F",
                   help="live: the largest share of the time the learner may be busy (default 0.5)")
    p.add_argument("--layers", default=None, metavar="A,B",
                   help="backbone layers (default: the backbone's stride-8 and stride-16 blocks)")
    p.add_argument("--aggregate", type=int, default=None, metavar="A", help="A x A local averaging (default 3)")
    p.add_argument("--dim", type=int, default=None, metavar="D", help="descriptor dimension (default 256)")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="S x S input (grid S/8 x S/8; default 224)")
    p.add_argument("--blur", type=float, default=None, metavar="SIGMA", help="heatmap blur sigma (default 4)")
    p.add_argument("--k-sigma", type=float, default=None, metavar="K",
                   help="channel trimming k of the spread rule (default 3)")
    p.add_argument("--memory", type=int, default=None, metavar="N",
                   help="long-term memory beyond the window of at most N patches (default: the engine's, 60000; 0: "
                        "none); with a memory the live pass first learns every frame once, untimed, so the memory "
                        "holds what left the window")
    p.add_argument("--modes", default="live,sync", help="passes after the backbone's: live, sync or both (default)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N", help="torch threads (0: automatic)")
    p.add_argument("--blas-threads", type=int, default=None, metavar="N", help="BLAS threads (0: automatic)")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed backbone calls first (default 5)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from streamad.bench import throughput

    if args.frames <= args.window:
        raise UserError(f"--frames ({args.frames}) must exceed --window ({args.window}): the pipeline is timed "
                        "once the window is full")
    config = throughput.bench_config(window=args.window, device=args.device, backbone=args.backbone,
                                     weights=args.weights, exact_below=args.exact_below,
                                     ef_construction=args.ef_construction, index=args.index, nprobe=args.nprobe,
                                     torch_threads=args.torch_threads, blas_threads=args.blas_threads,
                                     learner_duty=args.learner_duty, memory=args.memory,
                                     layers=tuple(v.strip() for v in args.layers.split(",")) if args.layers else None,
                                     aggregate=args.aggregate, dim=args.dim, blur=args.blur, k_sigma=args.k_sigma,
                                     image_size=None if args.image_size is None else (args.image_size, args.image_size))
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
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
