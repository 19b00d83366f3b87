"""Is the channels' trust verdict a fair sample of normal frames on this stream? (docs/alarms.md, ``auto``)

Runs the streaming engine over the drifting stream of ``streamad eval-stream`` (same manifest, same
descriptors and cache) and records, for every admitted frame judged, which of its patches the channels
kept as nominal. Prints, for normal and defective frames, the share of all patches kept and of the
frame's ``m`` highest-scoring patches kept, and the normal frames' score median and 99th percentile:
all of them against those whose top patch was kept. Where the two agree the verdict is blind to the
score (an object scene); where the trusted ones score lower, a threshold from them would be too low
(a texture), which is why the ``auto`` rule calibrates on the screened scores there.

    python -m streamad.bench.trust_share ../shared/data/mtd/magnetic_tile --cache out/drift
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from streamad.config import FeatureConfig, HeatmapConfig, InReachConfig, MemoryConfig, StreamConfig
from streamad.evaluation.descriptor_cache import PrecomputedDescriptors, descriptors_of_paths
from streamad.evaluation.drift_report import DriftSettings, build_stream
from streamad.stream.detector import StreamDetector


def kept_records(descriptors: np.ndarray, config: StreamConfig, grid: tuple[int, int],
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: score (NaN unjudged), patch scores (N, P), kept mask at admission (N, P), judged."""
    det = StreamDetector(config, extractor=PrecomputedDescriptors(grid, size, config.features))
    n, p = len(descriptors), det.n_patches
    kept_by_index: dict[int | None, np.ndarray] = {}
    det.on_kept = kept_by_index.__setitem__  # (frame index, kept mask) at each admission
    scores, patch = np.full(n, np.nan), np.full((n, p), np.nan, np.float32)
    kept, judged = np.zeros((n, p), bool), np.zeros(n, bool)
    for i in range(n):
        full = det.window_full
        r = det.process_descriptors(np.asarray(descriptors[i]), frame_shape=size)
        if r.score is not None:
            scores[i], patch[i] = r.score, r.patch_scores.ravel()
        judged[i] = full and r.score is not None
        if r.index in kept_by_index:
            kept[i] = kept_by_index.pop(r.index)
    det.close()
    return scores, patch, kept, judged


def summary(scores: np.ndarray, patch: np.ndarray, kept: np.ndarray, judged: np.ndarray, labels: np.ndarray,
            tops: tuple[int, ...] = (1, 5, 30)) -> dict[str, Any]:
    """The kept shares and the normal scores of all judged frames against those whose top patch was kept."""
    order = np.argsort(-np.nan_to_num(patch, nan=-np.inf), axis=1)
    out: dict[str, Any] = {}
    for name, rows in (("normal", judged & (labels == 0)), ("defective", judged & (labels == 1))):
        if not rows.any():
            continue
        out[name] = {"frames": int(rows.sum()), "kept_all": float(kept[rows].mean())}
        for m in tops:
            top = np.take_along_axis(kept, order[:, :m], axis=1)
            out[name][f"kept_top{m}"] = float(top[rows].mean())
    normal = judged & (labels == 0)
    trusted = normal & kept[np.arange(len(kept)), order[:, 0]]
    out["normal_scores"] = {"median": float(np.median(scores[normal])), "p99": float(np.quantile(scores[normal], 0.99))}
    if trusted.any():
        out["top_patch_kept_scores"] = {"frames": int(trusted.sum()), "median": float(np.median(scores[trusted])),
                                        "p99": float(np.quantile(scores[trusted], 0.99))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", metavar="DATA_DIR", help="the data set eval-stream reads (its manifest beside it)")
    p.add_argument("--cache", default=None, help="eval-stream's descriptor cache folder")
    p.add_argument("--defect-rate", type=float, default=0.05)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--memory", type=int, default=None, help="long-term memory capacity (default: the engine's)")
    args = p.parse_args(argv)
    settings = DriftSettings(defect_rate=args.defect_rate, cache=args.cache)
    stream = build_stream(args.data_dir, settings)
    features = FeatureConfig(center_crop=0.875)  # streamad eval-stream's default: 256 -> 224
    desc = descriptors_of_paths([f.sample.path for f in stream], InReachConfig(features=features), args.cache, True)
    memory = StreamConfig().memory if args.memory is None else MemoryConfig(capacity=args.memory)
    config = StreamConfig(window=args.window, features=features, memory=memory,
                          heatmap=HeatmapConfig(image_score="top_mean", top_k=30))
    labels = np.array([f.sample.label for f in stream])
    out = summary(*kept_records(desc, config, tuple(features.grid), tuple(features.image_size)), labels)
    for name in ("normal", "defective"):
        if name in out:
            r = out[name]
            tops = ", ".join(f"top-{k[8:]} {v:.3f}" for k, v in r.items() if k.startswith("kept_top"))
            print(f"{name:9s} frames {r['frames']:4d}: patches kept {r['kept_all']:.3f}; of the highest-scoring {tops}")
    s = out["normal_scores"]
    print(f"normal frames' scores: median {s['median']:.2f}, p99 {s['p99']:.2f}")
    t = out.get("top_patch_kept_scores")
    if t:
        print(f"  those whose top patch was kept ({t['frames']}): median {t['median']:.2f}, p99 {t['p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
