"""Evaluation on a labeled dataset the way the InReaCh paper measures (docs/DESIGN.md section 7).

Training images (plus ``corrupt`` anomalous test images, unlabeled) are fitted in a seeded shuffled
order; the whole test set is scored. Reports image AUROC, pixel AUROC, the nominal filter's precision
and recall on the training patches, the nominal set size and timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.core.channels import nominal_mask
from streamad.config import IndexConfig, InReachConfig, StreamConfig
from streamad.evaluation.datasets import load_dataset, patch_truth, read_image, read_mask, training_stream
from streamad.errors import UserError
from streamad.stream.detector import StreamDetector
from streamad.vision.features import PatchFeatureExtractor
from streamad.vision.heatmap import heatmap_from_patch_scores, image_score
from streamad.batch.inreach import InReaCh
from streamad.evaluation.metrics import auroc, filter_precision_recall, pixel_auroc
from streamad.index.hnsw import exact_knn
from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.vision.positional import best_rotation, rotate

METHODS = ("inreach", "patchcore", "spade", "pni")


def _read_all(samples: list, desc: str, progress: bool) -> list[np.ndarray]:
    return [read_image(s.path) for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False)]


def make_detector(method: str, config: InReachConfig, progress: bool) -> ImageAnomalyDetector:
    """An image-level detector for ``method`` on the configured backbone."""
    if method == "inreach":
        return InReaCh(config, progress=progress)
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    from streamad.batch.baselines import make_patch_model

    extractor = PatchFeatureExtractor(config.features)
    return ImageAnomalyDetector(make_patch_model(method, seed=config.seed), extractor, config.heatmap, progress)


def evaluate(data_dir: str, method: str = "inreach", corrupt: int = 0, seed: int = 0,
             config: InReachConfig | None = None, progress: bool = True,
             fit: Callable[[ImageAnomalyDetector, list[np.ndarray]], Any] | None = None) -> dict[str, Any]:
    """Fit ``method`` on the (corrupted) training set of ``data_dir`` and measure it on its test set."""
    config = config or InReachConfig(seed=seed)
    dataset = load_dataset(data_dir)
    order, added = training_stream(dataset, corrupt, seed)
    train_images = _read_all(order, "read train", progress)
    test_images = _read_all(list(dataset.test), "read test", progress)
    detector = make_detector(method, config, progress)
    size = detector.extractor.image_size

    start = time.perf_counter()
    if fit is None:
        detector.fit(train_images)
    else:
        fit(detector, train_images)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    prediction = detector.predict(test_images)
    predict_seconds = (time.perf_counter() - start) / len(test_images)

    labels = np.array([s.label for s in dataset.test])
    crop = config.features.center_crop
    masks = np.stack([read_mask(s, size, crop) for s in dataset.test])
    result: dict[str, Any] = {
        "dataset": data_dir,
        "method": method,
        "mode": "batch",
        "corrupt": corrupt,
        "seed": seed,
        "backbone": config.features.backbone,
        "train_images": len(order),
        "test_images": len(dataset.test),
        "image_auroc": auroc(prediction.scores, labels),
        "pixel_auroc": pixel_auroc(prediction.heatmaps, masks),
        "fit_seconds": fit_seconds,
        "predict_seconds_per_image": predict_seconds,
    }
    nominal = getattr(detector.model, "nominal_mask_", None)
    if nominal is not None:
        train_masks = np.stack([read_mask(s, size, crop) for s in order])
        if getattr(detector, "aligned_", False):
            angles = getattr(detector, "train_angles_", [0.0] * len(order))
            train_masks = np.stack([rotate(m.astype(np.uint8), a) > 0 for m, a in zip(train_masks, angles)])
        truth = patch_truth(train_masks, detector.grid)
        precision, recall = filter_precision_recall(nominal, truth)
        result.update(filter_precision=precision, filter_recall=recall, nominal_patches=int(nominal.sum()),
                      train_patches=int(nominal.size))
    else:
        result.update(filter_precision=None, filter_recall=None, nominal_patches=None)
    if isinstance(detector, InReaCh):
        result.update(uses_positions=detector.uses_positions_, aligned=detector.aligned_,
                      transpose_score=detector.transpose_score_)
    return result


# ---------------------------------------------------------------------------------------------------
# The same evaluation through the streaming engine (docs/DESIGN.md section 3).


@dataclass
class PreparedDescriptors:
    """Descriptors of the training stream and the test set, as batch InReaCh computes them.

    ``train`` (N, P, d) and ``test`` (M, P, d) are the extractor's output (positions not yet appended),
    after rotation alignment when the positional test chose it; ``train_angles``/``test_angles`` are
    those rotations (degrees, all 0 without alignment). The ``*_seconds`` are what producing them took
    (positional decision, training features, test rotation + features).
    """

    train: np.ndarray
    test: np.ndarray
    uses_positions: bool
    aligned: bool
    transpose_score: float | None
    train_angles: list[float]
    test_angles: list[float]
    positions_seconds: float
    train_features_seconds: float
    test_features_seconds: float
    cached: bool = False


def _cache_key(dataset: Any, order: list, config: InReachConfig) -> str:
    blob = json.dumps({"train": [s.path for s in order], "test": [s.path for s in dataset.test],
                       "root": os.path.realpath(dataset.root), "features": asdict(config.features),
                       "positional": asdict(config.positional)}, sort_keys=True, default=str)
    name = os.path.basename(os.path.normpath(dataset.root)) or "data"
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def prepare_descriptors(detector: InReaCh, dataset: Any, order: list, progress: bool = True,
                        cache: str | None = None) -> PreparedDescriptors:
    """Positional decision and descriptors exactly as ``InReaCh.fit`` / ``predict`` compute them.

    The positional test runs on the whole training stream, as batch fitting does; the detector is left
    with its decision (``uses_positions_``, ``aligned_``, reference image). With ``cache`` (a folder),
    descriptors and decision are saved there and reused by later runs on the same data and settings.
    """
    key = _cache_key(dataset, order, detector.config) if cache else ""
    if cache:
        meta_path = os.path.join(cache, key + ".json")
        if os.path.isfile(meta_path):
            with open(meta_path) as fh:
                meta = json.load(fh)
            train = np.load(os.path.join(cache, key + ".train.npy"), mmap_mode="r", allow_pickle=False)
            test = np.load(os.path.join(cache, key + ".test.npy"), mmap_mode="r", allow_pickle=False)
            detector.uses_positions_, detector.aligned_ = meta["uses_positions"], meta["aligned"]
            detector.transpose_score_ = meta["transpose_score"]
            if detector.aligned_:
                detector.train_angles_ = meta["train_angles"]
                detector._reference = read_image(order[0].path)
            return PreparedDescriptors(train=train, test=test, cached=True, **{
                k: meta[k] for k in ("uses_positions", "aligned", "transpose_score", "train_angles",
                                     "test_angles", "positions_seconds", "train_features_seconds",
                                     "test_features_seconds")})
    train_images = _read_all(order, "read train", progress)
    start = time.perf_counter()
    train_images = detector.decide_positions(train_images)
    positions_seconds = time.perf_counter() - start
    start = time.perf_counter()
    train = detector.descriptors(train_images, "fit features")
    train_features_seconds = time.perf_counter() - start
    train_angles = list(getattr(detector, "train_angles_", [0.0] * len(order))) if detector.aligned_ \
        else [0.0] * len(order)
    del train_images
    test_images = _read_all(list(dataset.test), "read test", progress)
    start = time.perf_counter()
    test_angles = [0.0] * len(test_images)
    if detector.aligned_ and detector._reference is not None:  # as InReaCh.predict does
        test_angles = [best_rotation(img, detector._reference) for img in test_images]
        test_images = [rotate(img, a) for img, a in zip(test_images, test_angles)]
    test = detector.descriptors(test_images, "predict features")
    test_features_seconds = time.perf_counter() - start
    prepared = PreparedDescriptors(train=train, test=test, uses_positions=detector.uses_positions_,
                                   aligned=detector.aligned_, transpose_score=detector.transpose_score_,
                                   train_angles=train_angles, test_angles=test_angles,
                                   positions_seconds=positions_seconds,
                                   train_features_seconds=train_features_seconds,
                                   test_features_seconds=test_features_seconds)
    if cache:
        os.makedirs(cache, exist_ok=True)
        np.save(os.path.join(cache, key + ".train.npy"), train)
        np.save(os.path.join(cache, key + ".test.npy"), test)
        meta = {k: getattr(prepared, k) for k in ("uses_positions", "aligned", "transpose_score", "train_angles",
                                                  "test_angles", "positions_seconds", "train_features_seconds",
                                                  "test_features_seconds")}
        with open(os.path.join(cache, key + ".json"), "w") as fh:
            json.dump(meta, fh)
    return prepared


def _heatmaps(patch_scores: np.ndarray, size: tuple[int, int], blur: float, angles: list[float]) -> np.ndarray:
    """Patch scores (M, H, W) to heatmaps at ``size`` as batch ``predict`` makes them (rotation undone)."""
    heat = np.stack([heatmap_from_patch_scores(p, size, blur) for p in patch_scores])
    if any(angles):
        heat = np.stack([rotate(h, -a) for h, a in zip(heat, angles)])
    return heat


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


def evaluate_stream(data_dir: str, window: int | None = None, corrupt: int = 0, seed: int = 0,
                    config: InReachConfig | None = None, progress: bool = True, check_batch: bool = False,
                    cache: str | None = None, index: IndexConfig | None = None,
                    exact_reference: bool = False) -> dict[str, Any]:
    """``evaluate`` through the streaming engine: the (corrupted) training stream replayed frame by frame
    in the order batch fitting uses (its first D frames are the seeds), the test set scored without
    learning. ``window`` None holds the whole training stream (no eviction: the batch algorithm's
    nominal set). ``check_batch`` also fits batch InReaCh on the same descriptors and compares;
    ``exact_reference`` also scores the test set by exact search against the engine's final nominal set
    (what the approximate index should give; costly: test patches x nominal patches distances).
    """
    config = config or InReachConfig(seed=seed)
    dataset = load_dataset(data_dir)
    order, _ = training_stream(dataset, corrupt, seed)
    n = len(order)
    ch = config.channels
    w = int(window) if window is not None else max(n, ch.seeds + 1, ch.min_span + 1)
    try:
        stream_config = StreamConfig(window=w, features=config.features, channels=ch, heatmap=config.heatmap,
                                     index=index or IndexConfig(), seed=config.seed)
    except ValueError as exc:
        raise UserError(f"--window: {exc}") from exc
    detector = InReaCh(config, progress=progress)
    prep = prepare_descriptors(detector, dataset, order, progress, cache)
    size = detector.extractor.image_size
    train = detector._with_positions(np.asarray(prep.train))
    test = detector._with_positions(np.asarray(prep.test))
    replay = replay_stream(train, test, stream_config, detector.extractor, progress)
    blur = config.heatmap.blur_sigma
    heat = _heatmaps(replay.patch_scores, size, blur, prep.test_angles)
    scores = image_score(heat)

    labels = np.array([s.label for s in dataset.test])
    crop = config.features.center_crop
    masks = np.stack([read_mask(s, size, crop) for s in dataset.test])
    train_masks = np.stack([read_mask(s, size, crop) for s in order])
    if prep.aligned:
        train_masks = np.stack([rotate(m.astype(np.uint8), a) > 0 for m, a in zip(train_masks, prep.train_angles)])
    truth = patch_truth(train_masks, detector.grid)
    frames = replay.window_frames
    precision, recall = filter_precision_recall(replay.nominal_mask, truth[frames])
    det = replay.detector
    n_test = len(dataset.test)
    result: dict[str, Any] = {
        "dataset": data_dir, "method": "inreach", "mode": "stream", "corrupt": corrupt, "seed": seed,
        "backbone": config.features.backbone, "train_images": n, "test_images": n_test,
        "image_auroc": auroc(scores, labels), "pixel_auroc": pixel_auroc(heat, masks),
        "filter_precision": precision, "filter_recall": recall,
        "nominal_patches": int(replay.nominal_mask.sum()), "train_patches": int(replay.nominal_mask.size),
        "fit_seconds": prep.positions_seconds + prep.train_features_seconds + replay.replay_seconds,
        "predict_seconds_per_image": (prep.test_features_seconds + replay.score_seconds) / n_test,
        "window": w, "window_holds_all": w >= n, "window_frames": len(frames),
        "seeds_at_end": det.channels.seeds, "promotions": replay.promotions,
        "flagged_training_frames": replay.flagged_training_frames,
        "replay_seconds": replay.replay_seconds, "replay_ms_per_frame": 1e3 * replay.replay_seconds / n,
        "replay_stage_ms_per_frame": replay.stage_ms,
        "descriptors_cached": prep.cached,
        "uses_positions": prep.uses_positions, "aligned": prep.aligned, "transpose_score": prep.transpose_score,
        "index": asdict(stream_config.index), "index_uses_graph": bool(det.index is not None and det.index.uses_graph),
    }
    if len(det.index) != result["nominal_patches"]:  # the index must hold exactly the nominal set
        raise RuntimeError(f"the nominal index holds {len(det.index)} vectors, the engine "
                           f"{result['nominal_patches']} nominal patches")
    if exact_reference:
        start = time.perf_counter()
        gallery = np.ascontiguousarray(train[frames][replay.nominal_mask])
        m, p, d = test.shape
        exact = np.empty(m * p, np.float32)
        flat = np.asarray(test).reshape(m * p, d)
        for s0 in range(0, m * p, 8192):
            exact[s0:s0 + 8192] = exact_knn(gallery, flat[s0:s0 + 8192], k=1)[0][:, 0]
        exact = exact.reshape(replay.patch_scores.shape)
        eheat = _heatmaps(exact, size, blur, prep.test_angles)
        diff = np.abs(exact - replay.patch_scores)
        result.update(exact_image_auroc=auroc(image_score(eheat), labels),
                      exact_pixel_auroc=pixel_auroc(eheat, masks),
                      exact_patch_scores_share_equal=float((diff <= 1e-5).mean()),
                      exact_patch_scores_max_abs_difference=float(diff.max()),
                      exact_seconds=time.perf_counter() - start)
    if not result["window_holds_all"]:  # the invariant on the final window: cheap (W frames, D seeds)
        result.update(_window_oracle(train, replay, config.channels))
    if check_batch:
        result.update(_check_against_batch(detector, train, test, replay, prep, labels, masks, truth, size, blur))
    return result


def _window_oracle(train: np.ndarray, replay: StreamReplay, channels: Any) -> dict[str, Any]:
    """The batch oracle on the engine's final window with the engine's seeds, against the engine's set."""
    frames, seeds = replay.window_frames, replay.detector.channels.seeds
    oracle = nominal_mask(np.asarray(train[frames]), [frames.index(s) for s in seeds], channels)
    return {"window_oracle_identical": bool((oracle == replay.nominal_mask).all()),
            "window_oracle_nominal_patches": int(oracle.sum())}


