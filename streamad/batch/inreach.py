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

from collections.abc import Callable, Sequence

import numpy as np

from streamad.core.channels import nominal_mask
from streamad.core.reweight import reweighted_scores
from streamad.core.seed_choice import choose_seeds
from streamad.config import ChannelConfig, IndexConfig, InReachConfig
from streamad.vision.features import PatchFeatureExtractor, with_positions
from streamad.vision.frames import as_rgb_images
from streamad.index.hnsw import HNSWIndex
from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.vision.positional import best_rotation, rotate, rotation_angles, transpose_score
from streamad.vision.heatmap import image_score
from streamad.results import Prediction


class InReaChPatchModel:
    """Channels over the training descriptors; patches scored by distance to the nearest nominal patch.

    The first ``config.seeds`` training images are the seeds (shuffle before fitting if the data
    are ordered), or those ``seed_choice`` picks (:func:`~streamad.core.seed_choice.choose_seeds`);
    ``seeds_`` lists them; ``new_look_seeds`` more (``new_look_seeds_``) head channels only for the looks
    no channel holds (:func:`~streamad.core.channels.add_new_look_seeds`). After fitting: ``nominal_mask_``
    (N, P) bool and ``nominal_count_``.
    """

    def __init__(self, config: ChannelConfig | None = None, seed: int = 0, index: IndexConfig | None = None,
                 reweight_neighbors: int | None = None, seed_choice: str = "first", new_look_seeds: int = 0) -> None:
        self.config = config or ChannelConfig()
        self.seed = seed
        self.seed_choice = seed_choice
        self.new_look_seeds = new_look_seeds
        self.index_config = index or IndexConfig()
        self.reweight_neighbors = reweight_neighbors  # None: no image score of its own (the heatmap's)

    def fit_descriptors(self, descriptors: np.ndarray, grid: tuple[int, int]) -> "InReaChPatchModel":
        n = descriptors.shape[0]
        if n < 2:
            raise ValueError(f"InReaCh needs at least 2 training images, got {n}")
        d = min(self.config.seeds, n - 1)
        chosen = choose_seeds(descriptors, min(d + self.new_look_seeds, n - 1), self.seed_choice)
        seeds, self.new_look_seeds_ = chosen[:d], chosen[d:]
        self.seeds_ = seeds
        self.nominal_mask_ = nominal_mask(descriptors, seeds, self.config, self.new_look_seeds_)
        self.nominal_count_ = int(self.nominal_mask_.sum())
        if self.nominal_count_ == 0:
            raise ValueError("no patch survived channel trimming: nothing is known to be nominal. "
                             "Use more training images, fewer seeds, a smaller min_span or a larger k_sigma.")
        vectors = descriptors[self.nominal_mask_]
        self.owners_ = np.nonzero(self.nominal_mask_)[0].astype(np.int64)  # nominal vector -> training image
        self.index_ = HNSWIndex.from_config(vectors.shape[1], self.index_config, seed=self.seed)
        self.index_.add(np.arange(len(vectors)), vectors)
        self.vectors_ = np.ascontiguousarray(vectors, np.float32) if self.reweight_neighbors else None
        return self

    @property
    def image_scores(self) -> Callable[..., np.ndarray] | None:
        """PatchCore's eq. 7 against the nominal set (``reweight_neighbors`` given), else None."""
        return self._reweighted if self.reweight_neighbors else None

    def _reweighted(self, descriptors: np.ndarray, patch_scores: np.ndarray | None = None,
                    leave_out: np.ndarray | None = None) -> np.ndarray:
        """(M, P, d) to (M,) image scores (:func:`streamad.core.reweight.reweighted_scores`); ``leave_out``
        as :meth:`patch_scores`."""
        x = np.asarray(descriptors, np.float32)
        if patch_scores is None:
            patch_scores = self.patch_scores(x, leave_out)
        worst = np.asarray(patch_scores).reshape(len(x), -1).argmax(1)
        m_test = np.ascontiguousarray(x[np.arange(len(x)), worst])
        s_star, nearest = self._nearest(m_test, None if leave_out is None else np.asarray(leave_out, np.int64))
        b = min(int(self.reweight_neighbors or 2), len(self.vectors_))
        _, hood = self.index_.query(self.vectors_[nearest], k=b)
        return reweighted_scores(m_test, s_star, self.vectors_[hood])

    def patch_scores(self, descriptors: np.ndarray, leave_out: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(M, P, d) to (M, P): each patch's distance to the nearest nominal patch. ``leave_out[m]`` >= 0
        names the training image that frame ``m`` is: its own nominal patches are then not matched (it is
        scored against the other training images; :meth:`InReaCh.fit_predict`); -1 matches everything."""
        m, p, d = descriptors.shape
        flat = descriptors.reshape(m * p, d)
        owner = None if leave_out is None else np.repeat(np.asarray(leave_out, np.int64), p)
        dist, _ = self._nearest(flat, owner)
        return dist.reshape(m, p).astype(np.float32)

    def _nearest(self, vectors: np.ndarray, not_from: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(distance, label) of each vector's nearest nominal patch, not one of training image
        ``not_from[i]`` (when >= 0): more neighbours are asked for until one of another image is found."""
        dist, label = self.index_.query(vectors, k=1)
        dist, label = dist[:, 0].copy(), label[:, 0].copy()
        if not_from is None:
            return dist, label
        todo = np.flatnonzero((not_from >= 0) & (self.owners_[label] == not_from))
        if todo.size and np.unique(self.owners_).size == 1:
            raise ValueError("leave-one-out scoring: every nominal patch comes from the image left out")
        k = 1
        while todo.size and k < min(256, len(self.index_)):  # ask for more neighbours, up to 256
            k = min(8 * k, 256, len(self.index_))
            d, lab = self.index_.query(np.ascontiguousarray(vectors[todo]), k=k)
            other = self.owners_[lab] != not_from[todo][:, None]
            found, first = other.any(1), other.argmax(1)
            rows = todo[found]
            dist[rows], label[rows] = d[found, first[found]], lab[found, first[found]]
            todo = todo[~found]
        if todo.size:  # still only the image's own patches among the nearest: search the others exactly
            labels, stored = self.index_.labels(), self.index_.vectors()
            for i in todo:
                keep = self.owners_[labels] != not_from[i]
                diff = stored[keep] - vectors[i]
                sq = np.einsum("ij,ij->i", diff, diff)
                j = int(np.argmin(sq))
                dist[i], label[i] = np.sqrt(sq[j]), labels[keep][j]
        return dist, label


class InReaCh(ImageAnomalyDetector):
    """Batch InReaCh on images, scikit-learn style, with the positional test and rotation alignment.

    ``fit(images)`` takes unlabeled training images in the order given (the first D are the seeds);
    ``predict(images)`` returns a :class:`~streamad.results.Prediction`. After fitting (or
    ``decide_positions``), the positional decision is in ``transpose_score_`` (None when the test did
    not run), ``uses_positions_``, ``aligned_``, ``train_angles_`` (the rotation of every training
    image, degrees; all 0 without alignment) and ``reference_`` (the image test images are aligned to;
    None without alignment).
    """

    def __init__(self, config: InReachConfig | None = None, extractor: PatchFeatureExtractor | None = None,
                 progress: bool = False) -> None:
        self.config = config or InReachConfig()
        heat = self.config.heatmap
        b = heat.reweight_neighbors if heat.image_score == "reweight" else None
        super().__init__(InReaChPatchModel(self.config.channels, seed=self.config.seed, index=self.config.index,
                                           reweight_neighbors=b, seed_choice=self.config.seed_choice,
                                           new_look_seeds=self.config.new_look_seeds),
                         extractor or PatchFeatureExtractor(self.config.features), self.config.heatmap, progress)
        self.use_positional_decision(False, False, None)

    def use_positional_decision(self, uses_positions: bool, aligned: bool, transpose_score: float | None,
                                train_angles: Sequence[float] | None = None,
                                reference: np.ndarray | None = None) -> "InReaCh":
        """Take a positional decision made before (e.g. kept with cached descriptors) instead of running
        the test: ``aligned`` needs the ``reference`` image that test images are rotated to."""
        if aligned and reference is None:
            raise ValueError("an aligned decision needs the reference image test images are rotated to")
        self.uses_positions_ = bool(uses_positions)
        self.aligned_ = bool(aligned)
        self.transpose_score_ = transpose_score
        self.train_angles_: list[float] = [float(a) for a in train_angles] if train_angles is not None else []
        self.reference_: np.ndarray | None = reference if aligned else None
        return self

    def decide_positions(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the transpose test (and rotation alignment if it fails); return the images to use."""
        pos = self.config.positional
        unrotated = [0.0] * len(images)
        if pos.mode != "auto":
            self.use_positional_decision(pos.mode == "on", False, None, unrotated)
            return list(images)
        score = transpose_score(images)
        if score > pos.threshold:
            self.use_positional_decision(True, False, score, unrotated)
            return list(images)
        self.use_positional_decision(False, False, score, unrotated)
        if pos.align_rotation and len(images) > 1:
            angles = [0.0] + rotation_angles(images[1:], images[0])
            aligned = [rotate(img, a) for img, a in zip(images, angles)]
            aligned_score = transpose_score(aligned)
            if aligned_score > pos.threshold:
                self.use_positional_decision(True, True, aligned_score, angles, reference=images[0])
                return aligned
        return list(images)

    def align(self, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
        """``images`` rotated onto the training reference as ``predict`` rotates them, and the angles
        (degrees; the images unchanged and all angles 0 unless the positional test chose alignment)."""
        if not self.aligned_ or self.reference_ is None:
            return list(images), [0.0] * len(images)
        angles = [best_rotation(img, self.reference_) for img in images]
        return [rotate(img, a) for img, a in zip(images, angles)], angles

    def with_positions(self, descriptors: np.ndarray) -> np.ndarray:
        """``descriptors`` (N, P, d) with the positional embedding appended when the test chose it."""
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
        self.model.fit_descriptors(self.with_positions(descriptors), self.grid)
        return self

    def fit_predict(self, images: Sequence[np.ndarray]) -> Prediction:
        """Fit on ``images``, then score each of them against the *other* images' nominal patches
        (leave-one-out, as scikit-learn's outlier detectors score their training samples): which of the
        images just learned from are defective. Scoring them with :meth:`predict` instead would match
        every trusted patch to itself (distance 0), a defect patch the channels let in included.

            >>> import numpy as np
            >>> from streamad.config import ChannelConfig, InReachConfig
            >>> from streamad.testing.standin import BlockMeans
            >>> rng = np.random.default_rng(0)
            >>> images = [rng.integers(100, 110, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
            >>> images[5][8:16, 8:16] = 250                           # one defective image
            >>> config = InReachConfig(channels=ChannelConfig(seeds=2, min_span=2))
            >>> scores = InReaCh(config, extractor=BlockMeans((4, 4), (32, 32))).fit_predict(images).scores
            >>> int(scores.argmax())
            5
        """
        images = as_rgb_images(images, "fit_predict images")
        if len(images) < 2:
            raise ValueError(f"fit_predict needs at least 2 training images, got {len(images)}")
        images = self.decide_positions(images)
        descriptors = self.descriptors(images, "fit features")
        self.fit_descriptors(descriptors)
        pred = self.predict_descriptors(descriptors, leave_out=np.arange(len(images)))
        return self._unrotated(pred, self.train_angles_)

    def predict(self, images: Sequence[np.ndarray], leave_out: Sequence[int] | None = None) -> Prediction:
        """Score ``images``; ``leave_out[i]`` (optional) is the position in the training set of image
        ``i`` when it is one of the training images (its own patches are then not matched), else -1."""
        images = as_rgb_images(images, "predict images")
        if len(images) == 0:
            raise ValueError("predict needs at least one image: pass a non-empty list of RGB uint8 arrays")
        images, angles = self.align(images)
        pred = self.predict_descriptors(self.descriptors(images, "predict features"), leave_out)
        return self._unrotated(pred, angles)

    def _unrotated(self, pred: Prediction, angles: Sequence[float]) -> Prediction:
        """``pred`` with its heatmaps rotated back by ``angles`` (and the max image score taken again)."""
        if not any(angles):
            return pred
        heat = np.stack([rotate(h, -a) for h, a in zip(pred.heatmaps, angles)])
        scores = image_score(heat) if self.config.heatmap.image_score == "max" else pred.scores
        return Prediction(scores=scores, heatmaps=heat, patch_scores=pred.patch_scores)

    def predict_descriptors(self, descriptors: np.ndarray, leave_out: Sequence[int] | None = None) -> Prediction:
        """:meth:`predict` on precomputed descriptors (N, P, d)."""
        x = self.with_positions(descriptors)
        if leave_out is None:
            return super().predict_descriptors(x)
        out = np.asarray(leave_out)
        n_train = self.model.nominal_mask_.shape[0]
        if out.shape != (len(x),) or not np.issubdtype(out.dtype, np.integer) or out.min() < -1 or out.max() >= n_train:
            raise ValueError(f"leave_out must hold one int per image ({len(x)}), each -1 (not a training image) "
                             f"or a training image's position (0 to {n_train - 1}); got {leave_out!r}")
        patch = self.model.patch_scores(x, out).reshape(len(x), *self.grid)
        return self._prediction(x, patch, leave_out=out)

    @property
    def nominal_mask_(self) -> np.ndarray:
        """(N, P) bool: which training patches were kept as nominal."""
        return self.model.nominal_mask_  # type: ignore[attr-defined]
