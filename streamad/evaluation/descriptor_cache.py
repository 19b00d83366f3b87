"""Descriptors computed once and served again: in memory, on disk, and to the detectors.

Extracting descriptors is most of an evaluation's time, and the same images are described again and
again (every method and K of a comparison grid, every rerun of a benchmark). This module keeps them:

- :class:`PrecomputedDescriptors` stands in for the feature extractor when descriptors are computed
  beforehand (the detectors' ``*_descriptors`` methods): it tells the grid and input size, and calling
  it is an error.
- :class:`SharedDescriptors`: one dataset's training and test descriptors, extracted once and gathered
  into the training stream of any K of the corruption protocol (``streamad compare``); optionally kept
  in a cache folder with the per-run results.
- :func:`prepare_descriptors`: the training stream's and test set's descriptors with batch InReaCh's
  positional decision, as ``InReaCh.fit`` / ``predict`` compute them (``streamad eval --stream``).
- :func:`descriptors_of_paths`: descriptors of a list of image files (the drifting stream of
  ``streamad eval-stream``).

Every disk cache is keyed by a hash of the data and of every setting that determines its content, so
a changed setting never reads a stale file.

    >>> import numpy as np
    >>> ext = PrecomputedDescriptors((4, 4), (32, 32))
    >>> ext.grid, ext.image_size, ext.config.center_crop
    ((4, 4), (32, 32), 1.0)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from streamad.config import FeatureConfig, InReachConfig
from streamad.evaluation.datasets import Dataset, Sample, load_dataset, read_images, read_mask, training_stream

# Part of every SharedDescriptors key: bump it when a scorer's code changes what it computes.
CACHE_VERSION = 1


class PrecomputedDescriptors:
    """Stands in for the feature extractor when descriptors are computed beforehand: it tells the
    detector the grid and input size; heatmaps stay in model-input coordinates (no crop border)."""

    def __init__(self, grid: tuple[int, int], size: tuple[int, int], features: FeatureConfig | None = None) -> None:
        self.grid = tuple(int(v) for v in grid)
        self.image_size = tuple(int(v) for v in size)
        base = features or FeatureConfig(image_size=self.image_size, grid=self.grid)
        self.config = replace(base, center_crop=1.0)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        raise RuntimeError("descriptors are precomputed: call the detector's *_descriptors methods")


def _digest(blob: dict[str, Any], length: int) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


# ---------------------------------------------------------------------------------------------------
# One dataset's descriptors, shared by every (method, K) of a comparison grid.


class SharedDescriptors:
    """One dataset's descriptors, extracted once and shared by every (method, K) of the grid.

    The training stream for K is a reordering of the training images plus K test images, so the
    descriptors of every training and every test image are computed once (the extractor's output for an
    image does not depend on the batch it is in) and gathered per K (:meth:`stream`). ``labels`` and
    ``masks`` are the test set's, at the model's input size (``masks`` None, and the reason in
    ``pixel_missing``, for a data set with image labels only).

    With ``cache`` (a folder), descriptors (and, through :meth:`cached_json`, per-run results) are kept
    there, keyed by a hash of the data, the stream and every setting that determines them, and reused by
    later runs. ``extractor_factory`` builds the extractor from ``config.features`` when descriptors are
    first extracted (default: the backbone's ``PatchFeatureExtractor``).
    """

    def __init__(self, data_dir: str, config: InReachConfig, cache: str | None = None, progress: bool = False,
                 extractor_factory: Callable[[FeatureConfig], Any] | None = None) -> None:
        if extractor_factory is None:
            from streamad.vision.features import PatchFeatureExtractor as extractor_factory

        self.data_dir, self.config, self.cache, self.progress = data_dir, config, cache, progress
        self.dataset = load_dataset(data_dir)
        self._extractor: Any = None
        self._extractor_factory = extractor_factory
        f = config.features
        self.size = f.image_size
        self.labels = np.array([s.label for s in self.dataset.test])
        # None, with the reason in pixel_missing, when the data set has image labels only
        self.pixel_missing = self.dataset.pixel_labels_missing()
        self.masks = (None if self.pixel_missing else
                      np.stack([read_mask(s, f.image_size, f.center_crop) for s in self.dataset.test]))
        self._train: np.ndarray | None = None
        self._test: np.ndarray | None = None

    @property
    def extractor(self) -> Any:
        """The feature extractor (built on first use: not at all when everything comes from the cache)."""
        if self._extractor is None:
            self._extractor = self._extractor_factory(self.config.features)
        return self._extractor

    def key(self, what: dict[str, Any]) -> str:
        """The cache file stem for ``what`` on this dataset and these feature settings."""
        name = os.path.basename(os.path.normpath(self.dataset.root)) or "data"
        return f"{name}-" + _digest({"version": CACHE_VERSION, "root": os.path.realpath(self.dataset.root),
                                     "train": [s.path for s in self.dataset.train],
                                     "test": [s.path for s in self.dataset.test],
                                     "features": asdict(self.config.features), **what}, 16)

    def _extract(self, samples: list[Sample], desc: str) -> np.ndarray:
        from streamad.evaluation.datasets import descriptors_of_files

        return descriptors_of_files([s.path for s in samples], self.extractor, desc, self.progress)

    def descriptors(self) -> tuple[np.ndarray, np.ndarray]:
        """(train (N, P, d), test (M, P, d)) of the dataset's own training and test images, in order."""
        if self._train is None or self._test is None:
            path = os.path.join(self.cache, self.key({"what": "descriptors"})) if self.cache else ""
            if path and os.path.isfile(path + ".test.npy"):
                self._train, self._test = (np.load(path + ".train.npy", allow_pickle=False),
                                           np.load(path + ".test.npy", allow_pickle=False))
            else:
                self._train = self._extract(list(self.dataset.train), "train features")
                self._test = self._extract(list(self.dataset.test), "test features")
                if path:
                    os.makedirs(self.cache, exist_ok=True)  # type: ignore[arg-type]
                    np.save(path + ".train.npy", self._train)
                    np.save(path + ".test.npy", self._test)
        return self._train, self._test

    def stream(self, corrupt: int, seed: int, chosen: list[str] | None = None) -> tuple[list[Sample], np.ndarray]:
        """The training stream of ``evaluate`` for K = ``corrupt`` (from the list ``chosen`` when given) and
        its descriptors (N + K, P, d)."""
        order, _ = training_stream(self.dataset, corrupt, seed, chosen)
        train, test = self.descriptors()
        row = {s.path: ("train", i) for i, s in enumerate(self.dataset.train)}
        row.update({s.path: ("test", i) for i, s in enumerate(self.dataset.test)})
        where = [row[s.path] for s in order]
        return order, np.stack([(train if part == "train" else test)[i] for part, i in where])

    def cached_json(self, what: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``compute()``, or what it returned before for the same ``what`` (read from the cache folder)."""
        path = os.path.join(self.cache, self.key(what) + ".json") if self.cache else ""
        if path and os.path.isfile(path):
            with open(path) as fh:
                return json.load(fh)
        result = compute()
        if path:
            os.makedirs(self.cache, exist_ok=True)  # type: ignore[arg-type]
            _write_text(path, json.dumps(result, indent=2, default=str))
        return result


# ---------------------------------------------------------------------------------------------------
# The training stream's descriptors with batch InReaCh's positional decision (eval --stream).

_DECISION_KEYS = ("uses_positions", "aligned", "transpose_score", "train_angles", "test_angles",
                  "positions_seconds", "train_features_seconds", "test_features_seconds")


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


def _prepared_key(dataset: Dataset, order: list[Sample], config: InReachConfig) -> str:
    name = os.path.basename(os.path.normpath(dataset.root)) or "data"
    return f"{name}-" + _digest({"train": [s.path for s in order], "test": [s.path for s in dataset.test],
                                 "root": os.path.realpath(dataset.root), "features": asdict(config.features),
                                 "positional": asdict(config.positional)}, 12)


def prepare_descriptors(detector: Any, dataset: Dataset, order: list[Sample], progress: bool = True,
                        cache: str | None = None) -> PreparedDescriptors:
    """Positional decision and descriptors exactly as ``InReaCh.fit`` / ``predict`` compute them.

    ``detector`` is a :class:`~streamad.batch.inreach.InReaCh`. The positional test runs on the whole
    training stream, as batch fitting does; the detector is left with its decision (see
    ``InReaCh.use_positional_decision``). With ``cache`` (a folder), descriptors and decision are saved
    there and reused by later runs on the same data and settings.
    """
    stem = os.path.join(cache, _prepared_key(dataset, order, detector.config)) if cache else ""
    if stem and os.path.isfile(stem + ".json"):
        return _load_prepared(stem, detector, order)
    prepared = _compute_prepared(detector, dataset, order, progress)
    if stem:
        os.makedirs(cache, exist_ok=True)  # type: ignore[arg-type]
        np.save(stem + ".train.npy", prepared.train)
        np.save(stem + ".test.npy", prepared.test)
        _write_text(stem + ".json", json.dumps({k: getattr(prepared, k) for k in _DECISION_KEYS}))
    return prepared


def _load_prepared(stem: str, detector: Any, order: list[Sample]) -> PreparedDescriptors:
    with open(stem + ".json") as fh:
        meta = json.load(fh)
    train = np.load(stem + ".train.npy", mmap_mode="r", allow_pickle=False)
    test = np.load(stem + ".test.npy", mmap_mode="r", allow_pickle=False)
    # The reference of an aligned decision is the first training image, as in InReaCh.decide_positions.
    reference = read_images(order[:1], "read reference", False)[0] if meta["aligned"] else None
    detector.use_positional_decision(meta["uses_positions"], meta["aligned"], meta["transpose_score"],
                                     meta["train_angles"], reference)
    return PreparedDescriptors(train=train, test=test, cached=True, **{k: meta[k] for k in _DECISION_KEYS})


def _compute_prepared(detector: Any, dataset: Dataset, order: list[Sample], progress: bool) -> PreparedDescriptors:
    train_images = read_images(order, "read train", progress)
    start = time.perf_counter()
    train_images = detector.decide_positions(train_images)
    positions_seconds = time.perf_counter() - start
    start = time.perf_counter()
    train = detector.descriptors(train_images, "fit features")
    train_features_seconds = time.perf_counter() - start
    del train_images
    test_images = read_images(list(dataset.test), "read test", progress)
    start = time.perf_counter()
    test_images, test_angles = detector.align(test_images)  # as InReaCh.predict does
    test = detector.descriptors(test_images, "predict features")
    test_features_seconds = time.perf_counter() - start
    return PreparedDescriptors(train=train, test=test, uses_positions=detector.uses_positions_,
                               aligned=detector.aligned_, transpose_score=detector.transpose_score_,
                               train_angles=list(detector.train_angles_), test_angles=test_angles,
                               positions_seconds=positions_seconds, train_features_seconds=train_features_seconds,
                               test_features_seconds=test_features_seconds)


# ---------------------------------------------------------------------------------------------------
# Descriptors of a list of image files (the drifting stream).


def descriptors_of_paths(paths: list[str], config: InReachConfig, cache: str | None = None,
                         progress: bool = False) -> np.ndarray:
    """(N, P, d) float32 descriptors of the image files ``paths``, reusing ``cache`` when it holds them."""
    from streamad.evaluation.datasets import descriptors_of_files
    from streamad.vision.features import PatchFeatureExtractor

    key = "drift-" + _digest({"paths": [os.path.realpath(p) for p in paths], "features": asdict(config.features)}, 16)
    path = os.path.join(cache, key + ".npy") if cache else ""
    if path and os.path.isfile(path):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    extractor = PatchFeatureExtractor(config.features)
    desc = descriptors_of_files(paths, extractor, "features", progress).astype(np.float32, copy=False)
    if path:
        os.makedirs(cache, exist_ok=True)  # type: ignore[arg-type]
        tmp = path + ".tmp.npy"
        np.save(tmp, desc)
        os.replace(tmp, path)
    return desc
