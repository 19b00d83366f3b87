"""Batch evaluation on a labeled dataset the way the InReaCh paper measures (docs/DESIGN.md section 7).

Training images (plus ``corrupt`` anomalous test images, unlabeled) are fitted in a seeded shuffled
order; the whole test set is scored. Reports image AUROC, pixel AUROC, the nominal filter's precision
and recall on the training patches, the nominal set size and timings. The same evaluation through the
streaming engine is :func:`streamad.evaluation.stream_eval.evaluate_stream`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.batch.inreach import InReaCh
from streamad.config import HeatmapConfig, InReachConfig
from streamad.errors import UserError
from streamad.evaluation.datasets import (Dataset, Sample, load_dataset, patch_truth, read_images, read_mask,
                                         training_positions, training_stream)
from streamad.evaluation.metrics import auroc, filter_precision_recall, pixel_auroc_if_labelled
from streamad.vision.features import PatchFeatureExtractor
from streamad.vision.positional import rotate

METHODS = ("inreach", "patchcore", "spade", "pni")


def make_detector(method: str, config: InReachConfig, progress: bool) -> ImageAnomalyDetector:
    """An image-level detector for ``method`` on the configured backbone."""
    if method == "inreach":
        return InReaCh(config, progress=progress)
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    from streamad.batch.baselines import make_patch_model

    extractor = PatchFeatureExtractor(config.features)
    return ImageAnomalyDetector(make_patch_model(method, seed=config.seed), extractor, baseline_heatmap(config),
                                progress)


def baseline_heatmap(config: InReachConfig) -> HeatmapConfig:
    """A baseline's heatmap settings: its paper's (blur sigma 4, its own image score or the heatmap
    maximum): ``--image-score`` and ``--blur`` are InReaCh's levers (``config`` is InReaCh's).

        >>> baseline_heatmap(InReachConfig()).blur_sigma, InReachConfig().heatmap.blur_sigma
        (4.0, 8.0)
    """
    return replace(config.heatmap, image_score="max", blur_sigma=HeatmapConfig().blur_sigma)


def scored_area(center_crop: float) -> str:
    """Where the heatmaps (and so the masks) are compared, in words.

        >>> scored_area(0.875), scored_area(1.0)
        ('the 0.875 centre crop', 'the image')
    """
    return "the image" if center_crop >= 1.0 else f"the {center_crop:g} centre crop"


def masks_of_test_set(dataset: Dataset, size: tuple[int, int], center_crop: float) -> tuple[np.ndarray | None, str | None]:
    """The test set's masks (M, h, w) as the images are cropped, or (None, why pixel labels are missing)."""
    missing = dataset.pixel_labels_missing()
    if missing:
        return None, missing
    return np.stack([read_mask(s, size, center_crop) for s in dataset.test]), None


def image_and_pixel_auroc(scores: np.ndarray, heatmaps: np.ndarray, labels: np.ndarray, masks: np.ndarray | None,
                          missing: str | None, center_crop: float, prefix: str = "") -> dict[str, Any]:
    """``{prefix}image_auroc``, ``{prefix}pixel_auroc`` (None when the labels do not allow it) and, then,
    ``{prefix}pixel_auroc_unavailable``: the reason."""
    pixel, why = (None, missing) if masks is None else pixel_auroc_if_labelled(heatmaps, masks, None,
                                                                                 scored_area(center_crop))
    out: dict[str, Any] = {f"{prefix}image_auroc": auroc(scores, labels), f"{prefix}pixel_auroc": pixel}
    if why:
        out[f"{prefix}pixel_auroc_unavailable"] = why
    return out


def training_truth(order: Sequence[Sample], size: tuple[int, int], center_crop: float, grid: tuple[int, int],
                   angles: Sequence[float] | None = None) -> np.ndarray | None:
    """(N, P) bool: which training patches are truly nominal (no anomalous pixel in their cell), with the
    masks resized and cropped as the images are (to ``size``) and rotated by ``angles`` (degrees) when given;
    None when an anomalous training image has no mask (its patches' truth is unknown)."""
    if any(s.label and s.mask_path is None for s in order):
        return None
    masks = np.stack([read_mask(s, size, center_crop) for s in order])
    if angles is not None:
        masks = np.stack([rotate(m.astype(np.uint8), a) > 0 for m, a in zip(masks, angles)])
    return patch_truth(masks, grid)


NO_TRAIN_MASKS = "the anomalous training images (--corrupt) have no masks"


