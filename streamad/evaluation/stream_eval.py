"""The batch evaluation through the streaming engine (docs/DESIGN.md sections 3 and 7).

The (corrupted) training stream is replayed frame by frame through a fresh
:class:`~streamad.stream.detector.StreamDetector` in the order batch fitting uses (its first D frames
are the seeds), then the test set is scored without learning. Descriptors and the positional decision
are batch InReaCh's (:func:`~streamad.evaluation.descriptor_cache.prepare_descriptors`), so with a
window that holds the whole stream the engine's nominal set must be the batch set, patch for patch;
with a smaller window it must be the batch oracle's on the final window and seeds. Both are checked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.batch.inreach import InReaCh
from streamad.config import ChannelConfig, IndexConfig, InReachConfig, MemoryConfig, StreamConfig
from streamad.core.channels import nominal_mask
from streamad.errors import UserError
from streamad.evaluation.batch_eval import (NO_TRAIN_MASKS, held_out_auroc, image_and_pixel_auroc, masks_of_test_set,
                                           training_truth)
from streamad.evaluation.datasets import load_dataset, training_positions, training_stream
from streamad.evaluation.descriptor_cache import PreparedDescriptors, prepare_descriptors
from streamad.evaluation.metrics import auroc, filter_precision_recall
from streamad.index.hnsw import exact_knn
from streamad.stream.detector import StreamDetector
from streamad.vision.heatmap import frame_scores, heatmap_from_patch_scores
from streamad.vision.positional import rotate


@dataclass
class StreamReplay:
    """What ``replay_stream`` leaves: the detector after the training replay and the test scores."""

    detector: StreamDetector
    window_frames: list[int]  # training-stream indices of the frames in the final window
    nominal_mask: np.ndarray  # (len(window_frames), P) bool, the engine's nominal set at the end of training
    patch_scores: np.ndarray  # (M, H, W) test patch scores
    replay_seconds: float
    score_seconds: float
    flagged_training_frames: int  # training frames the engine's own threshold called anomalous
    promotions: int
    stage_ms: dict[str, float]  # mean milliseconds per training frame of each engine stage


def replay_stream(train: np.ndarray, test: np.ndarray, config: StreamConfig, extractor: Any,
                  progress: bool = False) -> StreamReplay:
    """Feed ``train`` (N, P, d) to a fresh :class:`StreamDetector` frame by frame (``process``: score,
    then admit), then score every ``test`` frame without learning (``score_one``)."""
    det = StreamDetector(config, extractor=extractor)
    flagged = promotions = 0
    size = tuple(extractor.image_size)
    stages: dict[str, float] = {}
    start = time.perf_counter()
    for i in tqdm(range(len(train)), desc="replay", unit="frame", disable=not progress, leave=False):
        before = det.channels.schedule.last_promotion
        r = det.process_descriptors(np.asarray(train[i]), frame_shape=size)
        for k, v in r.timings.items():
            stages[k] = stages.get(k, 0.0) + v
        flagged += bool(r.anomalous)
        promotions += det.channels.schedule.last_promotion != before
        if not r.admitted:  # admit_every=1 and no interval: every frame is admitted, ids = stream positions
            raise RuntimeError(f"training frame {i} was not admitted")
    replay_seconds = time.perf_counter() - start
    mask = det.channels.nominal_mask()
    frames = det.channels.window_frames()
    if not det.ready:
        raise UserError("the stream produced no nominal patch: use more training images, fewer seeds, "
                        "a smaller --min-span or a larger --window")
    start = time.perf_counter()
    patch = np.empty((len(test),) + tuple(det.grid), np.float32)
    for j in tqdm(range(len(test)), desc="score test", unit="frame", disable=not progress, leave=False):
        patch[j] = det.score_descriptors(np.asarray(test[j]), frame_shape=size).patch_scores
    score_seconds = time.perf_counter() - start
    stage_ms = {k: v / len(train) for k, v in stages.items()}
    return StreamReplay(det, frames, mask, patch, replay_seconds, score_seconds, flagged, int(promotions), stage_ms)


@dataclass
class _Truth:
    """What a scoring of the test set is measured against, and how patch scores become heatmaps."""

    labels: np.ndarray  # (M,) test labels
    masks: np.ndarray | None  # (M, h, w) test masks; None for a data set with image labels only
    pixel_missing: str | None  # why masks is None
    center_crop: float
    train: np.ndarray | None  # (N, P) which training patches are truly nominal; None when unknown
    size: tuple[int, int]
    blur: float
    test_angles: list[float]
    score: tuple[str, int] = ("max", 10)  # the image score rule and its top_k
    in_training: np.ndarray | None = None  # (M,) bool: which test images are also in the training stream

    def heatmaps(self, patch_scores: np.ndarray) -> np.ndarray:
        """Patch scores (M, H, W) to heatmaps as batch ``predict`` makes them (rotation undone)."""
        heat = np.stack([heatmap_from_patch_scores(p, self.size, self.blur) for p in patch_scores])
        if any(self.test_angles):
            heat = np.stack([rotate(h, -a) for h, a in zip(heat, self.test_angles)])
        return heat

    def image_aurocs_by_score(self, patch_scores: np.ndarray, top_ks: tuple[int, ...] = (3, 10, 30)) -> dict[str, float]:
        """Image AUROC of the same test patch scores under each image score rule (``max``, ``top_mean`` at
        each k of ``top_ks``): what ``--image-score`` would give, from one replay."""
        heat = self.heatmaps(patch_scores)
        out = {"max": auroc(frame_scores(heat, patch_scores, "max"), self.labels)}
        for k in top_ks:
            out[f"top_mean k={k}"] = auroc(frame_scores(heat, patch_scores, "top_mean", k), self.labels)
        return out

    def aurocs(self, patch_scores: np.ndarray, prefix: str = "") -> dict[str, Any]:
        """``{prefix}image_auroc`` and ``{prefix}pixel_auroc`` of test patch scores (M, H, W), through their
        heatmaps (pixel None, with the reason in ``{prefix}pixel_auroc_unavailable``, when the masks do not
        allow it); image scores by the ``score`` rule (``HeatmapConfig.image_score``, top_k)."""
        heat = self.heatmaps(patch_scores)
        scores = frame_scores(heat, patch_scores, *self.score)
        out = image_and_pixel_auroc(scores, heat, self.labels, self.masks, self.pixel_missing, self.center_crop,
                                    prefix)
        if not prefix and self.in_training is not None:
            out.update(held_out_auroc(scores, heat, self.labels, self.masks, self.pixel_missing, self.center_crop,
                                      self.in_training))
        return out


def evaluate_stream(data_dir: str, window: int | None = None, corrupt: int = 0, seed: int = 0,
                    config: InReachConfig | None = None, progress: bool = True, check_batch: bool = False,
                    cache: str | None = None, index: IndexConfig | None = None,
                    exact_reference: bool = False, memory: MemoryConfig | None = None,
                    corrupt_list: list[str] | None = None) -> dict[str, Any]:
    """``evaluate`` through the streaming engine: the (corrupted) training stream replayed frame by frame
    in the order batch fitting uses (its first D frames are the seeds), the test set scored without
    learning. ``window`` None holds the whole training stream (no eviction: the batch algorithm's
    nominal set). ``check_batch`` also fits batch InReaCh on the same descriptors and compares;
    ``exact_reference`` also scores the test set by exact search against the engine's final nominal set
    (what the approximate index should give; costly: test patches x nominal patches distances).
    ``memory`` turns on the engine's long-term memory beyond the window (:class:`MemoryConfig`).
    """
    config = config or InReachConfig(seed=seed)
    dataset = load_dataset(data_dir)
    order, _ = training_stream(dataset, corrupt, seed, corrupt_list)
    stream_config = _stream_config(config, window, len(order), index, memory)
    detector = InReaCh(config, progress=progress)
    prep = prepare_descriptors(detector, dataset, order, progress, cache)
    train = detector.with_positions(np.asarray(prep.train))
    test = detector.with_positions(np.asarray(prep.test))
    replay = replay_stream(train, test, stream_config, detector.extractor, progress)

    size, crop = detector.extractor.image_size, config.features.center_crop
    masks, missing = masks_of_test_set(dataset, size, crop)
    truth = _Truth(labels=np.array([s.label for s in dataset.test]), masks=masks, pixel_missing=missing,
                   center_crop=crop, train=training_truth(order, size, crop, detector.grid, prep.train_angles if prep.aligned else None),
                   size=size, blur=config.heatmap.blur_sigma, test_angles=prep.test_angles,
                   score=(config.heatmap.image_score, config.heatmap.top_k),
                   in_training=training_positions(dataset.test, order) >= 0)
    result = {"dataset": data_dir, "method": "inreach", "mode": "stream", "corrupt": corrupt, "seed": seed,
              **_stream_result(config, stream_config, prep, replay, truth)}
    if exact_reference:
        result.update(_exact_reference(train, test, replay, truth))
    if not result["window_holds_all"]:  # the invariant on the final window: cheap (W frames, D seeds)
        result.update(_window_oracle(train, replay, config.channels))
    if check_batch:
        result.update(_check_against_batch(detector, train, test, replay, truth))
    return result


def _stream_config(config: InReachConfig, window: int | None, n: int, index: IndexConfig | None,
                   memory: MemoryConfig | None = None) -> StreamConfig:
    """The engine's configuration: ``window`` frames, or enough to hold the whole ``n``-frame stream (a
    larger window holds no more of it: it is cut to that, so that its memory is what the stream needs);
    the index is the streaming engine's default unless ``index`` is given."""
    ch = config.channels
    whole = max(n, ch.seeds + 1, ch.min_span + 1)
    w = min(int(window), whole) if window is not None else whole
    try:
        return StreamConfig(window=w, features=config.features, channels=ch, heatmap=config.heatmap,
                            index=index or StreamConfig().index, seed=config.seed,
                            memory=StreamConfig().memory if memory is None else memory)
    except ValueError as exc:
        raise UserError(f"--window: {exc}") from exc


