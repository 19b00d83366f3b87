"""Evaluation on a labeled dataset the way the InReaCh paper measures (DESIGN section 7).

Training images (plus ``corrupt`` anomalous test images, unlabeled) are fitted in a seeded shuffled
order; the whole test set is scored. Reports image AUROC, pixel AUROC, the nominal filter's precision
and recall on the training patches, the nominal set size and timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .config import InReachConfig
from .data import load_dataset, patch_truth, read_image, read_mask, training_stream
from .errors import UserError
from .features import PatchFeatureExtractor
from .inreach import InReaCh
from .metrics import auroc, filter_precision_recall, pixel_auroc
from .patch_model import ImageAnomalyDetector
from .positional import rotate

METHODS = ("inreach", "patchcore", "spade", "pni")


def _read_all(samples: list, desc: str, progress: bool) -> list[np.ndarray]:
    return [read_image(s.path) for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False)]


def make_detector(method: str, config: InReachConfig, progress: bool) -> ImageAnomalyDetector:
    """An image-level detector for ``method`` on the configured backbone."""
    if method == "inreach":
        return InReaCh(config, progress=progress)
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    from .baselines import make_patch_model

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