def _check_against_batch(detector: InReaCh, train: np.ndarray, test: np.ndarray, replay: StreamReplay,
                         prep: PreparedDescriptors, labels: np.ndarray, masks: np.ndarray, truth: np.ndarray,
                         size: tuple[int, int], blur: float) -> dict[str, Any]:
    """Batch InReaCh on the same descriptors, and the engine's invariant on its final window."""
    n = len(train)
    start = time.perf_counter()
    detector.model.fit_descriptors(train, detector.grid)  # positions already appended
    batch_fit = time.perf_counter() - start
    start = time.perf_counter()
    patch = detector.model.patch_scores(test).reshape(len(test), *detector.grid)
    heat = _heatmaps(patch, size, blur, prep.test_angles)
    batch_predict = time.perf_counter() - start
    batch_mask = detector.model.nominal_mask_
    frames, mask = replay.window_frames, replay.nominal_mask
    identical = frames == list(range(n)) and bool((mask == batch_mask).all())
    precision, recall = filter_precision_recall(batch_mask, truth)
    out: dict[str, Any] = {
        "batch_nominal_patches": int(batch_mask.sum()), "nominal_sets_identical": identical,
        "nominal_sets_symmetric_difference": _symmetric_difference(frames, mask, batch_mask),
        "batch_image_auroc": auroc(image_score(heat), labels),
        "batch_pixel_auroc": pixel_auroc(heat, masks),
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
