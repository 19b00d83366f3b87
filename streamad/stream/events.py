"""Alarm events: consecutive anomalous frames taken as one alarm, as monitoring systems report them.

A stream of per-frame verdicts is noisy to act on: a defect that stays in view for a second is ten
anomalous frames at 10 fps, and one frame of it may dip under the threshold. :class:`AlarmEvents`
groups them: anomalous frames separated by at most ``EventConfig.max_gap`` quiet frames form one
:class:`~streamad.results.AlarmEvent` with its start, end, peak frame, peak score and peak heatmap. An
event is reported when it closes (``max_gap + 1`` quiet frames in a row, or :meth:`AlarmEvents.flush`
at the end of the stream), and only if it holds at least ``EventConfig.min_frames`` anomalous frames.
Frames that are not ready count as quiet. No I/O here: the live loop publishes and prints the events
(docs/alarms.md, docs/live_io.md).

    >>> from streamad.config import EventConfig
    >>> from streamad.results import FrameResult
    >>> def frame(i, score, thr=5.0):
    ...     return FrameResult(index=i, ready=True, score=score, threshold=thr, anomalous=score > thr,
    ...                        heatmap=None, patch_scores=None, drift=False, admitted=True, timestamp=i / 10)
    >>> events = AlarmEvents(EventConfig(max_gap=1))
    >>> scores = [1, 1, 9, 4, 12, 7, 1, 1, 1, 8, 1, 1]     # 2..5 is one event (a 1-frame gap), 9 another
    >>> [(i, e.start, e.end, e.frames, e.peak_index) for i, s in enumerate(scores)
    ...  if (e := events.update(frame(i, s))) is not None]
    [(7, 2, 5, 3, 4), (11, 9, 9, 1, 9)]
"""

from __future__ import annotations

import math

from streamad.config import EventConfig
from streamad.results import AlarmEvent, FrameResult

__all__ = ["AlarmEvents"]


class AlarmEvents:
    """Groups anomalous frames into :class:`~streamad.results.AlarmEvent` s; ``update(result)`` once per
    frame returns the event that closed with it (or None); ``flush()`` closes the open one at the end.

    ``reported`` counts the events returned, ``suppressed`` the ones shorter than ``min_frames``;
    ``open`` says whether an event is in progress (its first frame: ``open_start``).
    """

    def __init__(self, config: EventConfig | None = None) -> None:
        self.config = config or EventConfig()
        if not isinstance(self.config, EventConfig):
            raise ValueError(f"config must be an EventConfig, got {type(self.config).__name__}")
        self.reported = 0
        self.suppressed = 0
        self._open: dict | None = None  # the event in progress
        self._quiet = 0  # quiet frames since its last anomalous frame

    @property
    def open(self) -> bool:
        return self._open is not None

    @property
    def open_start(self) -> int | None:
        return None if self._open is None else self._open["start"]

    def update(self, result: FrameResult) -> AlarmEvent | None:
        """Take one frame's verdict (frames in stream order); the event that closed with it, if any."""
        if result.anomalous:
            score = float(result.score) if result.score is not None else -math.inf
            ev = self._open
            if ev is None:
                ev = self._open = {"start": result.index, "start_time": float(result.timestamp), "frames": 0,
                                   "peak_score": -math.inf}
            ev["end"], ev["end_time"] = result.index, float(result.timestamp)
            ev["frames"] += 1
            if score > ev["peak_score"]:
                ev.update(peak_index=result.index, peak_score=score, peak_p_value=result.p_value,
                          peak_threshold=result.threshold, peak_heatmap=result.heatmap)
            self._quiet = 0
            return None
        if self._open is None:
            return None
        self._quiet += 1
        return self._close() if self._quiet > self.config.max_gap else None

    def flush(self) -> AlarmEvent | None:
        """Close the event in progress (the stream ended); it is returned if long enough."""
        return None if self._open is None else self._close()

    def _close(self) -> AlarmEvent | None:
        ev, self._open, self._quiet = self._open, None, 0
        assert ev is not None
        if ev["frames"] < self.config.min_frames:
            self.suppressed += 1
            return None
        event = AlarmEvent(number=self.reported, start=ev["start"], end=ev["end"], frames=ev["frames"],
                           start_time=ev["start_time"], end_time=ev["end_time"], peak_index=ev["peak_index"],
                           peak_score=ev["peak_score"], peak_p_value=ev["peak_p_value"],
                           peak_threshold=ev["peak_threshold"], peak_heatmap=ev["peak_heatmap"])
        self.reported += 1
        return event
