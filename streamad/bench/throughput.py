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
from dataclasses import replace
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


def bench_config(*, device: str | None = None, **settings: Any) -> Any:
    """The ``StreamConfig`` to measure: the flat ``settings`` (``window``, ``backbone``, ``index``, ``memory``,
    ...: :mod:`streamad.stream.settings`; None: the default) over the streaming defaults. On a CUDA ``device``
    the association and exact search run on the GPU too. A bad value raises the config's ``ValueError``.

    >>> cfg = bench_config(window=32, image_size=160, index="hnsw")
    >>> cfg.window, cfg.features.grid, cfg.index.kind, cfg.channels.device
    (32, (20, 20), 'hnsw', 'numpy')
    """
    from streamad.stream.settings import stream_config_of

    gpu = device is not None and device.startswith("cuda")
    overrides = {"channels": {"device": device}, "index": {"device": device}} if gpu else None
    return stream_config_of({"device": device, **settings}, overrides=overrides)


def measure_throughput(frames: list[np.ndarray], config: Any, *, warmup: int = 5, progress: bool = False,
                       modes: tuple[str, ...] = ("live", "sync")) -> dict[str, Any]:
    """Time the backbone alone, then the pipeline in each of ``modes`` on the same ``frames`` (more than
    ``config.window`` of them), after ``warmup`` untimed backbone calls.

    - ``live``: the window is filled first (untimed), then the frames go through the live loop
      (:func:`~streamad.runtime.live.run_watch`, its reader describing the next frame while the current one
      is scored) while the background learner admits the newest due frame (``learn_in_background``): the
      scoring rate (``pipeline_fps``), the latency from a frame's read to its result (``p50_ms``,
      ``p99_ms``), the detector's own time a frame (``work_p50_ms``, ``work_p99_ms``: ``describe`` plus
      ``process_described``, what ``process`` took when one thread did both) and the learner's
      ``admissions_per_s``;
    - ``sync``: ``process`` scores and admits every frame on the caller's thread (as eval does),
      timed once the window is full: ``sync_fps`` and its latency.

    Each pass runs under the thread budget of its mode (:mod:`streamad.stream.threads`).
    """
    from streamad.vision.features import PatchFeatureExtractor
    from streamad.stream.threads import apply_threads

    window = config.window
    if len(frames) <= window:
        raise UserError(f"{len(frames)} frames do not fill a window of {window} and leave one to time")
    bad = [m for m in modes if m not in ("live", "sync")]
    if bad or not modes:
        raise UserError(f"modes must be some of live, sync; got {list(modes)}")
    extractor = PatchFeatureExtractor(config.features)
    threads = apply_threads(config.threads, background=False)
    for f in frames[:warmup]:
        extractor([f])
    b = _summary(np.asarray(_time_backbone(extractor, frames, progress)))
    features, index = config.features, config.index
    out: dict[str, Any] = {
        "device": str(extractor.device), "backbone": features.backbone, "image_size": list(features.image_size),
        "window": window, "frames": len(frames), "index": {"kind": index.kind, "nprobe": index.nprobe,
                                                           "exact_below": index.exact_below},
        "blur_sigma": config.heatmap.blur_sigma, "k_sigma": config.channels.k_sigma,
        "backbone_fps": b["fps"], "backbone_p50_ms": b["p50_ms"], "backbone_p99_ms": b["p99_ms"],
        "threads": {"backbone": threads}}
    if "sync" in modes:
        out["threads"]["sync"] = apply_threads(config.threads, background=False)
        out.update(_sync_pass(extractor, frames, replace(config, learn_in_background=False), progress))
    if "live" in modes:
        out["threads"]["live"] = apply_threads(config.threads, background=True)
        out.update(_live_pass(extractor, frames, replace(config, learn_in_background=True), progress))
        out["ratio"] = out["pipeline_fps"] / out["backbone_fps"]
    apply_threads(config.threads, background=False)
    return out


