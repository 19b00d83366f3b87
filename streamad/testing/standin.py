"""Stand-ins for examples, tests and benchmarks that need no backbone: an extractor and a detector base.

:class:`BlockMeans` turns each frame into a grid of RGB block means (the frame resized to
``image_size`` first): cheap, deterministic, and shaped like the real extractor's output
(``(N, gh * gw, 3)`` float32, with ``grid``, ``image_size`` and a ``config`` the detectors read).

    >>> import numpy as np
    >>> from streamad import StreamDetector
    >>> from streamad.config import ChannelConfig, StreamConfig
    >>> ext = BlockMeans(grid=(4, 4), image_size=(32, 32))
    >>> ext([np.zeros((48, 64, 3), np.uint8)]).shape
    (1, 16, 3)
    >>> det = StreamDetector(StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2)), extractor=ext)
    >>> det.process(np.zeros((48, 64, 3), np.uint8)).ready
    False

:class:`StandInDetector` is a base for stand-in detectors: it has the whole live detector contract
(:class:`streamad.runtime.detector.Detector`) with no state, and a subclass writes ``process``.

``PrecomputedDescriptors`` (serving descriptors computed beforehand) lives in
:mod:`streamad.evaluation.descriptor_cache`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from streamad.results import FrameResult

__all__ = ["BlockMeans", "StandInDetector"]


class StandInDetector:
    """A base for stand-in detectors: no extractor, no nominal patches, no learner, no state to save (a
    subclass that has one overrides ``save``); a subclass defines ``process``.

    >>> class Never(StandInDetector):
    ...     def process(self, frame, timestamp=None):
    ...         return FrameResult(0, False, None, None, False, None, None, False, False, 0.0)
    >>> det = Never()
    >>> det.process(None).ready, det.nominal_count, det.learner_stats(), det.close()
    (False, 0, {}, None)
    """

    extractor: Any = None
    frame_size: tuple[int, int] | None = None
    nominal_count: int = 0

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        raise NotImplementedError(f"{type(self).__name__} must define process(frame, timestamp)")

    def save(self, directory: str | os.PathLike[str]) -> object:
        raise NotImplementedError(f"{type(self).__name__} keeps no state to save")

    def close(self) -> None:
        """Nothing to stop."""

    def learner_stats(self) -> dict[str, Any]:
        return {}


class BlockMeans:
    """Frames to a ``grid`` of RGB block means in [0, 1] (float32), after resizing to ``image_size``."""

    def __init__(self, grid: tuple[int, int] = (4, 4), image_size: tuple[int, int] = (32, 32),
                 batch_size: int = 8) -> None:
        gh, gw = (int(v) for v in grid)
        h, w = (int(v) for v in image_size)
        if gh < 1 or gw < 1 or h % gh or w % gw:
            raise ValueError(f"image_size {image_size} must be a positive multiple of grid {grid}")
        self.grid = (gh, gw)
        self.image_size = (h, w)
        self.config = SimpleNamespace(batch_size=int(batch_size), center_crop=1.0)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        (gh, gw), (h, w) = self.grid, self.image_size
        out = [cv2.resize(np.asarray(f), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
               .reshape(gh, h // gh, gw, w // gw, 3).mean(axis=(1, 3)).reshape(gh * gw, 3) / 255.0 for f in frames]
        return np.stack(out).astype(np.float32)
