"""Batch detectors: any patch model behind scikit-learn-style ``fit(images)`` / ``predict(images)``.

A *patch model* learns from training descriptors and scores test descriptors patch by patch.
``ImageAnomalyDetector`` adds what every method shares: descriptors from the backbone, heatmaps
(bilinear upsampling + Gaussian blur) and image scores (``HeatmapConfig.image_score``: the heatmap
maximum by default; a model with its own ``image_scores``, as PatchCore's reweighting, keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from streamad.config import FeatureConfig, HeatmapConfig
from streamad.vision.features import PatchFeatureExtractor
from streamad.vision.frames import as_rgb_images
from streamad.vision.heatmap import frame_scores, heatmap_from_patch_scores
from streamad.results import Prediction


@runtime_checkable
class PatchModel(Protocol):
    """Learns nominal patches from training descriptors; scores patches of new images."""

    def fit_descriptors(self, descriptors: np.ndarray, grid: tuple[int, int]) -> "PatchModel":
        """``descriptors`` (N, P, d) float32 of the training images; P = H*W, row-major grid."""
        ...

    def patch_scores(self, descriptors: np.ndarray) -> np.ndarray:
        """(M, P, d) to (M, P) float32 anomaly scores, higher is more anomalous."""
        ...


class ImageAnomalyDetector:
    """Images in, image scores and heatmaps out, around a ``PatchModel``.

    Images are RGB uint8 arrays of any size (grayscale, RGBA, uint16 and float [0, 1] images are
    converted; see :func:`streamad.vision.frames.as_rgb_uint8`); an unusable one raises ``ValueError`` naming it
    by position. Heatmaps come back at the extractor's input resolution.
    """

    def __init__(self, model: PatchModel, extractor: PatchFeatureExtractor | None = None,
                 heatmap: HeatmapConfig | None = None, progress: bool = False) -> None:
        self.model = model
        self.extractor = extractor or PatchFeatureExtractor(FeatureConfig())
        self.heatmap = heatmap or HeatmapConfig()
        self.progress = progress

    @property
    def grid(self) -> tuple[int, int]:
        return self.extractor.grid

    def descriptors(self, images: Sequence[np.ndarray], desc: str = "features") -> np.ndarray:
        """Patch descriptors (N, P, d) of ``images``, in batches, with a progress bar if enabled."""
        bs = self.extractor.config.batch_size
        chunks = []
        for start in tqdm(range(0, len(images), bs), desc=desc, unit="batch", disable=not self.progress,
                          leave=False):
            chunks.append(self.extractor(images[start:start + bs]))
        if not chunks:
            raise ValueError("no images given")
        return np.concatenate(chunks)

    def fit(self, images: Sequence[np.ndarray]) -> "ImageAnomalyDetector":
        """Learn from unlabeled training images (order matters for InReaCh: the first D are seeds)."""
        images = as_rgb_images(images, "fit images")
        if len(images) == 0:
            raise ValueError("fit needs at least one training image: pass a non-empty list of RGB uint8 arrays")
        return self.fit_descriptors(self.descriptors(images, "fit features"))

    def fit_descriptors(self, descriptors: np.ndarray) -> "ImageAnomalyDetector":
        self.model.fit_descriptors(descriptors, self.grid)
        return self

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        """Score images: image scores (N,), heatmaps (N, h, w), patch scores (N, H, W)."""
        images = as_rgb_images(images, "predict images")
        if len(images) == 0:
            raise ValueError("predict needs at least one image: pass a non-empty list of RGB uint8 arrays")
        return self.predict_descriptors(self.descriptors(images, "predict features"))

    def predict_descriptors(self, descriptors: np.ndarray) -> Prediction:
        patch = self.model.patch_scores(descriptors).reshape(len(descriptors), *self.grid)
        return self._prediction(descriptors, patch)

    def _prediction(self, descriptors: np.ndarray, patch: np.ndarray, **image_score_options: object) -> Prediction:
        """Heatmaps and image scores from patch scores (M, H, W) of ``descriptors``; ``image_score_options``
        go to the model's own ``image_scores`` when it has one."""
        heat = np.stack([heatmap_from_patch_scores(p, self.extractor.image_size, self.heatmap.blur_sigma)
                         for p in patch])
        image_scores = getattr(self.model, "image_scores", None)
        scores = (image_scores(descriptors, patch_scores=patch, **image_score_options) if callable(image_scores)
                  else frame_scores(heat, patch, self.heatmap.image_score, self.heatmap.top_k))
        return Prediction(scores=np.asarray(scores, np.float32), heatmaps=heat, patch_scores=patch)