def _sync_pass(extractor: Any, frames: list[np.ndarray], config: Any, progress: bool) -> dict[str, Any]:
    """Score and admit every frame on this thread; timed once the window is full."""
    from streamad.stream.detector import StreamDetector

    det = StreamDetector(config, extractor=extractor)
    ms, stages, reseeds, ready = _time_pipeline(det, frames, config.window, progress, "sync")
    s = _summary(np.asarray(ms))
    return {"sync_fps": s["fps"], "sync_p50_ms": s["p50_ms"], "sync_p99_ms": s["p99_ms"], "sync_max_ms": s["max_ms"],
            "sync_stage_ms": {k: v / len(ms) for k, v in stages.items()}, "sync_frames_ready": ready,
            "sync_frames_timed": len(ms), "reseeds": len(reseeds),
            "reseed_frame_ms_median": float(np.median(reseeds)) if reseeds else None,
            "nominal_patches_at_end": det.nominal_count}


def _live_pass(extractor: Any, frames: list[np.ndarray], config: Any, progress: bool) -> dict[str, Any]:
    """Fill the window (untimed), then run the frames through the live loop (``run_watch``, the reader
    describing one frame ahead) while the learner admits in the background. A frame's latency runs from
    its read to its result."""
    from streamad.adapters.sources import ArraySource
    from streamad.runtime.live import run_watch
    from streamad.stream.detector import StreamDetector

    window = config.window
    with StreamDetector(config, extractor=extractor) as det:
        # with a long-term memory, learn every frame once first (untimed) so that the memory holds what
        # the frames that left the window trusted, as in a running stream; else fill the window
        for f in frames if config.memory.enabled else frames[:window]:
            det.learn_one(f)
        memory = det.memory
        timed = frames[window:]
        read_at = np.zeros(len(timed))
        ms: list[float] = []
        stages: dict[str, float] = {}
        ready = 0
        bar = tqdm(total=len(timed), desc="live", unit="frame", disable=not progress, leave=False)

        def on_read(i: int) -> None:
            read_at[i] = time.perf_counter()

        def on_result(frame: Any, r: Any) -> None:
            nonlocal ready
            ms.append((time.perf_counter() - read_at[frame.index]) * 1e3)
            ready += r.ready
            for k, v in r.timings.items():
                stages[k] = stages.get(k, 0.0) + v
            bar.update()

        before = det.learner_stats().get("admitted", 0)
        t_start = time.perf_counter()
        timing = _TimedHalves(det)
        summary = run_watch(ArraySource(timed, name="bench", on_read=on_read), timing, on_result=on_result,
                            pipeline=True)
        elapsed = time.perf_counter() - t_start
        bar.close()
        learner = det.learner_stats()
    if summary.bad_frames:
        raise UserError(f"{summary.bad_frames} of the timed frames were refused by the detector: use images of "
                        "one size and kind")
    s = _summary(np.asarray(ms))
    w = _summary(np.asarray(timing.frame_ms()))
    admitted = int(learner.get("admitted", 0)) - int(before)
    return {"pipeline_fps": len(ms) / elapsed, "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"],
            "work_p50_ms": w["p50_ms"], "work_p99_ms": w["p99_ms"],
            "stage_ms": {k: v / len(ms) for k, v in stages.items()}, "timed_frames_ready": ready,
            "frames_timed": len(ms), "admissions_per_s": admitted / elapsed, "admissions": admitted,
            "learner_stage_ms": learner.get("stage_ms", {}), "learner_busy": learner.get("busy", 0.0),
            **({"memory_patches_at_start": 0 if memory is None else len(memory)} if config.memory.enabled else {})}


