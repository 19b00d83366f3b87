"""Per-frame decisions on the score stream: alarm threshold, p-value and drift (docs/DESIGN.md section 3,
docs/alarms.md).

Two rules, named by ``DecisionConfig.rule``:

- ``"trusted"`` (the default): the threshold is learned only from scores of frames the engine has
  reason to trust. A frame is *trusted* when, once admitted, the channels kept as nominal its
  ``trust_patches`` highest-scoring patches (the patches its score comes from): a defect's patches
  find no channel that keeps them, so defective frames are left out however many there are, while a
  normal frame's kept patches are unrelated to how high it scored (measured: docs/alarms.md). The
  last ``window`` trusted scores are the calibration set of a conformal test: a frame's **p-value**
  is ``(1 + #{c >= score}) / (n + 1)`` over the ``n`` calibration scores ``c``, it is anomalous when
  the p-value is at most the accepted false alarm rate ``alpha`` (``DecisionConfig.alpha``), that is
  when its score exceeds the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score (the
  threshold). On normal frames this flags at most ``alpha`` of them, by construction. **Honest
  warm-up**: fewer than ``1 / alpha - 1`` scores cannot tell a 1-in-``1/alpha`` event. Before
  ``warmup`` trusted scores there is no threshold; from then until there are enough, the threshold is
  the highest calibration score, which flags at most ``1 / (n + 1)`` of normal frames (3.2 % at 30
  scores, 1 % at 99 for ``alpha = 0.01``): :attr:`ScoreDecisions.false_alarm_bound` says which rate the
  current threshold holds, and a frame is anomalous exactly when its p-value is at most that rate.
  The p-value is given from the first trusted score on. The
  drift detector watches the trusted scores only, so a burst of defects is an alarm, not drift; when
  it flags a change, the calibration restarts at the change point (keeping at least the ``1/alpha - 1``
  most recent trusted scores), so the threshold follows the new normal at once instead of after
  ``window`` frames.
- ``"screened"``: the same conformal threshold and p-value, calibrated on the last ``window`` scores of
  every judged frame **less the ones a robust screen puts outside normal** (:func:`screen_bound`): a
  Gumbel law (the law of a maximum of many patch distances) fitted to the lower part of the scores,
  corrected for the share it screens out, and extrapolated to its ``1 - alpha * screen`` quantile;
  scores above that bound are left out of the calibration set and of the drift detector. It needs no
  verdict from the channels, so it calibrates on textures where the channels keep too few patches for
  the trusted rule (the drifting MTD stream: docs/alarms.md). What it costs: the screen also leaves out
  the normal frames above the bound (about ``alpha * screen`` of them if the law fits), which adds that
  share to the false alarm rate; defects scoring between the threshold and the bound do enter.
- ``"quantile"`` (the former rule): the threshold is the ``1 - alpha`` quantile (river
  ``RollingQuantile``) of the last ``window`` scores of every frame, alarms included; it flags about
  ``alpha`` of all frames whatever is happening, and a defect rate above ``alpha`` lifts it into the
  defects' own scores. The drift detector watches every score.

Either way a score is judged **before** it joins the statistics, so a frame never lowers the bar it is
judged by. With ``"trusted"`` the caller reports each admitted frame's verdict with :meth:`ScoreDecisions.trust`
(the detector does, from its channels; :func:`kept_top` counts the kept patches).

    >>> from streamad.config import DecisionConfig
    >>> config = DecisionConfig(rule="quantile", quantile=0.9, calibration_size=50, warmup=10, drift="none")
    >>> dec = ScoreDecisions(config)
    >>> [dec.update(1.0 + 0.01 * i).threshold for i in range(10)][-1] is None      # warming up
    True
    >>> d = dec.update(5.0)
    >>> round(d.threshold, 2), d.anomalous, d.drift
    (1.08, True, False)

    >>> dec = ScoreDecisions(DecisionConfig(rule="trusted", false_alarm_rate=0.1, warmup=5, drift="none"))
    >>> for i in range(9):                       # judged, then trusted: 9 calibration scores 1.0 .. 1.8
    ...     _ = dec.update(1.0 + 0.1 * i); _ = dec.trust(1.0 + 0.1 * i, True)
    >>> d = dec.update(5.0)                      # ceil(10 * 0.9) = 9th smallest: 1.8
    >>> round(d.threshold, 2), d.anomalous, d.p_value, dec.false_alarm_bound
    (1.8, True, 0.1, 0.1)
    >>> dec.trust(5.0, False) is None, dec.trusted   # not trusted: the calibration set does not change
    (True, 9)

    >>> scr = ScoreDecisions(DecisionConfig(rule="screened", false_alarm_rate=0.1, warmup=5, drift="none"))
    >>> for i in range(30):                      # normal scores 1.00 .. 1.29, judged then fed
    ...     _ = scr.update(1.0 + 0.01 * i)
    >>> _ = [scr.update(9.0) for _ in range(8)]  # a burst of defects: screened out, the threshold stays
    >>> round(scr.threshold, 2), scr.calibration, scr.update(9.0).anomalous
    (1.27, 30, True)

river's quantile and drift detectors cannot be serialised, so the scores fed to the statistics are
kept (the last ``max(window, DRIFT_HISTORY_MAX)`` of them, a bounded ring, with their frame index and
timestamp) and :meth:`ScoreDecisions.from_state` rebuilds everything by replaying them: exactly for
the threshold (it only depends on the last ``window`` scores), exactly for the drift detector while at
most ``DRIFT_HISTORY_MAX`` scores were fed, and from the last ``DRIFT_HISTORY_MAX`` scores after that.

    >>> back = ScoreDecisions.from_state(dec.state_dict(), dec.config)
    >>> back.update(1.05) == dec.update(1.05), back.count, back.trusted
    (True, 11, 9)
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from streamad.config import DecisionConfig
from streamad.results import DriftChange
from streamad.state_schema import StatePart

# Scores kept for rebuilding the drift detector after a reload (800 kB of float64).
DRIFT_HISTORY_MAX = 100_000


class Decision(NamedTuple):
    """``threshold`` (None during warm-up), whether the score exceeds it, whether drift was detected,
    the score's ``p_value`` among the calibration scores (None before there are any), with a drift flag
    what changed (``change``), and the rule whose calibration gave the threshold (``calibration``, None
    without one) with how many scores it held (``calibration_frames``)."""

    threshold: float | None
    anomalous: bool
    drift: bool
    p_value: float | None = None
    change: DriftChange | None = None
    calibration: str | None = None
    calibration_frames: int = 0


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


def kept_top(order: np.ndarray, kept: np.ndarray) -> int:
    """How many of a frame's highest-scoring patches, in ``order`` (patch numbers, highest score first),
    are kept as nominal (``kept``: bool per patch) before the first one that is not: the frame is
    trusted when this is at least ``DecisionConfig.trust_patches``.

        >>> kept_top(np.array([4, 1, 0, 2, 3]), np.array([False, True, True, True, True]))
        2
    """
    miss = np.flatnonzero(~np.asarray(kept, bool)[np.asarray(order)])
    return int(miss[0]) if len(miss) else int(len(order))


def conformal_rank(n: int, alpha: float) -> int:
    """The rank (1-based) of the calibration score that is the threshold: ``ceil((n + 1)(1 - alpha))``;
    above ``n`` no threshold exists yet.

        >>> conformal_rank(99, 0.01), conformal_rank(98, 0.01), conformal_rank(1000, 0.01)
        (99, 99, 991)
    """
    return math.ceil((n + 1) * (1.0 - alpha) - 1e-9)


def _gumbel(p: float) -> float:
    """The standard Gumbel law's quantile at ``p``: ``-ln(-ln p)``."""
    return -math.log(-math.log(p))


