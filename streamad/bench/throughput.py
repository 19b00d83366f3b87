"""Frames per second of the backbone alone and of the full pipeline, on the same frames in memory.

Two passes, one frame at a time: the feature extractor alone (the physical floor of the pipeline),
then ``StreamDetector.process`` (features, score, heatmap, decisions, admission into the window). The
pipeline is timed once the window is full (steady state); the frames before that fill it.

The frames are images of a folder (read once, repeated as needed) or the first frames of the
built-in demo stream (:mod:`streamad.adapters.sources.demo`), so disk and decoding are not timed::

    frames = demo_frames(200)
    result = measure_throughput(frames, bench_config(window=64, device="cpu"))
    print("\\n".join(report_lines(result)))
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def folder_frames(folder: str, n: int) -> list[np.ndarray]:
    """``n`` frames from the images under ``folder`` (searched recursively, sorted, repeated as needed)."""
    from streamad.evaluation.datasets import read_image

    if not os.path.isdir(folder):
        raise UserError(f"IMAGES must be a folder of images, got {folder}")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    if not paths:
        raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    images = [read_image(paths[i % len(paths)]) for i in range(min(n, len(paths)))]
    return [images[i % len(images)] for i in range(n)]


def demo_frames(n: int) -> list[np.ndarray]:
    """The first ``n`` frames of the built-in demo stream, at its default size (RGB ``uint8``)."""
    from streamad.adapters.sources.demo import DemoSource

    with DemoSource(max_frames=n) as source:
        return [frame.image for frame in source]


def bench_config(*, window: int, device: str | None = None, backbone: str | None = None, weights: str | None = None,
                 exact_below: int | None = None, ef_construction: int | None = None) -> Any:
    """The ``StreamConfig`` to measure: ``window``, and the given feature and index settings over the
    defaults (``None``: the default). A bad value is a UserError."""
    from streamad.config import FeatureConfig, IndexConfig, StreamConfig

    try:
        features = FeatureConfig(**{k: v for k, v in (("backbone", backbone), ("weights", weights),
                                                       ("device", device)) if v is not None})
        index = IndexConfig(**{k: v for k, v in (("exact_below", exact_below),
                                                  ("ef_construction", ef_construction)) if v is not None})
        return StreamConfig(window=window, features=features, index=index)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def measure_throughput(frames: list[np.ndarray], config: Any, *, warmup: int = 5, progress: bool = False) -> dict[str, Any]:
    """Time the backbone alone, then the pipeline, on ``frames`` (more than ``config.window`` of them) after
    ``warmup`` untimed backbone calls; the results (rates, latencies, stage means, reseeds) as a dict."""
    from streamad.stream.detector import StreamDetector
    from streamad.vision.features import PatchFeatureExtractor

    window = config.window
    if len(frames) <= window:
        raise UserError(f"{len(frames)} frames do not fill a window of {window} and leave one to time")
    extractor = PatchFeatureExtractor(config.features)
    for f in frames[:warmup]:
        extractor([f])
    backbone_ms = _time_backbone(extractor, frames, progress)
    det = StreamDetector(config, extractor=extractor)
    pipeline_ms, stages, reseeds, ready = _time_pipeline(det, frames, window, progress)
    b, p = _summary(np.asarray(backbone_ms)), _summary(np.asarray(pipeline_ms))
    features, index = config.features, config.index
    return {
        "device": str(extractor.device), "backbone": features.backbone, "image_size": list(features.image_size),
        "window": window, "index": {"exact_below": index.exact_below, "ef_construction": index.ef_construction,
                                    "ef": index.ef, "uses_graph_at_end": bool(det.index is not None
                                                                               and det.index.uses_graph)},
        "nominal_patches_at_end": det.nominal_count, "timed_frames_ready": ready,
        "frames_timed": {"backbone": len(backbone_ms), "pipeline": len(pipeline_ms)},
        "backbone_fps": b["fps"], "pipeline_fps": p["fps"], "ratio": p["fps"] / b["fps"],
        "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "max_ms": p["max_ms"],
        "backbone_p50_ms": b["p50_ms"], "backbone_p99_ms": b["p99_ms"],
        "stage_ms": {k: v / len(pipeline_ms) for k, v in stages.items()},
        "reseeds": len(reseeds), "reseed_frame_ms_median": float(np.median(reseeds)) if reseeds else None,
        "torch_threads": _torch_threads(),
    }


def _time_backbone(extractor: Any, frames: list[np.ndarray], progress: bool) -> list[float]:
    """Milliseconds of the feature extractor on each frame."""
    ms = []
    for f in tqdm(frames, desc="backbone", unit="frame", disable=not progress, leave=False):
        t0 = time.perf_counter()
        extractor([f])
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def _time_pipeline(det: Any, frames: list[np.ndarray], window: int,
                   progress: bool) -> tuple[list[float], dict[str, float], list[float], int]:
    """``det.process`` on every frame, timed after the first ``window``: (milliseconds per timed frame,
    summed stage milliseconds, milliseconds of the frames that promoted a seed, timed frames ready)."""
    pipeline_ms: list[float] = []
    stages: dict[str, float] = {}
    reseeds: list[float] = []
    ready = 0
    for i, f in enumerate(tqdm(frames, desc="pipeline", unit="frame", disable=not progress, leave=False)):
        before = det.channels.schedule.last_promotion
        t0 = time.perf_counter()
        r = det.process(f)
        dt = (time.perf_counter() - t0) * 1e3
        if i < window:  # filling the window: not timed
            continue
        pipeline_ms.append(dt)
        ready += r.ready
        for k, v in r.timings.items():
            stages[k] = stages.get(k, 0.0) + v
        if det.channels.schedule.last_promotion != before:
            reseeds.append(dt)
    return pipeline_ms, stages, reseeds, ready


def _summary(ms: np.ndarray) -> dict[str, float]:
    return {"fps": float(1e3 / ms.mean()), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def report_lines(result: dict[str, Any]) -> list[str]:
    """The printed report of :func:`measure_throughput` (then :func:`not_ready_warning`, :func:`reseed_line`)."""
    r, ix = result, result["index"]
    h, w = r["image_size"]
    graph = f"HNSW (ef_construction {ix['ef_construction']}, ef {ix['ef']})" if ix["uses_graph_at_end"] else "exact search"
    lines = [f"device {r['device']}, backbone {r['backbone']}, input {h}x{w}, window {r['window']}, "
             f"{r['frames_timed']['pipeline']} frames timed after the window filled",
             f"nominal patches at the end {r['nominal_patches_at_end']:,}; index: {graph} "
             f"(exact below {ix['exact_below']:,})",
             f"backbone only : {r['backbone_fps']:7.2f} fps  (p50 {r['backbone_p50_ms']:.1f} ms, "
             f"p99 {r['backbone_p99_ms']:.1f} ms)",
             f"full pipeline : {r['pipeline_fps']:7.2f} fps  (p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
             f"max {r['max_ms']:.1f} ms)",
             f"ratio pipeline / backbone: {r['ratio']:.2f}",
             "stage ms (mean per frame): " + ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms"].items())]
    return lines


def reseed_line(result: dict[str, Any]) -> str | None:
    """How many timed frames promoted a seed and what such a frame cost, or None if none did."""
    if not result["reseeds"]:
        return None
    return f"reseeds: {result['reseeds']} frames, median {result['reseed_frame_ms_median']:.1f} ms per such frame"


def not_ready_warning(result: dict[str, Any]) -> str | None:
    """A warning when some timed frames skipped scoring (no nominal patches yet), else None."""
    ready, timed = result["timed_frames_ready"], result["frames_timed"]["pipeline"]
    if ready >= timed:
        return None
    return (f"warning: the detector was ready on only {ready} of {timed} timed frames (no nominal "
            "patches yet), so those frames skipped scoring: use more frames, a larger window or real images")