def _stream_result(config: InReachConfig, stream_config: StreamConfig, prep: PreparedDescriptors,
                   replay: StreamReplay, truth: _Truth) -> dict[str, Any]:
    """The keys of a batch evaluation, measured on the replay, and what the replay itself did."""
    n, n_test, w = len(prep.train), len(truth.labels), stream_config.window
    frames, det = replay.window_frames, replay.detector
    aurocs = truth.aurocs(replay.patch_scores)
    aurocs["image_auroc_by_score"] = truth.image_aurocs_by_score(replay.patch_scores)
    precision, recall = (filter_precision_recall(replay.nominal_mask, truth.train[frames])
                         if truth.train is not None else (None, None))
    nominal = int(replay.nominal_mask.sum())
    if len(det.index) != nominal:  # the index must hold exactly the nominal set
        raise RuntimeError(f"the nominal index holds {len(det.index)} vectors, the engine {nominal} nominal patches")
    return {
        "backbone": config.features.backbone, "train_images": n, "test_images": n_test,
        **aurocs, "filter_precision": precision, "filter_recall": recall,
        **({} if truth.train is not None else {"filter_unavailable": NO_TRAIN_MASKS}),
        "nominal_patches": nominal, "train_patches": int(replay.nominal_mask.size),
        "fit_seconds": prep.positions_seconds + prep.train_features_seconds + replay.replay_seconds,
        "predict_seconds_per_image": (prep.test_features_seconds + replay.score_seconds) / n_test,
        "window": w, "window_holds_all": w >= n, "window_frames": len(frames),
        "seeds_at_end": det.channels.seeds, "promotions": replay.promotions,
        "flagged_training_frames": replay.flagged_training_frames,
        "replay_seconds": replay.replay_seconds, "replay_ms_per_frame": 1e3 * replay.replay_seconds / n,
        "replay_stage_ms_per_frame": replay.stage_ms,
        "descriptors_cached": prep.cached,
        "uses_positions": prep.uses_positions, "aligned": prep.aligned, "transpose_score": prep.transpose_score,
        "index": asdict(stream_config.index), "index_uses_graph": bool(getattr(det.index, "uses_graph", False)),
        "index_kind": stream_config.index.kind, "index_lists": bool(getattr(det.index, "trained", False)),
        "image_score": stream_config.heatmap.image_score, "memory": asdict(stream_config.memory),
        **_memory_result(det),
    }


