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

    ``p_value``: the share of the trusted calibration scores at or above this frame's score (conformal,
    ``(1 + #{c >= score}) / (n + 1)``): small means unusual, the same scale on every camera; a frame is
    anomalous when it is at most the configured false alarm rate (docs/alarms.md). None before any
    trusted score exists, and with the ``quantile`` rule. ``drift_change``: when ``drift`` is set, what
    changed and since when (:class:`DriftChange`).

    ``calibration``: which rule's calibration gave the threshold this frame was judged by (``"trusted"``,
    ``"screened"`` or ``"quantile"``), and ``calibration_frames`` on how many scores; None and 0 while
    there is no threshold yet, so silence then means "not yet able to judge", not "normal".
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
    p_value: float | None = None
    drift_change: DriftChange | None = None
    calibration: str | None = None
    calibration_frames: int = 0


@dataclass(frozen=True)
class DriftChange:
    """What a drift flag means for the user: the scores of the frames the engine trusts as normal moved
    from about ``before`` (their median before the change) to ``after`` (their median since), starting
    at frame ``since`` (its ``since_time`` timestamp; None when unknown); ``frames`` scores back this.

        >>> print(DriftChange(since=412, since_time=41.2, before=6.1, after=9.3, frames=40).describe())
        normal frames score higher since frame 412 (t=41.2 s): median 6.10 -> 9.30 (+52 %); the scene changed (light, product, camera); alarms are not raised for this, the window follows it
    """

    since: int | None
    since_time: float | None
    before: float
    after: float
    frames: int

    def describe(self) -> str:
        """One sentence for an operator."""
        way = "higher" if self.after >= self.before else "lower"
        change = "" if self.before <= 0 else f" ({100.0 * (self.after / self.before - 1.0):+.0f} %)"
        when = "recently" if self.since is None else f"frame {self.since}"
        when += "" if self.since_time is None else f" (t={self.since_time:.1f} s)"
        return (f"normal frames score {way} since {when}: median {self.before:.2f} -> {self.after:.2f}{change}; "
                "the scene changed (light, product, camera); alarms are not raised for this, the window follows it")


@dataclass(frozen=True, eq=False)
class AlarmEvent:
    """Consecutive anomalous frames taken as one alarm (:class:`streamad.stream.events.AlarmEvents`).

    ``number`` counts the events of a run (0, 1, ...); ``start`` / ``end`` are the frame indices of its
    first and last anomalous frame (``start_time`` / ``end_time`` their timestamps); ``frames`` is how
    many anomalous frames it holds (gaps of up to ``EventConfig.max_gap`` quiet frames inside it are
    not counted); the peak is its highest-scoring frame: ``peak_index``, ``peak_score``, ``peak_p_value``,
    ``peak_threshold`` (the threshold it was judged by) and ``peak_heatmap`` (float32 (h, w), or None).
    """

    number: int
    start: int
    end: int
    frames: int
    start_time: float
    end_time: float
    peak_index: int
    peak_score: float
    peak_p_value: float | None
    peak_threshold: float | None
    peak_heatmap: np.ndarray | None

    @property
    def duration(self) -> float:
        """Seconds from the first to the last anomalous frame."""
        return float(self.end_time - self.start_time)

    def describe(self) -> str:
        """One line for an operator.

            >>> AlarmEvent(2, 118, 121, 3, 11.8, 12.1, 119, 37.7, 0.001, 12.5, None).describe()
            'alarm 2: frames 118-121 (3 anomalous, 0.3 s), peak score 37.70 at frame 119 (threshold 12.50, p 0.001)'
        """
        thr = "" if self.peak_threshold is None else f"threshold {self.peak_threshold:.2f}"
        p = "" if self.peak_p_value is None else f"p {self.peak_p_value:.3g}"
        extra = ", ".join(x for x in (thr, p) if x)
        return (f"alarm {self.number}: frames {self.start}-{self.end} ({self.frames} anomalous, "
                f"{self.duration:.1f} s), peak score {self.peak_score:.2f} at frame {self.peak_index}"
                + (f" ({extra})" if extra else ""))