SCREEN_LEVELS = (0.25, 0.75)  # the quantiles of the normal scores the screen's Gumbel law is fitted to


def screen_bound(scores: Sequence[float], level: float, rounds: int = 10) -> float:
    """The robust screen of the ``screened`` rule: the score above which a frame is not taken as normal.

    ``scores`` are sorted ascending (the window's judged scores, defects possibly among them). A Gumbel
    law ``mu + beta * G`` is fitted to the normal scores' quartiles (:data:`SCREEN_LEVELS`); the bound is
    its quantile at ``level`` (``1 - alpha * screen``). Defects score high, so with a share ``e`` of the
    scores above the bound the normal scores' quantile ``p`` sits at the scores' quantile ``p (1 - e)``.
    The fit starts from ``e`` = one half (the lower half of the scores only) and is repeated with the
    share it screens out until that share settles (at most ``rounds`` fits), so a burst of defects, up
    to nearly half of the scores, neither stretches the law nor lifts the bound with it.

        >>> clean = [1.0 + 0.01 * i for i in range(100)]
        >>> round(screen_bound(clean, 0.999), 2)
        3.52
        >>> round(screen_bound(sorted(clean + [9.0] * 25), 0.999), 2)   # 20 % defects: about the same
        3.53
    """
    x = np.asarray(scores, np.float64)
    n = len(x)
    if n == 0:
        return math.inf
    lo_p, hi_p = SCREEN_LEVELS
    spread = _gumbel(hi_p) - _gumbel(lo_p)
    out = 0.5
    bound = float(x[-1])
    for _ in range(max(1, rounds)):
        keep = 1.0 - out
        q_lo, q_hi = np.quantile(x, [lo_p * keep, hi_p * keep])
        beta = (q_hi - q_lo) / spread
        if not beta > 0.0:  # (nearly) constant scores: nothing to screen
            return float(x[-1])
        bound = float(q_lo + beta * (_gumbel(level) - _gumbel(lo_p)))
        new_out = min(0.5, (n - int(np.searchsorted(x, bound, side="right"))) / n)
        if abs(new_out - out) < 0.5 / n:
            break
        out = new_out
    return bound


