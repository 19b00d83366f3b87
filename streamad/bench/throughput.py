"""Frames per second of the backbone alone and of the full pipeline, on the same frames in memory.

The feature extractor alone, one frame at a time (the physical floor of the pipeline), then the
detector in the live loop as ``watch`` runs it (:func:`~streamad.runtime.live.run_watch`: a reader thread
computes each frame's features one frame ahead while the loop scores, decides and, in the ``sync``
pass, admits the frame before). The pipeline is timed once the window is full (steady state).

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
                       modes: tuple[str, ...] = ("live", "sync"), pipeline: bool = True) -> dict[str, Any]:
    """Time the backbone alone, then the pipeline in each of ``modes`` on the same ``frames`` (more than
    ``config.window`` of them), after ``warmup`` untimed backbone calls.

    - ``live``: the window is filled first (untimed), then the frames go through the live loop
      (:func:`~streamad.runtime.live.run_watch`, its reader describing the next frame while the current one
      is scored) while the background learner admits the newest due frame (``learn_in_background``): the
      scoring rate (``pipeline_fps``), the latency from a frame's read to its result (``p50_ms``,
      ``p99_ms``), the detector's own time a frame (``work_p50_ms``, ``work_p99_ms``: ``describe`` plus
      ``process_described``, what ``process`` took when one thread did both) and the learner's
      ``admissions_per_s``;
    - ``sync``: every frame scored and admitted on the loop's thread (``watch --learning sync``: the
      reader describes the next frame meanwhile), timed once the window is full: ``sync_fps``, its
      latency and the detector's own time a frame (``sync_work_p50_ms``, ``sync_work_p99_ms``).

    Each pass runs under the thread budget of its mode (:mod:`streamad.stream.threads`). ``pipeline=False``
    runs the loop on one thread (``run_watch(..., pipeline=False)``: the lever's measure,
    ``python -m streamad.bench.scripts.pipeline_probe``).
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
        out.update(_sync_pass(extractor, frames, replace(config, learn_in_background=False), progress, pipeline))
    if "live" in modes:
        out["threads"]["live"] = apply_threads(config.threads, background=True)
        out.update(_live_pass(extractor, frames, replace(config, learn_in_background=True), progress, pipeline))
        out["ratio"] = out["pipeline_fps"] / out["backbone_fps"]
    apply_threads(config.threads, background=False)
    return out


def _sync_pass(extractor: Any, frames: list[np.ndarray], config: Any, progress: bool,
               pipeline: bool = True) -> dict[str, Any]:
    """After :func:`_learn_first` (as the live pass), the frames after the first window through the live loop,
    each scored and admitted on the loop's thread (``watch --learning sync``: the reader describes the next
    frame meanwhile)."""
    from streamad.stream.detector import StreamDetector

    det = StreamDetector(config, extractor=extractor)
    timed = _learn_first(det, frames, config)
    memory_at_start = None if det.memory is None else len(det.memory)
    run = _LoopRun(det, len(timed), progress=progress, label="sync")
    run.go(timed, pipeline)
    s, w = _summary(np.asarray(run.latency_ms)), _summary(np.asarray(run.work_ms()))
    reseeds = run.reseed_ms
    return {"sync_fps": run.fps(), "sync_p50_ms": s["p50_ms"], "sync_p99_ms": s["p99_ms"], "sync_max_ms": s["max_ms"],
            "sync_work_p50_ms": w["p50_ms"], "sync_work_p99_ms": w["p99_ms"],
            "sync_stage_ms": run.stage_means(), "sync_frames_ready": run.ready,
            "sync_frames_timed": len(run.latency_ms), "reseeds": len(reseeds),
            "reseed_frame_ms_median": float(np.median(reseeds)) if reseeds else None,
            "nominal_patches_at_end": det.nominal_count,
            **({"sync_memory_patches_at_start": memory_at_start} if memory_at_start is not None else {})}


