"""Per-frame decisions on the score stream: alarm threshold and drift (DESIGN section 3).

The threshold is a streaming quantile (river ``RollingQuantile``) of the recent scores; the drift flag
comes from a river drift detector (ADWIN by default) fed with every score. A score is compared with
the threshold **before** it updates the quantile, so a frame never lowers the bar it is judged by;
then it joins the statistics, anomalous or not (leaving alarms out would freeze the threshold when
the scene changes for good).

    >>> from streamad.config import DecisionConfig
    >>> dec = ScoreDecisions(DecisionConfig(quantile=0.9, window=50, warmup=10, drift="none"))
    >>> [dec.update(1.0 + 0.01 * i).threshold for i in range(10)][-1] is None      # warming up
    True
    >>> d = dec.update(5.0)
    >>> round(d.threshold, 2), d.anomalous, d.drift
    (1.08, True, False)
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .config import DecisionConfig


class Decision(NamedTuple):
    """``threshold`` (None during warm-up), whether the score exceeds it, whether drift was detected."""

    threshold: float | None
    anomalous: bool
    drift: bool


def make_drift_detector(name: str, delta: float, seed: int = 0):
    """The river drift detector called ``name`` (``adwin``, ``page_hinkley``, ``kswin``), or None for ``none``."""
    if name == "none":
        return None
    from river import drift as river_drift  # imported here: river.drift costs about a second to import

    if name == "adwin":
        return river_drift.ADWIN(delta=delta)
    if name == "page_hinkley":
        return river_drift.PageHinkley(delta=delta)
    if name == "kswin":
        return river_drift.KSWIN(alpha=delta, seed=seed)
    raise ValueError(f"unknown drift detector {name!r}: use 'adwin', 'page_hinkley', 'kswin' or 'none'")


class ScoreDecisions:
    """Threshold and drift over a stream of frame scores; ``update(score)`` once per scored frame."""

    def __init__(self, config: DecisionConfig | None = None, seed: int = 0) -> None:
        from river import stats as river_stats

        self.config = config or DecisionConfig()
        self._quantile = river_stats.RollingQuantile(q=self.config.quantile, window_size=self.config.window)
        self._drift = make_drift_detector(self.config.drift, self.config.drift_delta, seed)
        self.count = 0
        self.drifts = 0

    @property
    def threshold(self) -> float | None:
        """The current threshold (the quantile of the scores seen so far), None during warm-up."""
        if self.count < self.config.warmup:
            return None
        return float(self._quantile.get())

    def peek(self, score: float) -> Decision:
        """The decision for ``score`` without learning from it (no drift check)."""
        threshold = self.threshold
        return Decision(threshold, threshold is not None and float(score) > threshold, False)

    def update(self, score: float) -> Decision:
        """Judge ``score`` against the current threshold, then add it to the quantile and the drift detector."""
        score = float(score)
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        threshold, anomalous, _ = self.peek(score)
        self._quantile.update(score)
        self.count += 1
        drift = False
        if self._drift is not None:
            self._drift.update(score)
            drift = bool(self._drift.drift_detected)
            self.drifts += drift
        return Decision(threshold, anomalous, drift)
