"""What the detectors return: small frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """Batch ``predict`` output for a set of images.

    ``scores`` (N,) image scores; ``heatmaps`` (N, h, w) float32 at the model's input resolution;
    ``patch_scores`` (N, H, W) the nearest-nominal distances on the descriptor grid.
    """

    scores: np.ndarray
    heatmaps: np.ndarray
    patch_scores: np.ndarray


@dataclass(frozen=True)
class FrameResult:
    """The streaming detector's verdict on one frame.

    While the window cannot yet form channels, ``ready`` is False and ``score``, ``threshold``,
    ``heatmap`` and ``patch_scores`` are None: nothing is guessed. ``timings`` holds per-stage
    milliseconds (``features``, ``score``, ``heatmap``, ``admit``, ...).

    ``admitted``: the frame was due for admission and was admitted (synchronous learning) or handed to
    the background learner (which may skip it for a newer due frame); ``learned``: the stream indices of
    the frames whose admission *completed* since the previous result (in order), so a consumer knows
    exactly which frames the nominal model was learned from.
    """

    index: int
    ready: bool
    score: float | None
    threshold: float | None
    anomalous: bool
    heatmap: np.ndarray | None
    patch_scores: np.ndarray | None
    drift: bool
    admitted: bool
    timestamp: float
    timings: dict[str, float] = field(default_factory=dict)
    learned: tuple[int, ...] = ()