def _live_pass(extractor: Any, frames: list[np.ndarray], config: Any, progress: bool,
               pipeline: bool = True) -> dict[str, Any]:
    """After :func:`_learn_first`, the frames after the first window through the live loop (``run_watch``,
    the reader describing one frame ahead) while the learner admits in the background. A frame's latency
    runs from its read to its result."""
    from streamad.stream.detector import StreamDetector

    with StreamDetector(config, extractor=extractor) as det:
        timed = _learn_first(det, frames, config)
        memory = det.memory
        run = _LoopRun(det, len(timed), progress=progress, label="live")
        before = det.learner_stats().get("admitted", 0)
        run.go(timed, pipeline)
        learner = det.learner_stats()
    s, w = _summary(np.asarray(run.latency_ms)), _summary(np.asarray(run.work_ms()))
    elapsed = run.elapsed()
    admitted = int(learner.get("admitted", 0)) - int(before)
    return {"pipeline_fps": run.fps(), "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"],
            "work_p50_ms": w["p50_ms"], "work_p99_ms": w["p99_ms"],
            "stage_ms": run.stage_means(), "stage_p50_p99_ms": run.stage_tails(),
            "score_time_vs_score_r": run.score_time_correlation(), "timed_frames_ready": run.ready,
            "frames_timed": len(run.latency_ms), "admissions_per_s": admitted / elapsed, "admissions": admitted,
            "learner_stage_ms": learner.get("stage_ms", {}), "learner_busy": learner.get("busy", 0.0),
            "learner_cpu": learner.get("cpu", 0.0),
            **({"memory_patches_at_start": 0 if memory is None else len(memory)} if config.memory.enabled else {})}


def _learn_first(det: Any, frames: list[np.ndarray], config: Any) -> list[np.ndarray]:
    """Learn untimed what a running stream would hold, and return the frames to time (those after the first
    window): with a long-term memory every frame once, so that the memory holds what the frames that left
    the window trusted (a memory filling from empty retrains its index at every doubling: a stream's first
    minutes, not its running state); without one, the first window."""
    for f in frames if config.memory.enabled else frames[:config.window]:
        det.learn_one(f)
    return frames[config.window:]


class _LoopRun:
    """Frames in memory through the live loop (:func:`~streamad.runtime.live.run_watch`, the reader describing
    one frame ahead unless ``go`` is told ``pipeline=False``), each one timed: its latency from its read to its
    result (``latency_ms``), the detector's own time on it (``work_ms()``: ``describe`` plus
    ``process_described``, what ``process`` took when one thread did both, without the wait between the
    threads), its stage timings, and the latency of those that promoted a seed (``reseed_ms``). The rate
    counts the frames from the start to the last result."""

    def __init__(self, detector: Any, n: int, *, progress: bool, label: str) -> None:
        self.detector = detector
        self.read_at = np.zeros(n)
        self.latency_ms: list[float] = []
        self.reseed_ms: list[float] = []
        self.stages: dict[str, list[float]] = {}
        self.score_pairs: list[tuple[float, float]] = []  # (score stage ms, image score) of each ready frame
        self.ready = 0
        self._described: list[float] = []
        self._scored: list[float] = []
        self._start = self._end = 0.0
        self._promotion = self._last_promotion()
        self._bar = tqdm(total=n, desc=label, unit="frame", disable=not progress, leave=False)

    def go(self, frames: list[np.ndarray], pipeline: bool = True) -> None:
        from streamad.adapters.sources import ArraySource
        from streamad.runtime.live import run_watch

        self._start = time.perf_counter()
        summary = run_watch(ArraySource(frames, name="bench", on_read=self._on_read), self, on_result=self._on_result,
                            pipeline=pipeline)
        self._bar.close()
        if summary.bad_frames:
            raise UserError(f"{summary.bad_frames} frames were refused by the detector: use images of one size "
                            "and kind")

    # the loop's detector: the real one, each half timed (the reader calls describe in the frames' order and
    # the loop process_described in the same order, so the two lists pair up)
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

    def _on_read(self, i: int) -> None:
        self.read_at[i] = time.perf_counter()

    def _on_result(self, frame: Any, r: Any) -> None:
        now = time.perf_counter()
        self._bar.update()
        promotion = self._last_promotion()
        promoted, self._promotion = promotion != self._promotion, promotion
        self._end = now
        ms = (now - self.read_at[frame.index]) * 1e3
        self.latency_ms.append(ms)
        if promoted:
            self.reseed_ms.append(ms)
        self.ready += r.ready
        if r.ready and "score" in r.timings:
            self.score_pairs.append((float(r.timings["score"]), float(r.score)))
        for k, v in r.timings.items():
            self.stages.setdefault(k, []).append(v)

    def _last_promotion(self) -> Any:
        return self.detector.channels.schedule.last_promotion

    def work_ms(self) -> list[float]:
        return [a + b for a, b in zip(self._described, self._scored)]

    def elapsed(self) -> float:
        return max(1e-9, self._end - self._start)

    def fps(self) -> float:
        return len(self.latency_ms) / self.elapsed()

    def stage_means(self) -> dict[str, float]:
        return {k: sum(v) / max(1, len(self.latency_ms)) for k, v in self.stages.items()}

    def stage_tails(self) -> dict[str, tuple[float, float]]:
        """Each stage's (p50, p99) milliseconds over the frames that ran it."""
        return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 99))) for k, v in self.stages.items() if v}

    def score_time_correlation(self) -> float | None:
        """Pearson's r between a frame's score stage (ms) and its image score, over the ready frames: how much
        of the scoring's spread follows how anomalous the frames are (None: too few frames, or no spread)."""
        pairs = np.asarray(self.score_pairs, np.float64).reshape(-1, 2)
        times, scores = pairs[:, 0], pairs[:, 1]
        ok = np.isfinite(scores) & np.isfinite(times)
        if ok.sum() < 3 or np.std(times[ok]) == 0 or np.std(scores[ok]) == 0:
            return None
        return float(np.corrcoef(times[ok], scores[ok])[0, 1])


