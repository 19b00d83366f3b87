"""Batch evaluation on a labeled dataset the way the InReaCh paper measures (docs/DESIGN.md section 7).

Training images (plus ``corrupt`` anomalous test images, unlabeled) are fitted in a seeded shuffled
order; the whole test set is scored. Reports image AUROC, pixel AUROC, the nominal filter's precision
and recall on the training patches, the nominal set size and timings. The same evaluation through the
streaming engine is :func:`streamad.evaluation.stream_eval.evaluate_stream`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.batch.inreach import InReaCh
from streamad.config import InReachConfig
from streamad.errors import UserError
from streamad.evaluation.datasets import Sample, load_dataset, patch_truth, read_images, read_mask, training_stream
from streamad.evaluation.metrics import auroc, filter_precision_recall, pixel_auroc
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
    return ImageAnomalyDetector(make_patch_model(method, seed=config.seed), extractor, config.heatmap, progress)


def training_truth(order: Sequence[Sample], size: tuple[int, int], center_crop: float, grid: tuple[int, int],
                   angles: Sequence[float] | None = None) -> np.ndarray:
    """(N, P) bool: which training patches are truly nominal (no anomalous pixel in their cell), with the
    masks resized and cropped as the images are (to ``size``) and rotated by ``angles`` (degrees) when given."""
    masks = np.stack([read_mask(s, size, center_crop) for s in order])
    if angles is not None:
        masks = np.stack([rotate(m.astype(np.uint8), a) > 0 for m, a in zip(masks, angles)])
    return patch_truth(masks, grid)


def filter_quality(nominal: np.ndarray | None, truth: Callable[[], np.ndarray]) -> dict[str, Any]:
    """Precision and recall of a nominal filter (``nominal`` (N, P) bool, None for a method without one)
    against ``truth()``, and the set sizes."""
    if nominal is None:
        return {"filter_precision": None, "filter_recall": None, "nominal_patches": None}
    precision, recall = filter_precision_recall(nominal, truth())
    return {"filter_precision": precision, "filter_recall": recall, "nominal_patches": int(nominal.sum()),
            "train_patches": int(nominal.size)}


def evaluate(data_dir: str, method: str = "inreach", corrupt: int = 0, seed: int = 0,
             config: InReachConfig | None = None, progress: bool = True,
             fit: Callable[[ImageAnomalyDetector, list[np.ndarray]], Any] | None = None) -> dict[str, Any]:
    """Fit ``method`` on the (corrupted) training set of ``data_dir`` and measure it on its test set."""
    config = config or InReachConfig(seed=seed)
    dataset = load_dataset(data_dir)
    order, _ = training_stream(dataset, corrupt, seed)
    train_images = read_images(order, "read train", progress)
    test_images = read_images(list(dataset.test), "read test", progress)
    detector = make_detector(method, config, progress)

    start = time.perf_counter()
    if fit is None:
        detector.fit(train_images)
    else:
        fit(detector, train_images)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prediction = detector.predict(test_images)
    predict_seconds = (time.perf_counter() - start) / len(test_images)

    size, crop = detector.extractor.image_size, config.features.center_crop
    labels = np.array([s.label for s in dataset.test])
    masks = np.stack([read_mask(s, size, crop) for s in dataset.test])
    result: dict[str, Any] = {
        "dataset": data_dir, "method": method, "mode": "batch", "corrupt": corrupt, "seed": seed,
        "backbone": config.features.backbone, "train_images": len(order), "test_images": len(dataset.test),
        "image_auroc": auroc(prediction.scores, labels), "pixel_auroc": pixel_auroc(prediction.heatmaps, masks),
        "fit_seconds": fit_seconds, "predict_seconds_per_image": predict_seconds,
    }
    inreach = isinstance(detector, InReaCh)
    angles = detector.train_angles_ if inreach and detector.aligned_ else None
    result.update(filter_quality(getattr(detector.model, "nominal_mask_", None),
                                 lambda: training_truth(order, size, crop, detector.grid, angles)))
    if inreach:
        result.update(uses_positions=detector.uses_positions_, aligned=detector.aligned_,
                      transpose_score=detector.transpose_score_)
    return result