def change_point(scores: np.ndarray) -> int:
    """Where the mean of ``scores`` most likely changed (CUSUM): the first index of the later part.

        >>> change_point(np.array([1.0, 1.1, 0.9, 1.0, 3.0, 3.1, 2.9]))
        4
    """
    x = np.asarray(scores, np.float64)
    if len(x) < 2:
        return 0
    k = np.arange(1, len(x))
    cusum = np.abs(np.cumsum(x)[:-1] - k * x.mean()) / np.sqrt(k * (len(x) - k))
    return int(np.argmax(cusum)) + 1


class ScoreDecisions:
    """Threshold, p-value and drift over a stream of frame scores (see the module docstring):
    ``update(score)`` judges each scored frame; with the ``trusted`` rule ``trust(score, trusted)``
    reports each admitted frame's verdict."""

    STATE_SCALARS = {"count": "int", "drifts": "int"}  # besides the array "history" (streamad.state_schema kinds)
    # Added after format_version 1 was first written; a state without them is read as one of the "quantile"
    # rule (the only one then), whose history holds every score with unknown frame numbers and times.
    OPTIONAL_SCALARS = {"rule": "str", "fed": "int", "trusted": "int", "start": "int", "verdicts": "int"}
    STARVED_AFTER = 10  # x warmup verdicts with fewer than warmup trusted: the rule cannot calibrate here

    def __init__(self, config: DecisionConfig | None = None, seed: int = 0) -> None:
        self.config = config or DecisionConfig(rule="trusted")
        if self.config.rule == "auto":
            raise ValueError("ScoreDecisions runs one rule: for DecisionConfig(rule='auto') use AutoDecisions "
                             "(make_decisions(config) picks the class)")
        self.alpha = self.config.alpha
        self.trusting = self.config.rule == "trusted"
        self.screening = self.config.rule == "screened"
        self._sorting = self.trusting or self.screening  # a conformal threshold over a sorted calibration set
        self._quantile = None
        if not self._sorting:
            from river import stats as river_stats

            self._quantile = river_stats.RollingQuantile(q=self.config.level, window_size=self.config.calibration_size)
        self._drift = make_drift_detector(self.config.drift, self.config.drift_delta, seed)
        self.count = 0  # scores judged by update()
        self.fed = 0  # scores fed to the statistics: every judged one (quantile), the trusted ones (trusted)
        self.trusted = 0  # frames reported trusted (trusted rule)
        self.verdicts = 0  # admitted frames whose verdict was reported, trusted or not (trusted rule)
        self._warned_starved = False
        self.drifts = 0
        self.last_verdicts: list[tuple[int, float, int]] = []  # set by the detector: (index, score, kept_top)
        # one more than the window: a score is recorded before the one it pushes out of the window is evicted
        size = self.config.calibration_size
        keep = size + 1 if self._drift is None else max(size + 1, DRIFT_HISTORY_MAX)
        self._history = np.zeros(keep)  # ring: fed score number i is at i % keep
        self._index = np.full(keep, -1, np.int64)  # its frame index (-1: unknown)
        self._time = np.full(keep, np.nan)  # its timestamp (NaN: unknown)
        # trusted / screened: the fed scores with numbers _low .. fed - 1, sorted (screened: those up to the
        # screen bound are the calibration set); _start: where the calibration may start (the last drift's change point)
        self._sorted: list[float] = []
        self._start = 0
        self._low = 0
        self._bound: tuple[int, float] | None = None  # screened: (fed, screen bound) cached for that many fed

    # ------------------------------------------------------------------ state
    def history(self) -> np.ndarray:
        """The last ``min(fed, capacity)`` scores fed to the statistics, oldest first (float64)."""
        return self._history[self._ring(min(self.fed, len(self._history)))]

    def _ring(self, n: int) -> np.ndarray:
        return (self.fed - n + np.arange(n)) % len(self._history)

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`from_state` needs: the counters and the fed scores with their frame numbers and times."""
        ring = self._ring(min(self.fed, len(self._history)))
        return {"count": self.count, "drifts": self.drifts, "rule": self.config.rule, "fed": self.fed,
                "trusted": self.trusted, "verdicts": self.verdicts, "start": self._start,
                "history": self._history[ring],
                "history_index": self._index[ring], "history_time": self._time[ring]}

    @classmethod
    def from_state(cls, state: dict[str, Any], config: DecisionConfig, seed: int = 0) -> ScoreDecisions:
        """New river objects fed the saved scores again: the last ``window`` to the threshold, all to drift.
        A state saved under another rule keeps its counters but starts the statistics afresh (its
        history holds other scores)."""
        dec = cls(config, seed)
        dec.count, dec.drifts = int(state["count"]), int(state["drifts"])
        if state.get("rule", "quantile") != config.rule:
            return dec
        history = np.asarray(state["history"], np.float64)[-len(dec._history):]
        n = len(history)
        index = np.asarray(state.get("history_index", np.full(n, -1)), np.int64)[-n:] if n else np.zeros(0, np.int64)
        times = np.asarray(state.get("history_time", np.full(n, np.nan)), np.float64)[-n:] if n else np.zeros(0)
        dec.fed = int(state.get("fed", dec.count))
        dec.trusted = int(state.get("trusted", 0))
        dec.verdicts = int(state.get("verdicts", dec.trusted))
        for score in history[-config.calibration_size:].tolist():
            if dec._quantile is not None:
                dec._quantile.update(score)
        dec._start = int(state.get("start", 0))
        ring = dec._ring(n)
        dec._history[ring], dec._index[ring], dec._time[ring] = history, index, times
        if dec._sorting:
            dec._low = dec._lower()
            dec._sorted = sorted(dec._history[dec._ring(dec.fed - dec._low)].tolist())
        if dec._drift is not None:  # screened: the scores within today's bound (the bound each met is not kept)
            bound = dec.screen
            for score in history.tolist():
                if score <= bound:
                    dec._drift.update(score)
        return dec

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a
        ``state_dict`` that :meth:`from_state` cannot use: counters that are not ints, a history that is
        not finite float64 or longer than the scores fed, frame numbers or times that do not match it."""
        where = where or StatePart(".", "decisions")
        where.scalars(state, cls.STATE_SCALARS)
        where.scalars(state, {k: v for k, v in cls.OPTIONAL_SCALARS.items() if k in state})
        history = where.array(state, "history", (-1,), np.float64)
        fed = state.get("fed", state["count"])
        if len(history) > fed:
            raise where.inconsistent(f"{len(history)} saved scores for a count of {fed}")
        if not np.isfinite(history).all():
            raise where.inconsistent("a saved score is not a finite number")
        if state.get("rule", "quantile") not in ("trusted", "screened", "quantile"):
            raise where.inconsistent(f"unknown decision rule {state['rule']!r}")
        if not 0 <= state.get("start", 0) <= fed:
            raise where.inconsistent(f"the calibration starts at score {state['start']} of {fed}")
        for key, dtype in (("history_index", np.int64), ("history_time", np.float64)):
            if key in state and len(where.array(state, key, (-1,), dtype)) != len(history):
                raise where.inconsistent(f"{len(state[key])} entries in {key} for {len(history)} saved scores")

    # ------------------------------------------------------------------ decisions
    @property
    def calibration(self) -> int:
        """Scores the threshold is computed from now: the trusted ones (trusted rule), the recent ones up
        to the screen bound (screened) or all recent ones (quantile)."""
        if self.screening:
            return bisect.bisect_right(self._sorted, self.screen)
        return len(self._sorted) if self.trusting else min(self.fed, self.config.calibration_size)

    def calibration_scores(self) -> np.ndarray:
        """The scores the threshold is computed from now, sorted (trusted rule: the trusted ones)."""
        if self._sorting:
            return np.asarray(self._sorted[:self.calibration], np.float64)
        return np.sort(self._history[self._ring(self.calibration)])

    @property
    def screen(self) -> float:
        """The screened rule's bound (:func:`screen_bound` of the recent scores): scores above it do not
        calibrate; infinite for the other rules."""
        if not self.screening:
            return math.inf
        if self._bound is None or self._bound[0] != self.fed:
            self._bound = (self.fed, screen_bound(self._sorted, 1.0 - self.alpha * self.config.screen))
        return self._bound[1]

    @property
    def needed(self) -> int:
        """Calibration scores needed before the threshold holds the configured rate (trusted rule)."""
        if not self._sorting:
            return self.config.warmup
        return max(self.config.warmup, math.ceil(1.0 / self.alpha - 1.0 - 1e-9))

    def _rank(self) -> int | None:
        """The rank (1-based) of the calibration score that is the threshold; None during warm-up."""
        n = self.calibration
        return None if n < self.config.warmup else min(n, conformal_rank(n, self.alpha))

    @property
    def threshold(self) -> float | None:
        """The current threshold, None during warm-up."""
        if not self._sorting:  # the scores fed since this rule began (a resume under another rule starts over)
            q = None if self.fed < self.config.warmup else self._quantile.get()  # type: ignore[union-attr]
            return None if q is None else float(q)
        rank = self._rank()
        return None if rank is None else float(self._sorted[rank - 1])

    @property
    def false_alarm_bound(self) -> float | None:
        """The share of normal frames the current threshold flags at most (trusted rule): ``alpha`` once
        enough trusted scores are in, ``1 / (n + 1)`` before (the threshold is then the highest of them);
        None without a threshold. The screened rule: the same, plus the normal frames its screen leaves
        out (about ``alpha * screen``). The ``quantile`` rule guarantees nothing: ``alpha`` of all frames."""
        if not self._sorting:
            return None if self.threshold is None else self.alpha
        rank = self._rank()
        n = self.calibration
        return None if rank is None else (n + 1 - rank) / (n + 1)

    def p_value(self, score: float) -> float | None:
        """``(1 + #{c >= score}) / (n + 1)`` over the ``n`` calibration scores ``c`` (None without any)."""
        if self._sorting:
            n = self.calibration
            above = n - bisect.bisect_left(self._sorted, float(score), 0, n)
        else:
            recent = self._history[self._ring(self.calibration)]
            n, above = len(recent), int(np.count_nonzero(recent >= float(score)))
        return None if n == 0 else (1 + above) / (n + 1)

    def peek(self, score: float) -> Decision:
        """The decision for ``score`` without learning from it (no drift check)."""
        threshold = self.threshold
        if threshold is None:
            return Decision(None, False, False, self.p_value(score))
        return Decision(threshold, float(score) > threshold, False, self.p_value(score), None, self.config.rule,
                        self.calibration)

    def update(self, score: float, index: int | None = None, timestamp: float | None = None) -> Decision:
        """Judge ``score`` (the frame ``index`` taken at ``timestamp``) against the current threshold.
        With the ``quantile`` rule it then joins the quantile and the drift detector; with ``screened``
        the recent scores, and the drift detector if it is within the screen bound; with ``trusted``
        nothing changes until :meth:`trust` reports the frame's verdict."""
        score = float(score)
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        decision = self.peek(score)
        self.count += 1
        if self.trusting:
            return decision
        if self.screening:
            bisect.insort(self._sorted, score)
            self._record(score, index, timestamp)
            self._evict()
            change = self._watch() if score <= self.screen else None
        else:
            self._quantile.update(score)  # type: ignore[union-attr]
            change = self._feed(score, index, timestamp)
        return decision._replace(drift=change is not None, change=change)

    def trust(self, score: float, trusted: bool, index: int | None = None,
              timestamp: float | None = None) -> DriftChange | None:
        """Report an admitted frame's verdict (trusted rule): a trusted frame's ``score`` joins the
        calibration set and the drift detector. Returns what changed if that flagged drift."""
        if not self.trusting:
            return None
        self.verdicts += 1
        if not trusted:
            if self.starved and not self._warned_starved:
                self._warned_starved = True
                warnings.warn(self.starved_message(), RuntimeWarning, stacklevel=2)
            return None
        score = float(score)
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        self.trusted += 1
        bisect.insort(self._sorted, score)
        change = self._feed(score, index, timestamp)
        self._evict()
        return change

    @property
    def starved(self) -> bool:
        """True when the trusted rule cannot calibrate on this stream: at least ``STARVED_AFTER x warmup``
        admitted frames judged and fewer than ``warmup`` of them trusted, so there is no threshold and
        nothing is flagged. It happens on textures where few patches find a channel (the drifting MTD
        stream: none of its 999 frames had its 5 highest-scoring patches kept); a warning says so once.

            >>> dec = ScoreDecisions(DecisionConfig(rule="trusted", warmup=2))
            >>> _ = [dec.trust(1.0, False) for _ in range(19)]
            >>> dec.starved
            False
            >>> import warnings
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     _ = dec.trust(1.0, False)
            >>> dec.starved, len(caught)
            (True, 1)
        """
        return (self.trusting and self.verdicts >= self.STARVED_AFTER * self.config.warmup
                and self.trusted < self.config.warmup)

    def starved_message(self) -> str:
        """What :attr:`starved` means, in the user's terms, with what to do."""
        return (f"the trusted alarm rule has no threshold: {self.trusted} of {self.verdicts} admitted frames "
                f"were trusted (their {self.config.trust_patches} highest-scoring patches kept as nominal by "
                f"the channels) and it needs {self.config.warmup}, so no frame is flagged. On textures where "
                f"few patches find a channel this rule cannot calibrate: use the screened rule "
                f"(DecisionConfig(rule='screened'), --rule screened), which calibrates on every frame's score "
                f"less those a robust screen puts outside normal")

    def _lower(self) -> int:
        """The first fed number of the calibration set: the last ``window`` scores, or fewer since the last
        drift's change point, but never fewer than ``needed``."""
        size = min(self.config.calibration_size, max(self.needed, self.fed - self._start))
        return max(0, self.fed - size)

    def _evict(self) -> None:
        """Drop from the calibration set the scores below its first fed number."""
        low = self._lower()
        for j in range(self._low, low):
            old = float(self._history[j % len(self._history)])
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._low = max(self._low, low)

    def _feed(self, score: float, index: int | None, timestamp: float | None) -> DriftChange | None:
        """Add a score to the history and the drift detector; what changed if drift was flagged."""
        self._record(score, index, timestamp)
        return self._watch()

    def _record(self, score: float, index: int | None, timestamp: float | None) -> None:
        """Add a score (of frame ``index`` at ``timestamp``) to the history ring."""
        slot = self.fed % len(self._history)
        self._history[slot] = score
        self._index[slot] = -1 if index is None else int(index)
        self._time[slot] = math.nan if timestamp is None else float(timestamp)
        self.fed += 1

    def _watch(self) -> DriftChange | None:
        """Feed the last recorded score to the drift detector; what changed if drift was flagged."""
        if self._drift is None:
            return None
        self._drift.update(float(self._history[(self.fed - 1) % len(self._history)]))
        if not self._drift.drift_detected:
            return None
        self.drifts += 1
        return self._change()

    def _change(self) -> DriftChange:
        """What changed at a drift flag: the CUSUM change point of the last ``window`` scores fed, the
        medians before and after it, and the frame (and time) where the later part starts. The trusted
        rule's calibration restarts there."""
        ring = self._ring(min(self.fed, max(self.config.calibration_size, 2)))
        scores = self._history[ring]
        cut = change_point(scores)
        if self._sorting:
            self._start = max(self._start, self.fed - len(ring) + cut)
        before, after = scores[:cut], scores[cut:]
        index, when = int(self._index[ring[cut]]), float(self._time[ring[cut]])
        return DriftChange(since=None if index < 0 else index, since_time=None if math.isnan(when) else when,
                           before=float(np.median(before)) if len(before) else float(np.median(after)),
                           after=float(np.median(after)), frames=int(len(after)))