def _time_backbone(extractor: Any, frames: list[np.ndarray], progress: bool) -> list[float]:
    """Milliseconds of the feature extractor on each frame."""
    ms = []
    for f in tqdm(frames, desc="backbone", unit="frame", disable=not progress, leave=False):
        t0 = time.perf_counter()
        extractor([f])
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


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
                  f"admissions/s ({r['admissions']} in the timed run, busy {100 * r['learner_busy']:.0f} %, CPU "
                  f"{100 * r.get('learner_cpu', 0.0):.0f} % of a core)",
                  f"live detector time a frame (describe + score, without the wait between them): p50 "
                  f"{r['work_p50_ms']:.1f} ms, p99 {r['work_p99_ms']:.1f} ms (p99/p50 "
                  f"{r['work_p99_ms'] / r['work_p50_ms']:.2f})",
                  f"ratio live / backbone: {r['ratio']:.2f}",
                  "live scorer stage ms (mean per frame): " + _stages(r["stage_ms"]),
                  "live scorer stage ms p50 / p99: " + ", ".join(
                      f"{k} {a:.1f} / {b:.1f}" for k, (a, b) in r.get("stage_p50_p99_ms", {}).items()),
                  "learner stage ms (mean per admission): " + _stages(r["learner_stage_ms"])]
        if r.get("score_time_vs_score_r") is not None:
            lines.append(f"score stage time against the frame's score: correlation {r['score_time_vs_score_r']:.2f} "
                         "(a frame far from every nominal patch rules out less: docs/DESIGN.md section 4)")
        if "memory_patches_at_start" in r:
            lines.append(f"long-term memory: {r['memory_patches_at_start']:,} patches when the live pass started "
                         "(every frame learned once before)")
    if "sync_fps" in r:
        lines += [f"synchronous   : {r['sync_fps']:7.2f} fps  (p50 {r['sync_p50_ms']:.1f} ms, p99 {r['sync_p99_ms']:.1f} "
                  f"ms, max {r['sync_max_ms']:.1f} ms, read to result), every frame admitted; nominal patches at the "
                  f"end {r['nominal_patches_at_end']:,}",
                  f"sync detector time a frame (describe + score and admit): p50 {r['sync_work_p50_ms']:.1f} ms, "
                  f"p99 {r['sync_work_p99_ms']:.1f} ms",
                  "sync stage ms (mean per frame): " + _stages(r["sync_stage_ms"])]
        if "sync_memory_patches_at_start" in r:
            lines.append(f"long-term memory: {r['sync_memory_patches_at_start']:,} patches when the sync pass "
                         "started (every frame learned once before)")
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
