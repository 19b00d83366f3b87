"""Frames per second of the backbone alone and of the full pipeline, on the same frames.

The frames are the images of IMAGES (a folder, searched recursively), read once into memory and
repeated to --frames, so disk and decoding are not timed. Two passes, one frame at a time:

  backbone   the feature extractor alone (the physical floor of the pipeline)
  pipeline   StreamDetector.process: features, score, heatmap, decisions, then admission of every
             frame into a --window frame window (association, trimming, index update, reseeding)

The pipeline is timed once the window is full (steady state); the frames before that fill it.
Reported: both rates and their ratio, per-frame latency of the pipeline (p50, p99, max), the mean
milliseconds of each stage, and the frames on which a seed was promoted (a reseed).

examples:
  streamad bench ../shared/data/mvtec_ad/bottle/test --frames 200
  streamad bench ../shared/data/mtd/magnetic_tile/train --device cpu --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.errors import UserError

NAME = "bench"
HELP = "backbone-only vs full-pipeline frames per second on the same frames, per-stage milliseconds"

_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGES", help="folder of images (searched recursively)")
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
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed backbone calls first (default 5)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _images(folder: str, n: int) -> list[np.ndarray]:
    from streamad.evaluation.datasets import read_image

    if not os.path.isdir(folder):
        raise UserError(f"IMAGES must be a folder of images, got {folder}")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                   if f.lower().endswith(_EXTENSIONS) and not f.startswith("."))
    if not paths:
        raise UserError(f"no images ({', '.join(_EXTENSIONS)}) under {folder}")
    return [read_image(paths[i % len(paths)]) for i in range(min(n, len(paths)))]


def _summary(ms: np.ndarray) -> dict[str, float]:
    return {"fps": float(1e3 / ms.mean()), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def run(args: argparse.Namespace) -> int:
    from streamad.config import FeatureConfig, IndexConfig, StreamConfig
    from streamad.stream.detector import StreamDetector
    from streamad.vision.features import PatchFeatureExtractor

    if args.frames <= args.window:
        raise UserError(f"--frames ({args.frames}) must exceed --window ({args.window}): the pipeline is timed "
                        "once the window is full")
    try:
        features = FeatureConfig(**{k: v for k, v in (("backbone", args.backbone), ("weights", args.weights),
                                                       ("device", args.device)) if v is not None})
        index = IndexConfig(**{k: v for k, v in (("exact_below", args.exact_below),
                                                  ("ef_construction", args.ef_construction)) if v is not None})
        config = StreamConfig(window=args.window, features=features, index=index)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    images = _images(args.images, args.frames)
    frames = [images[i % len(images)] for i in range(args.frames)]
    extractor = PatchFeatureExtractor(features)
    progress = not args.quiet
    for f in frames[:args.warmup]:
        extractor([f])
    backbone_ms = []
    for f in tqdm(frames, desc="backbone", unit="frame", disable=not progress, leave=False):
        t0 = time.perf_counter()
        extractor([f])
        backbone_ms.append((time.perf_counter() - t0) * 1e3)

    det = StreamDetector(config, extractor=extractor)
    pipeline_ms, stages, reseeds, ready = [], {}, [], 0
    for i, f in enumerate(tqdm(frames, desc="pipeline", unit="frame", disable=not progress, leave=False)):
        before = det.channels.schedule.last_promotion
        t0 = time.perf_counter()
        r = det.process(f)
        dt = (time.perf_counter() - t0) * 1e3
        if i < args.window:  # filling the window: not timed
            continue
        pipeline_ms.append(dt)
        ready += r.ready
        for k, v in r.timings.items():
            stages[k] = stages.get(k, 0.0) + v
        if det.channels.schedule.last_promotion != before:
            reseeds.append(dt)
    b, p = _summary(np.asarray(backbone_ms)), _summary(np.asarray(pipeline_ms))
    result: dict[str, Any] = {
        "device": str(extractor.device), "backbone": features.backbone, "image_size": list(features.image_size),
        "window": args.window, "index": {"exact_below": index.exact_below, "ef_construction": index.ef_construction,
                                         "ef": index.ef, "uses_graph_at_end": bool(det.index is not None
                                                                                    and det.index.uses_graph)},
        "nominal_patches_at_end": det.nominal_count, "timed_frames_ready": ready, "frames_timed": {"backbone": len(backbone_ms), "pipeline": len(pipeline_ms)},
        "backbone_fps": b["fps"], "pipeline_fps": p["fps"], "ratio": p["fps"] / b["fps"],
        "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "max_ms": p["max_ms"],
        "backbone_p50_ms": b["p50_ms"], "backbone_p99_ms": b["p99_ms"],
        "stage_ms": {k: v / len(pipeline_ms) for k, v in stages.items()},
        "reseeds": len(reseeds), "reseed_frame_ms_median": float(np.median(reseeds)) if reseeds else None,
        "torch_threads": _torch_threads(),
    }
    ix = result["index"]
    print(f"device {result['device']}, backbone {features.backbone}, input {features.image_size[0]}x"
          f"{features.image_size[1]}, window {args.window}, {len(pipeline_ms)} frames timed after the window filled")
    print(f"nominal patches at the end {det.nominal_count:,}; index: "
          f"{'HNSW (ef_construction ' + str(ix['ef_construction']) + ', ef ' + str(ix['ef']) + ')' if ix['uses_graph_at_end'] else 'exact search'}"
          f" (exact below {ix['exact_below']:,})")
    print(f"backbone only : {b['fps']:7.2f} fps  (p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms)")
    print(f"full pipeline : {p['fps']:7.2f} fps  (p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, "
          f"max {p['max_ms']:.1f} ms)")
    print(f"ratio pipeline / backbone: {result['ratio']:.2f}")
    print("stage ms (mean per frame): " + ", ".join(f"{k} {v:.1f}" for k, v in result["stage_ms"].items()))
    if ready < len(pipeline_ms):
        print(f"warning: the detector was ready on only {ready} of {len(pipeline_ms)} timed frames (no nominal "
              "patches yet), so those frames skipped scoring: use more frames, a larger window or real images",
              file=sys.stderr)
    if reseeds:
        print(f"reseeds: {len(reseeds)} frames, median {result['reseed_frame_ms_median']:.1f} ms per such frame")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"results written to {args.json}", file=sys.stderr)
    return 0


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())
