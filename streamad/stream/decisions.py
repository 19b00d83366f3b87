"""Per-frame decisions on the score stream: alarm threshold and drift (docs/DESIGN.md section 3).

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

river's quantile and drift detectors cannot be serialised, so the scores fed are kept (the last
``max(window, DRIFT_HISTORY_MAX)`` of them, a bounded ring) and :meth:`ScoreDecisions.from_state`
rebuilds both by replaying them: exactly for the threshold (it only depends on the last ``window``
scores), exactly for the drift detector while at most ``DRIFT_HISTORY_MAX`` scores were fed, and from
the last ``DRIFT_HISTORY_MAX`` scores after that (the drift flag then approximates the original's).

    >>> back = ScoreDecisions.from_state(dec.state_dict(), dec.config)
    >>> back.update(1.05) == dec.update(1.05), back.count
    (True, 12)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from streamad.config import DecisionConfig
from streamad.state_schema import StatePart

# Scores kept for rebuilding the drift detector after a reload (800 kB of float64).
DRIFT_HISTORY_MAX = 100_000


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
        keep = self.config.window if self._drift is None else max(self.config.window, DRIFT_HISTORY_MAX)
        self._history = np.zeros(keep)  # ring: score number i is at i % keep

    def history(self) -> np.ndarray:
        """The last ``min(count, capacity)`` scores fed, oldest first (float64)."""
        keep = len(self._history)
        n = min(self.count, keep)
        return self._history[(self.count - n + np.arange(n)) % keep]

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`from_state` needs: the counters and the score history (see the module docstring)."""
        return {"count": self.count, "drifts": self.drifts, "history": self.history()}

    @classmethod
    def from_state(cls, state: dict[str, Any], config: DecisionConfig, seed: int = 0) -> ScoreDecisions:
        """New river objects fed the saved scores again: the last ``window`` to the quantile, all to drift."""
        dec = cls(config, seed)
        history = np.asarray(state["history"], np.float64)[-len(dec._history):]
        for score in history[-config.window:].tolist():
            dec._quantile.update(score)
        if dec._drift is not None:
            for score in history.tolist():
                dec._drift.update(score)
        dec.count, dec.drifts = int(state["count"]), int(state["drifts"])
        dec._history[(dec.count - len(history) + np.arange(len(history))) % len(dec._history)] = history
        return dec

    STATE_SCALARS = {"count": "int", "drifts": "int"}  # besides the array "history" (streamad.state_schema kinds)

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a
        ``state_dict`` that :meth:`from_state` cannot use: counters that are not ints, a history that is
        not finite float64 or longer than the count."""
        where = where or StatePart(".", "decisions")
        where.scalars(state, cls.STATE_SCALARS)
        history = where.array(state, "history", (-1,), np.float64)
        if len(history) > state["count"] or not np.isfinite(history).all():
            raise where.inconsistent(f"{len(history)} saved scores for a count of {state['count']}")

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
        self._history[self.count % len(self._history)] = score
        self.count += 1
        drift = False
        if self._drift is not None:
            self._drift.update(score)
            drift = bool(self._drift.drift_detected)
            self.drifts += drift
        return Decision(threshold, anomalous, drift)