def _memory_result(det: StreamDetector) -> dict[str, Any]:
    """What the long-term memory holds at the end (nothing without one)."""
    mem = det.memory
    if mem is None:
        return {}
    return {f"memory_{k}": v for k, v in mem.summary().items()}


def _exact_reference(train: np.ndarray, test: np.ndarray, replay: StreamReplay, truth: _Truth) -> dict[str, Any]:
    """The test set scored by exact search against the engine's final nominal set."""
    start = time.perf_counter()
    gallery = np.ascontiguousarray(train[replay.window_frames][replay.nominal_mask])
    m, p, d = test.shape
    exact = np.empty(m * p, np.float32)
    flat = np.asarray(test).reshape(m * p, d)
    for s0 in range(0, m * p, 8192):
        exact[s0:s0 + 8192] = exact_knn(gallery, flat[s0:s0 + 8192], k=1)[0][:, 0]
    exact = exact.reshape(replay.patch_scores.shape)
    aurocs = truth.aurocs(exact, prefix="exact_")
    diff = np.abs(exact - replay.patch_scores)
    return {**aurocs,
            "exact_patch_scores_share_equal": float((diff <= 1e-5).mean()),
            "exact_patch_scores_max_abs_difference": float(diff.max()),
            "exact_seconds": time.perf_counter() - start}


