"""The streaming engine's levers, measured on one replay per learning setting (docs/quality.md, "Stream defaults").

For each data set and each *learning* setting (trimming ``k``, long-term memory size and cover radius),
the corrupted training stream is replayed once through a fresh :class:`~streamad.stream.detector.StreamDetector`
(``streamad eval --stream``'s protocol: same order, same descriptors, same positional decision), then the
test set is scored once. The *scoring* levers (heatmap blur, image score) only change how the same patch
scores become a heatmap and an image score, so every combination of them is computed from that one
replay. Each cell equals ``streamad eval DATA --corrupt K --stream --window W --k-sigma K --memory N
--blur B --image-score S``.

    python -m streamad.bench.stream_levers ../shared/data/mvtec_ad/bottle ../shared/data/mtd/magnetic_tile \\
        --k-sigmas 3,2 --memories 0,60000:1,60000:0.5 --cache out/desc --json out/levers.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from streamad.batch.inreach import InReaCh
from streamad.config import ChannelConfig, FeatureConfig, InReachConfig, MemoryConfig
from streamad.evaluation.batch_eval import image_and_pixel_auroc, masks_of_test_set
from streamad.evaluation.metrics import auroc
from streamad.vision.heatmap import frame_scores
from streamad.evaluation.datasets import load_dataset, training_positions, training_stream
from streamad.evaluation.descriptor_cache import prepare_descriptors
from streamad.evaluation.stream_eval import _stream_config, _Truth, replay_stream

SCORES = (("max", 30), ("top_mean", 30))


def measure(data_dir: str, corrupt: int, window: int, k_sigma: float, memory: MemoryConfig, blurs: list[float],
            cache: str | None, seed: int = 0, seeds: int = 10) -> list[dict[str, Any]]:
    """One replay of ``data_dir``'s corrupted training stream; a row per (blur, image score)."""
    config = InReachConfig(features=FeatureConfig(center_crop=0.875),  # streamad eval's default: 256 -> 224
                           channels=ChannelConfig(k_sigma=k_sigma, seeds=seeds), seed=seed, seed_choice="first")
    dataset = load_dataset(data_dir)
    order, _ = training_stream(dataset, corrupt, seed)
    stream_config = _stream_config(config, window, len(order), None, memory)
    detector = InReaCh(config, progress=False)
    prep = prepare_descriptors(detector, dataset, order, False, cache)
    train = detector.with_positions(np.asarray(prep.train))
    test = detector.with_positions(np.asarray(prep.test))
    t0 = time.perf_counter()
    replay = replay_stream(train, test, stream_config, detector.extractor, False)
    seconds = time.perf_counter() - t0
    size, crop = detector.extractor.image_size, config.features.center_crop
    masks, missing = masks_of_test_set(dataset, size, crop)
    labels = np.array([s.label for s in dataset.test])
    in_training = training_positions(dataset.test, order) >= 0
    rows = []
    mem = replay.detector.memory
    for blur in blurs:  # the heatmaps, so the pixel AUROC, depend on the blur only
        truth = _Truth(labels=labels, masks=masks, pixel_missing=missing, center_crop=crop, train=None,
                       size=size, blur=blur, test_angles=prep.test_angles, in_training=in_training)
        heat = truth.heatmaps(replay.patch_scores)
        pixel = None
        for name, k in SCORES:
            scores = frame_scores(heat, replay.patch_scores, name, k)
            if pixel is None:
                pixel = image_and_pixel_auroc(scores, heat, labels, masks, missing, crop)["pixel_auroc"]
            rows.append({"data": data_dir.rstrip("/").split("/")[-1], "corrupt": corrupt, "window": window,
                         "k_sigma": k_sigma, "seeds": seeds, "memory": memory.capacity, "memory_ratio": memory.epsilon_ratio,
                         "blur": blur, "image_score": name, "image_auroc": auroc(scores, labels),
                         "pixel_auroc": pixel, "nominal": replay.detector.nominal_count,
                         "memory_patches": 0 if mem is None else len(mem), "replay_seconds": seconds,
                         "replay_stage_ms": replay.stage_ms})
    return rows


def _memory(text: str) -> MemoryConfig:
    cap, _, ratio = text.partition(":")
    return MemoryConfig(capacity=int(cap), epsilon_ratio=float(ratio or 1.0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA_DIR")
    p.add_argument("--corrupt", type=int, default=10)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--k-sigmas", default="3,2", help="trimming k of each replay (comma-separated)")
    p.add_argument("--memories", default="0,60000:1", help="memory capacity[:epsilon ratio] of each replay")
    p.add_argument("--blurs", default="4,8", help="heatmap blur sigmas computed from each replay")
    p.add_argument("--seeds", default="10", help="seed frames D of each replay (comma-separated)")
    p.add_argument("--cache", default=None, help="descriptor cache folder (streamad eval --cache)")
    p.add_argument("--json", default=None, help="append the rows to this JSON lines file")
    args = p.parse_args(argv)
    blurs = [float(b) for b in args.blurs.split(",")]
    for data in args.data:
        for k in (float(v) for v in args.k_sigmas.split(",")):
            for m, d in ((_memory(v), int(s)) for v in args.memories.split(",") for s in args.seeds.split(",")):
                for row in measure(data, args.corrupt, args.window, k, m, blurs, args.cache, seeds=d):
                    print(f"{row['data']:>14} K={row['corrupt']} W={row['window']} k={row['k_sigma']:g} D={d} "
                          f"memory={row['memory']}:{row['memory_ratio']:g} blur={row['blur']:g} "
                          f"{row['image_score']:>8}: image {row['image_auroc']:.4f} pixel {row['pixel_auroc']:.4f} "
                          f"(nominal {row['nominal']}, memory {row['memory_patches']}, {row['replay_seconds']:.0f} s)",
                          flush=True)
                    if args.json:
                        with open(args.json, "a") as fh:
                            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