class _TimedHalves:
    """A describing detector, each call of its two halves timed: ``frame_ms()`` is, per frame, ``describe``
    plus ``process_described`` in milliseconds (the detector's own time on the frame, without the wait for
    the other thread). The reader calls ``describe`` in the frames' order and the loop ``process_described``
    in the same order, so the two lists pair up."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self._described: list[float] = []
        self._scored: list[float] = []

    def describe(self, frame: np.ndarray, timestamp: float | None = None) -> Any:
        t0 = time.perf_counter()
        out = self.detector.describe(frame, timestamp)
        self._described.append((time.perf_counter() - t0) * 1e3)
        return out

    def process_described(self, described: Any) -> Any:
        t0 = time.perf_counter()
        out = self.detector.process_described(described)
        self._scored.append((time.perf_counter() - t0) * 1e3)
        return out

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> Any:
        return self.process_described(self.describe(frame, timestamp))

    def frame_ms(self) -> list[float]:
        return [a + b for a, b in zip(self._described, self._scored)]


def _time_backbone(extractor: Any, frames: list[np.ndarray], progress: bool) -> list[float]:
    """Milliseconds of the feature extractor on each frame."""
    ms = []
    for f in tqdm(frames, desc="backbone", unit="frame", disable=not progress, leave=False):
        t0 = time.perf_counter()
        extractor([f])
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def _time_pipeline(det: Any, frames: list[np.ndarray], window: int, progress: bool,
                   label: str = "pipeline") -> tuple[list[float], dict[str, float], list[float], int]:
    """``det.process`` on every frame, timed after the first ``window``: (milliseconds per timed frame,
    summed stage milliseconds, milliseconds of the frames that promoted a seed, timed frames ready)."""
    pipeline_ms: list[float] = []
    stages: dict[str, float] = {}
    reseeds: list[float] = []
    ready = 0
    for i, f in enumerate(tqdm(frames, desc=label, unit="frame", disable=not progress, leave=False)):
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
    lines = [f"device {r['device']}, backbone {r['backbone']}, input {h}x{w}, window {r['window']}, {r['frames']} frames; "
             f"index {ix['kind']} (nprobe {ix['nprobe']}, exact below {ix['exact_below']:,}); blur sigma "
             f"{r['blur_sigma']:g}, trimming k {r['k_sigma']:g}; threads "
             + ", ".join(f"{mode}: torch {t['torch']} blas {t['blas']} associate {t['associate']}"
                         for mode, t in r["threads"].items()),
             f"backbone only : {r['backbone_fps']:7.2f} fps  (p50 {r['backbone_p50_ms']:.1f} ms, "
             f"p99 {r['backbone_p99_ms']:.1f} ms)"]
    if "pipeline_fps" in r:
        lines += [f"live          : {r['pipeline_fps']:7.2f} fps  latency (read to result) p50 {r['p50_ms']:.1f} ms, p99 "
                  f"{r['p99_ms']:.1f} ms (p99/p50 {r['p99_ms'] / r['p50_ms']:.2f}); learner {r['admissions_per_s']:.2f} "
                  f"admissions/s ({r['admissions']} in the timed run, busy {100 * r['learner_busy']:.0f} %)",
                  f"live detector time a frame (describe + score, without the wait between them): p50 "
                  f"{r['work_p50_ms']:.1f} ms, p99 {r['work_p99_ms']:.1f} ms (p99/p50 "
                  f"{r['work_p99_ms'] / r['work_p50_ms']:.2f})",
                  f"ratio live / backbone: {r['ratio']:.2f}",
                  "live scorer stage ms (mean per frame): " + _stages(r["stage_ms"]),
                  "learner stage ms (mean per admission): " + _stages(r["learner_stage_ms"])]
        if "memory_patches_at_start" in r:
            lines.append(f"long-term memory: {r['memory_patches_at_start']:,} patches when the live pass started "
                         "(every frame learned once before)")
    if "sync_fps" in r:
        lines += [f"synchronous   : {r['sync_fps']:7.2f} fps  (p50 {r['sync_p50_ms']:.1f} ms, p99 {r['sync_p99_ms']:.1f} "
                  f"ms, max {r['sync_max_ms']:.1f} ms), every frame admitted; nominal patches at the end "
                  f"{r['nominal_patches_at_end']:,}",
                  "sync stage ms (mean per frame): " + _stages(r["sync_stage_ms"])]
    return lines


def _stages(stages: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) or "-"


def reseed_line(result: dict[str, Any]) -> str | None:
    """How many timed synchronous frames promoted a seed and what such a frame cost, or None if none did."""
    if not result.get("reseeds"):
        return None
    return (f"reseeds (synchronous): {result['reseeds']} frames, median {result['reseed_frame_ms_median']:.1f} ms per "
            "such frame")


def not_ready_warning(result: dict[str, Any]) -> str | None:
    """A warning when some timed frames skipped scoring (no nominal patches yet), else None."""
    for ready_key, timed_key in (("timed_frames_ready", "frames_timed"), ("sync_frames_ready", "sync_frames_timed")):
        if ready_key in result and result[ready_key] < result[timed_key]:
            return (f"warning: the detector was ready on only {result[ready_key]} of {result[timed_key]} timed "
                    "frames (no nominal patches yet), so those frames skipped scoring: use more frames, a larger "
                    "window or real images")
    return None