class AutoDecisions:
    """The ``auto`` rule (the default): the trusted rule where the channels can vouch for frames, the
    screened rule where they cannot, chosen by itself, frame by frame, and said so.

    Both calibrations run side by side on every frame (a :class:`ScoreDecisions` for each). The
    channels' verdict is a fair sample of normal frames only where they trust a good share of them: on an
    object on a plain background they keep nearly every normal patch, and whether they kept a frame's top
    patches does not depend on how high it scored; on a texture they keep a quarter of the patches and
    almost never a frame's highest-scoring ones, so the few frames they trust are the lowest-scoring
    normal ones (measured on the drifting MTD stream, docs/alarms.md "One rule for every scene"), and
    a threshold from them would flag normal frames far above the accepted rate. So the trusted
    calibration decides when it holds enough scores for the configured rate (``needed``) **and** the
    share of admitted frames the channels trust (an average over the last ``TRUST_MEMORY`` verdicts) is
    at least ``MIN_TRUST_SHARE``; otherwise the screened calibration does, from its ``warmup``-th score on.
    :attr:`active` names the calibration in use (None while neither can give a threshold) and
    :attr:`calibration` how many scores it holds; a stream whose channels trust too few frames to ever
    calibrate on them is told once (a ``RuntimeWarning``) that the screened rule judges it.

        >>> from streamad.config import DecisionConfig
        >>> dec = AutoDecisions(DecisionConfig(false_alarm_rate=0.1, warmup=5, drift="none"))
        >>> for i in range(12):                   # a texture: every score judged, no frame trusted
        ...     _ = dec.update(1.0 + 0.01 * i); _ = dec.trust(1.0 + 0.01 * i, False)
        >>> dec.active, dec.calibration, round(dec.threshold, 2)
        ('screened', 12, 1.11)
        >>> for i in range(12):                   # the channels trust every frame from now on
        ...     _ = dec.update(2.0 + 0.01 * i); _ = dec.trust(2.0 + 0.01 * i, True)
        >>> dec.active, dec.calibration, round(dec.threshold, 2)
        ('trusted', 12, 2.11)
    """

    MIN_TRUST_SHARE = 0.2  # the channels must trust at least this share of admitted frames to calibrate
    TRUST_MEMORY = 300  # verdicts the trusted share averages over (exponentially)
    PARTS = ("trusted", "screened")

    def __init__(self, config: DecisionConfig | None = None, seed: int = 0) -> None:
        self.config = config or DecisionConfig(rule="auto")
        self.alpha = self.config.alpha
        self.trusting, self.screening = True, False  # it wants the channels' verdicts
        self.parts = {name: ScoreDecisions(replace(self.config, rule=name), seed=seed) for name in self.PARTS}
        self.parts["trusted"]._warned_starved = True  # starvation is this rule's to report (as a fallback)
        self.trust_share = 0.0  # exponential average of the verdicts (1 trusted, 0 not)
        self.last_verdicts: list[tuple[int, float, int]] = []
        self._warned = False

    # ------------------------------------------------------------------ which calibration decides
    @property
    def active(self) -> str | None:
        """``"trusted"`` or ``"screened"``: the calibration that gives the threshold now; None while neither can."""
        trusted = self.parts["trusted"]
        if trusted.calibration >= trusted.needed and self.trust_share >= self.MIN_TRUST_SHARE:
            return "trusted"
        return "screened" if self.parts["screened"].threshold is not None else None

    def _decider(self) -> ScoreDecisions | None:
        """The calibration that gives the threshold now (None while neither can)."""
        active = self.active
        return None if active is None else self.parts[active]

    @property
    def count(self) -> int:
        return self.parts["screened"].count

    @property
    def drifts(self) -> int:
        return self.parts["trusted"].drifts + self.parts["screened"].drifts

    @property
    def trusted(self) -> int:
        return self.parts["trusted"].trusted

    @property
    def verdicts(self) -> int:
        return self.parts["trusted"].verdicts

    @property
    def calibration(self) -> int:
        """Scores the active calibration holds (0 while there is none)."""
        decider = self._decider()
        return 0 if decider is None else decider.calibration

    @property
    def threshold(self) -> float | None:
        decider = self._decider()
        return None if decider is None else decider.threshold

    @property
    def false_alarm_bound(self) -> float | None:
        decider = self._decider()
        return None if decider is None else decider.false_alarm_bound

    @property
    def starved(self) -> bool:
        """True once the channels have had ``STARVED_AFTER x warmup`` verdicts and trust too few frames to
        calibrate on (the screened calibration judges this stream)."""
        return (self.verdicts >= ScoreDecisions.STARVED_AFTER * self.config.warmup
                and self.trust_share < self.MIN_TRUST_SHARE)

    def starved_message(self) -> str:
        return (f"the channels trusted {self.trusted} of {self.verdicts} admitted frames (recently "
                f"{100 * self.trust_share:.0f} %, fewer than the {100 * self.MIN_TRUST_SHARE:.0f} % a fair "
                "sample of normal frames needs): on this scene (a texture, or a busy one) the alarm threshold is "
                "calibrated by the screened rule instead, on every judged frame's score less those a robust "
                "screen puts outside normal (docs/alarms.md); FrameResult.calibration says which rule decides")

    def p_value(self, score: float) -> float | None:
        decider = self._decider()
        return None if decider is None else decider.p_value(score)

    # ------------------------------------------------------------------ decisions
    def peek(self, score: float) -> Decision:
        decider = self._decider()
        return Decision(None, False, False, None) if decider is None else decider.peek(score)

    def update(self, score: float, index: int | None = None, timestamp: float | None = None) -> Decision:
        """Judge ``score`` by the active calibration, then let both learn from it as their rules say."""
        decision = self.peek(score)
        self.parts["trusted"].update(score, index, timestamp)  # counts only: trusted scores come by trust()
        screened = self.parts["screened"].update(score, index, timestamp)
        if decision.calibration == "screened" and screened.drift:
            return decision._replace(drift=True, change=screened.change)
        return decision

    def trust(self, score: float, trusted: bool, index: int | None = None,
              timestamp: float | None = None) -> DriftChange | None:
        """An admitted frame's verdict: the trusted calibration learns from it, and the trusted share moves."""
        active = self.active
        change = self.parts["trusted"].trust(score, trusted, index, timestamp)
        n = min(self.verdicts, self.TRUST_MEMORY)
        self.trust_share += (float(bool(trusted)) - self.trust_share) / max(1, n)
        if self.starved and not self._warned:
            self._warned = True
            warnings.warn(self.starved_message(), RuntimeWarning, stacklevel=2)
        return change if active == "trusted" else None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Both calibrations' states (keys prefixed ``trusted_`` and ``screened_``) and the trusted share."""
        out: dict[str, Any] = {"rule": "auto", "count": self.count, "drifts": self.drifts,
                               "trust_share": float(self.trust_share)}
        for name, part in self.parts.items():
            out.update({f"{name}_{k}": v for k, v in part.state_dict().items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], config: DecisionConfig, seed: int = 0) -> AutoDecisions:
        """The rule ``state_dict`` described; a state saved under another rule starts afresh (as
        :meth:`ScoreDecisions.from_state` does)."""
        dec = cls(config, seed)
        if state.get("rule") != "auto":
            dec.parts["screened"].count = int(state.get("count", 0))
            return dec
        for name in cls.PARTS:
            dec.parts[name] = ScoreDecisions.from_state(cls._part_state(state, name), replace(config, rule=name),
                                                        seed=seed)
        dec.parts["trusted"]._warned_starved = True
        dec.trust_share = float(state["trust_share"])
        dec._warned = dec.starved
        return dec

    @staticmethod
    def _part_state(state: dict[str, Any], name: str) -> dict[str, Any]:
        """The state of calibration ``name`` inside an ``auto`` state (its keys less the ``name_`` prefix)."""
        return {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + "_")}

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`) a state :meth:`from_state` cannot use."""
        where = where or StatePart(".", "decisions")
        if state.get("rule") != "auto":
            ScoreDecisions.check_state(state, where)
            return
        where.scalars(state, {"trust_share": "num"})
        if not 0.0 <= state["trust_share"] <= 1.0:
            raise where.inconsistent(f"the trusted share {state['trust_share']!r} is not in [0, 1]")
        for name in cls.PARTS:
            sub = cls._part_state(state, name)
            if sub.get("rule") != name:
                raise where.inconsistent(f"the auto rule's {name} calibration is missing")
            ScoreDecisions.check_state(sub, where)


def make_decisions(config: DecisionConfig, seed: int = 0) -> ScoreDecisions | AutoDecisions:
    """The decisions object ``config.rule`` names.

        >>> type(make_decisions(DecisionConfig())).__name__, type(make_decisions(DecisionConfig(rule="quantile"))).__name__
        ('AutoDecisions', 'ScoreDecisions')
    """
    return AutoDecisions(config, seed) if config.rule == "auto" else ScoreDecisions(config, seed)


def decisions_from_state(state: dict[str, Any], config: DecisionConfig,
                         seed: int = 0) -> ScoreDecisions | AutoDecisions:
    """:func:`make_decisions`'s object resumed from ``state``."""
    cls = AutoDecisions if config.rule == "auto" else ScoreDecisions
    return cls.from_state(state, config, seed)