def held_out_auroc(scores: np.ndarray, heatmaps: np.ndarray, labels: np.ndarray, masks: np.ndarray | None,
                   missing: str | None, center_crop: float, in_training: np.ndarray) -> dict[str, Any]:
    """Image and pixel AUROC on the test images that are *not* also training images (``held_out_*``;
    empty when none is in training). A defect patch the nominal filter lets in is matched by itself
    when its own image is scored, so this split shows what the corruption costs through that alone.

        >>> labels = np.array([0, 0, 1, 1]); heat = np.zeros((4, 2, 2), np.float32)
        >>> r = held_out_auroc(np.array([0.1, 0.2, 0.9, 0.0]), heat, labels, None, "no masks", 1.0,
        ...                    np.array([False, False, False, True]))
        >>> r["held_out_test_images"], r["held_out_image_auroc"]
        (3, 1.0)
        >>> held_out_auroc(np.zeros(4), heat, labels, None, "no masks", 1.0, np.array([0, 0, 1, 1], bool))
        {'held_out_test_images': 2, 'held_out_image_auroc': None, 'held_out_pixel_auroc': None, \
'held_out_unavailable': 'every defective test image is also a training image'}
    """
    in_training = np.asarray(in_training, bool)
    if not in_training.any():
        return {}
    keep = ~in_training
    out: dict[str, Any] = {"held_out_test_images": int(keep.sum())}
    kept = np.asarray(labels)[keep]
    if not kept.any() or kept.all():
        why = ("every defective test image is also a training image" if not kept.any()
               else "every good test image is also a training image")
        return {**out, "held_out_image_auroc": None, "held_out_pixel_auroc": None, "held_out_unavailable": why}
    return {**out, **image_and_pixel_auroc(scores[keep], heatmaps[keep], kept,
                                           None if masks is None else masks[keep], missing, center_crop,
                                           prefix="held_out_")}


def filter_quality(nominal: np.ndarray | None, truth: Callable[[], np.ndarray | None]) -> dict[str, Any]:
    """Precision and recall of a nominal filter (``nominal`` (N, P) bool, None for a method without one)
    against ``truth()`` (None when unknown: then precision and recall are None, with the reason), and the
    set sizes."""
    if nominal is None:
        return {"filter_precision": None, "filter_recall": None, "nominal_patches": None}
    known = truth()
    out: dict[str, Any] = {"nominal_patches": int(nominal.sum()), "train_patches": int(nominal.size)}
    if known is None:
        return {"filter_precision": None, "filter_recall": None, "filter_unavailable": NO_TRAIN_MASKS, **out}
    precision, recall = filter_precision_recall(nominal, known)
    return {"filter_precision": precision, "filter_recall": recall, **out}


def evaluate(data_dir: str, method: str = "inreach", corrupt: int = 0, seed: int = 0,
             config: InReachConfig | None = None, progress: bool = True,
             fit: Callable[[ImageAnomalyDetector, list[np.ndarray]], Any] | None = None,
             corrupt_list: list[str] | None = None, leave_one_out: bool = False) -> dict[str, Any]:
    """Fit ``method`` on the (corrupted) training set of ``data_dir`` and measure it on its test set
    (``corrupt_list``: the corrupting test images are the first ``corrupt`` of that list, as
    :func:`~streamad.evaluation.datasets.training_stream` says; ``leave_one_out``: InReaCh scores the test
    images that are also training images against the other training images, ``InReaCh.predict(...,
    leave_out=...)``)."""
    config = config or InReachConfig(seed=seed)
    dataset = load_dataset(data_dir)
    order, added = training_stream(dataset, corrupt, seed, corrupt_list)
    train_images = read_images(order, "read train", progress)
    test_images = read_images(list(dataset.test), "read test", progress)
    detector = make_detector(method, config, progress)

    start = time.perf_counter()
    if fit is None:
        detector.fit(train_images)
    else:
        fit(detector, train_images)
    fit_seconds = time.perf_counter() - start
    if leave_one_out and not isinstance(detector, InReaCh):
        raise UserError(f"leave-one-out scoring is InReaCh's (InReaCh.predict(..., leave_out=...)), not {method}'s")
    start = time.perf_counter()
    positions = training_positions(dataset.test, order)
    if leave_one_out:
        prediction = detector.predict(test_images, leave_out=positions)
    else:
        prediction = detector.predict(test_images)
    predict_seconds = (time.perf_counter() - start) / len(test_images)

    size, crop = detector.extractor.image_size, config.features.center_crop
    labels = np.array([s.label for s in dataset.test])
    masks, missing = masks_of_test_set(dataset, size, crop)
    result: dict[str, Any] = {
        "dataset": data_dir, "method": method, "mode": "batch", "corrupt": corrupt, "seed": seed,
        "corrupt_defective": sum(s.label for s in added), "corrupt_from_list": corrupt_list is not None,
        "leave_one_out": leave_one_out,
        "backbone": config.features.backbone, "train_images": len(order), "test_images": len(dataset.test),
        **image_and_pixel_auroc(prediction.scores, prediction.heatmaps, labels, masks, missing, crop),
        "fit_seconds": fit_seconds, "predict_seconds_per_image": predict_seconds,
    }
    result.update(held_out_auroc(prediction.scores, prediction.heatmaps, labels, masks, missing, crop,
                                 positions >= 0))
    inreach = isinstance(detector, InReaCh)
    angles = detector.train_angles_ if inreach and detector.aligned_ else None
    result.update(filter_quality(getattr(detector.model, "nominal_mask_", None),
                                 lambda: training_truth(order, size, crop, detector.grid, angles)))
    if inreach:
        result.update(uses_positions=detector.uses_positions_, aligned=detector.aligned_,
                      transpose_score=detector.transpose_score_)
    return result
