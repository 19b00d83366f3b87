"""Batch InReaCh (docs/DESIGN.md section 2): fit on unlabeled, possibly contaminated images; score new ones.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(size=(12, 16, 4)).astype(np.float32) * 0.05 + np.arange(16)[None, :, None]
    >>> model = InReaChPatchModel(ChannelConfig(seeds=2)).fit_descriptors(train, (4, 4))
    >>> int(model.nominal_mask_.sum()) > 0
    True
    >>> test = train[:1].copy(); test[0, 5] += 0.5          # one odd patch
    >>> int(model.patch_scores(test)[0].argmax())
    5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamad.core.channels import nominal_mask
from streamad.config import ChannelConfig, IndexConfig, InReachConfig
from streamad.vision.features import PatchFeatureExtractor, with_positions
from streamad.vision.frames import as_rgb_images
from streamad.index.hnsw import NominalIndex
from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.vision.positional import best_rotation, rotate, rotation_angles, transpose_score
from streamad.vision.heatmap import image_score
from streamad.results import Prediction


class InReaChPatchModel:
    """Channels over the training descriptors; patches scored by distance to the nearest nominal patch.

    The first ``config.seeds`` training images are the seeds (shuffle before fitting if the data
    are ordered). After fitting: ``nominal_mask_`` (N, P) bool and ``nominal_count_``.
    """

    def __init__(self, config: ChannelConfig | None = None, seed: int = 0, index: IndexConfig | None = None) -> None:
        self.config = config or ChannelConfig()
        self.seed = seed
        self.index_config = index or IndexConfig()

    def fit_descriptors(self, descriptors: np.ndarray, grid: tuple[int, int]) -> "InReaChPatchModel":
        n = descriptors.shape[0]
        if n < 2:
            raise ValueError(f"InReaCh needs at least 2 training images, got {n}")
        seeds = list(range(min(self.config.seeds, n - 1)))
        self.nominal_mask_ = nominal_mask(descriptors, seeds, self.config)
        self.nominal_count_ = int(self.nominal_mask_.sum())
        if self.nominal_count_ == 0:
            raise ValueError("no patch survived channel trimming: nothing is known to be nominal. "
                             "Use more training images, fewer seeds, a smaller min_span or a larger k_sigma.")
        vectors = descriptors[self.nominal_mask_]
        self.index_ = NominalIndex.from_config(vectors.shape[1], self.index_config, seed=self.seed)
        self.index_.add(np.arange(len(vectors)), vectors)
        return self

    def patch_scores(self, descriptors: np.ndarray) -> np.ndarray:
        m, p, d = descriptors.shape
        dist, _ = self.index_.query(descriptors.reshape(m * p, d), k=1)
        return dist[:, 0].reshape(m, p).astype(np.float32)


class InReaCh(ImageAnomalyDetector):
    """Batch InReaCh on images, scikit-learn style, with the positional test and rotation alignment.

    ``fit(images)`` takes unlabeled training images in the order given (the first D are the seeds);
    ``predict(images)`` returns a :class:`~streamad.results.Prediction`. After fitting,
    ``transpose_score_``, ``aligned_`` and ``uses_positions_`` tell what the positional test decided.
    """

    def __init__(self, config: InReachConfig | None = None, extractor: PatchFeatureExtractor | None = None,
                 progress: bool = False) -> None:
        self.config = config or InReachConfig()
        super().__init__(InReaChPatchModel(self.config.channels, seed=self.config.seed, index=self.config.index),
                         extractor or PatchFeatureExtractor(self.config.features), self.config.heatmap, progress)
        self.uses_positions_ = False
        self.aligned_ = False
        self.transpose_score_: float | None = None
        self._reference: np.ndarray | None = None

    def decide_positions(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the transpose test (and rotation alignment if it fails); return the images to use."""
        pos = self.config.positional
        self.aligned_ = False
        if pos.mode != "auto":
            self.uses_positions_ = pos.mode == "on"
            return list(images)
        self.transpose_score_ = transpose_score(images)
        if self.transpose_score_ > pos.threshold:
            self.uses_positions_ = True
            return list(images)
        self.uses_positions_ = False
        if pos.align_rotation and len(images) > 1:
            angles = [0.0] + rotation_angles(images[1:], images[0])
            aligned = [rotate(img, a) for img, a in zip(images, angles)]
            score = transpose_score(aligned)
            if score > pos.threshold:
                self.transpose_score_ = score
                self.uses_positions_ = self.aligned_ = True
                self._reference = images[0]
                self.train_angles_ = angles
                return aligned
        return list(images)

    def _with_positions(self, descriptors: np.ndarray) -> np.ndarray:
        if not self.uses_positions_:
            return descriptors
        return with_positions(descriptors, self.grid, self.config.positional.weight)

    def fit(self, images: Sequence[np.ndarray]) -> "InReaCh":
        images = as_rgb_images(images, "fit images")
        if len(images) < 2:
            raise ValueError(f"fit needs at least 2 training images, got {len(images)}: pass a list of RGB uint8 "
                             "arrays, the more the better (at least config.channels.seeds + a few)")
        images = self.decide_positions(images)
        self.fit_descriptors(self.descriptors(images, "fit features"))
        return self

    def fit_descriptors(self, descriptors: np.ndarray) -> "InReaCh":
        """Fit on precomputed descriptors (positions are appended here if the test said so)."""
        self.model.fit_descriptors(self._with_positions(descriptors), self.grid)
        return self

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        images = as_rgb_images(images, "predict images")
        if len(images) == 0:
            raise ValueError("predict needs at least one image: pass a non-empty list of RGB uint8 arrays")
        angles = [0.0] * len(images)
        if self.aligned_ and self._reference is not None:
            angles = [best_rotation(img, self._reference) for img in images]
            images = [rotate(img, a) for img, a in zip(images, angles)]
        pred = self.predict_descriptors(self.descriptors(images, "predict features"))
        if not any(angles):
            return pred
        heat = np.stack([rotate(h, -a) for h, a in zip(pred.heatmaps, angles)])
        return Prediction(scores=image_score(heat), heatmaps=heat, patch_scores=pred.patch_scores)

    def predict_descriptors(self, descriptors: np.ndarray) -> Prediction:
        return super().predict_descriptors(self._with_positions(descriptors))

    @property
    def nominal_mask_(self) -> np.ndarray:
        """(N, P) bool: which training patches were kept as nominal."""
        return self.model.nominal_mask_  # type: ignore[attr-defined]