def _window_oracle(train: np.ndarray, replay: StreamReplay, channels: ChannelConfig) -> dict[str, Any]:
    """The batch oracle on the engine's final window with the engine's seeds, against the engine's set."""
    frames, seeds = replay.window_frames, replay.detector.channels.seeds
    oracle = nominal_mask(np.asarray(train[frames]), [frames.index(s) for s in seeds], channels)
    return {"window_oracle_identical": bool((oracle == replay.nominal_mask).all()),
            "window_oracle_nominal_patches": int(oracle.sum())}


def _check_against_batch(detector: InReaCh, train: np.ndarray, test: np.ndarray, replay: StreamReplay,
                         truth: _Truth) -> dict[str, Any]:
    """Batch InReaCh on the same descriptors (positions already appended), and the engine's invariant on
    its final window."""
    n = len(train)
    start = time.perf_counter()
    detector.model.fit_descriptors(train, detector.grid)
    batch_fit = time.perf_counter() - start
    start = time.perf_counter()
    patch = detector.model.patch_scores(test).reshape(len(test), *detector.grid)
    aurocs = truth.aurocs(patch, prefix="batch_")
    batch_predict = time.perf_counter() - start
    batch_mask = detector.model.nominal_mask_
    frames, mask = replay.window_frames, replay.nominal_mask
    identical = frames == list(range(n)) and bool((mask == batch_mask).all())
    precision, recall = (filter_precision_recall(batch_mask, truth.train) if truth.train is not None
                         else (None, None))
    out: dict[str, Any] = {
        "batch_nominal_patches": int(batch_mask.sum()), "nominal_sets_identical": identical,
        "nominal_sets_symmetric_difference": _symmetric_difference(frames, mask, batch_mask),
        **aurocs,
        "batch_filter_precision": precision, "batch_filter_recall": recall,
        # With identical nominal sets, score differences come only from the two indexes' approximate search.
        "patch_scores_max_abs_difference": float(np.abs(patch - replay.patch_scores).max()),
        "patch_scores_share_equal": float((np.abs(patch - replay.patch_scores) <= 1e-5).mean()),
        "batch_fit_seconds_on_descriptors": batch_fit,
        "batch_predict_seconds_per_image_on_descriptors": batch_predict / len(test),
    }
    seeds = replay.detector.channels.seeds
    first = list(range(min(detector.config.channels.seeds, n - 1)))
    if frames == list(range(n)) and seeds == first:
        # The window is the whole stream with the batch seeds: the oracle on it is the batch fit above.
        out.update(window_oracle_identical=identical, window_oracle_nominal_patches=int(batch_mask.sum()))
    return out


def _symmetric_difference(frames: list[int], mask: np.ndarray, batch_mask: np.ndarray) -> int:
    """How many (frame, patch) pairs are nominal in exactly one of the two sets."""
    full = np.zeros_like(batch_mask)
    full[frames] = mask
    return int((full != batch_mask).sum())
