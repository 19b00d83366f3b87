"""A camera's live status: counters, rates and recent scores, written by its loop, read as snapshots.

The camera's thread calls :meth:`CameraStatus.frame` once per result (and :meth:`alarm`, :meth:`state`);
readers (the status publisher, the web page) call :meth:`snapshot`, which copies everything under the
same lock into an immutable :class:`StatusSnapshot`: a reader never sees a half-updated camera.

    >>> from streamad.results import FrameResult
    >>> st = CameraStatus("line1", history_s=60)
    >>> for i in range(3):
    ...     st.frame(FrameResult(i, True, 1.0 + i, 2.5, i == 2, None, None, False, True, float(i)),
    ...              lag_s=0.01, dropped=0, nominal=100)
    >>> snap = st.snapshot()
    >>> snap.frames, snap.anomalous, snap.threshold, [round(s, 1) for _, s, _ in snap.history]
    (3, 1, 2.5, [1.0, 2.0, 3.0])
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from streamad.results import AlarmEvent, FrameResult

RATE_WINDOW_S = 5.0  # fps and admissions per second are measured over the last few seconds
HISTORY_POINTS = 1500  # at most this many (time, score, threshold) points are kept per camera
ALARMS_KEPT = 10


@dataclass(frozen=True)
class StatusSnapshot:
    """One camera at one moment (every field is a copy). ``state``: ``starting``, ``running``,
    ``waiting`` (no frame for 2 s: a live source reconnecting), ``ended``, ``stopped`` or ``failed``.
    ``history``: (time, score or None, threshold or None) of recent frames; ``alarms``: the latest alarm
    events as dicts (newest last)."""

    camera: str
    time: float
    state: str
    frames: int
    fps: float
    lag_s: float | None
    dropped: int
    bad_frames: int
    admissions_per_s: float
    nominal_patches: int | None
    score: float | None
    threshold: float | None
    anomalous: int
    alarms: int
    reconnects: int
    failures: int
    last_index: int | None
    history: tuple[tuple[float, float | None, float | None], ...] = ()
    latest_alarms: tuple[dict[str, Any], ...] = ()
    note: str = ""

    def fields(self) -> dict[str, Any]:
        """The status fields of the wire format (no history)."""
        out = asdict(self)
        for key in ("history", "latest_alarms", "camera", "last_index", "note"):
            out.pop(key)
        return out


@dataclass
class CameraStatus:
    """The writer side (one camera thread) and the snapshot for readers (any thread)."""

    camera: str
    history_s: float = 300.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._state, self._note = "starting", ""
        self._frames = self._anomalous = self._alarms = self._bad = self._dropped = 0
        self._reconnects = self._failures = 0
        self._last: FrameResult | None = None
        self._lag: float | None = None
        self._nominal: int | None = None
        self._times: deque[float] = deque()
        self._admits: deque[tuple[float, int]] = deque()
        self._history: deque[tuple[float, float | None, float | None]] = deque(maxlen=HISTORY_POINTS)
        self._latest: deque[dict[str, Any]] = deque(maxlen=ALARMS_KEPT)
        self._last_frame_time: float | None = None

    def frame(self, result: FrameResult, *, lag_s: float | None, dropped: int, nominal: int | None,
              bad_frames: int = 0, reconnects: int = 0, failures: int = 0) -> None:
        """Count one result (the camera's thread)."""
        now = time.time()
        learned = len(result.learned)  # admissions completed since the previous result
        with self._lock:
            self._state = "running"
            self._frames += 1
            self._anomalous += bool(result.anomalous)
            self._last, self._lag, self._nominal, self._dropped = result, lag_s, nominal, dropped
            self._reconnects, self._failures = reconnects, failures
            self._bad = max(self._bad, bad_frames)
            self._times.append(now)
            if learned:
                self._admits.append((now, learned))
            self._trim(now)
            self._history.append((now, result.score, result.threshold))
            self._last_frame_time = now

    def alarm(self, event: AlarmEvent) -> None:
        """Count one alarm event (the camera's thread)."""
        with self._lock:
            self._alarms += 1
            self._latest.append({"event": event.number, "start": event.start, "end": event.end,
                                 "frames": event.frames, "peak_index": event.peak_index,
                                 "peak_score": event.peak_score, "time": time.time()})

    def state(self, state: str, note: str = "") -> None:
        with self._lock:
            self._state, self._note = state, note

    def bad(self, count: int) -> None:
        """Frames the detector rejected so far (the camera's thread)."""
        with self._lock:
            self._bad = count

    def sources(self, *, dropped: int, reconnects: int, failures: int) -> None:
        """The source's counters, while no frame comes (a camera reconnecting)."""
        with self._lock:
            self._dropped, self._reconnects, self._failures = dropped, reconnects, failures

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > RATE_WINDOW_S:
            self._times.popleft()
        while self._admits and now - self._admits[0][0] > RATE_WINDOW_S:
            self._admits.popleft()
        while self._history and now - self._history[0][0] > self.history_s:
            self._history.popleft()

    def snapshot(self) -> StatusSnapshot:
        """A consistent copy of the camera's status (any thread)."""
        now = time.time()
        with self._lock:
            self._trim(now)
            state = self._state
            if state == "running" and self._last_frame_time is not None and now - self._last_frame_time > 2.0:
                state = "waiting"
            span = max(1e-9, min(RATE_WINDOW_S, now - self._times[0])) if self._times else 0.0
            fps = (len(self._times) - 1) / span if len(self._times) > 1 and span > 0 else 0.0
            admits = sum(n for _, n in self._admits) / RATE_WINDOW_S if self._admits else 0.0
            last = self._last
            return StatusSnapshot(
                camera=self.camera, time=now, state=state, frames=self._frames, fps=fps, lag_s=self._lag,
                dropped=self._dropped, bad_frames=self._bad, admissions_per_s=admits, nominal_patches=self._nominal,
                score=None if last is None else last.score, threshold=None if last is None else last.threshold,
                anomalous=self._anomalous, alarms=self._alarms, reconnects=self._reconnects, failures=self._failures,
                last_index=None if last is None else last.index, history=tuple(self._history),
                latest_alarms=tuple(self._latest), note=self._note)
