"""The soak's subscriber: every message of serve's publisher counted, every gap in its sequence numbers
found, per camera and message type, on a thread that owns the ZeroMQ socket.

``seq`` numbers the messages of one type (frame, event, status) of one camera (docs/live_io.md), so a
jump in it is a message lost on the way: :class:`~streamad.adapters.subscriber.SeqGaps` per (camera,
type) finds each one, and a :class:`Gap` records when it was seen. The count goes on across a
:meth:`MessageCounter.disconnect` (the subscriber fault: the socket closed for a while, then a new one),
so what was published meanwhile shows as a gap at the first message after the return.

    >>> from streamad.adapters.publisher import Publisher
    >>> from streamad.results import FrameResult
    >>> import time
    >>> with Publisher("tcp://127.0.0.1:*") as pub:
    ...     counter = MessageCounter(pub.address, clock=time.monotonic).start()
    ...     time.sleep(0.5)                                   # ZeroMQ's slow joiner
    ...     result = FrameResult(0, False, None, None, False, None, None, False, False, 0.0)
    ...     for seq in range(3):
    ...         _ = pub.publish(result, topic="cam0")
    ...     pub._seqs[("frame", "cam0")] += 2                 # two messages lost on the way
    ...     _ = pub.publish(result, topic="cam0")
    ...     time.sleep(0.5)
    ...     counter.stop()
    >>> counter.count("cam0", "frame"), [(g.camera, g.kind, g.missed, g.seq) for g in counter.gaps()]
    (4, [('cam0', 'frame', 2, 5)])
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from streamad.adapters.subscriber import EventMessage, FrameMessage, SchemaError, SeqGaps, StatusMessage, Subscriber
from streamad.bench.live_soak.helper_thread import HelperThread


@dataclass(frozen=True)
class Gap:
    """``missed`` messages of ``kind`` of ``camera`` lost just before the one numbered ``seq``, seen at ``t``;
    ``since``: when the message before them arrived (or the count started), so they were published in
    ``[since, t]`` - for a sparse kind (events) long before they are seen missing."""

    t: float
    camera: str
    kind: str
    missed: int
    seq: int
    since: float


@dataclass(frozen=True)
class StatusSample:
    """What a camera's status message said at ``t``: its state, the detector time of its last frame
    (``lag_s``: for a paced demo camera the time the frame's scoring took, for a network camera the time
    since it was grabbed), admissions per second, frames, source failures and reconnects."""

    t: float
    camera: str
    state: str
    lag_s: float | None
    admissions_per_s: float | None
    frames: int
    failures: int
    reconnects: int


@dataclass(frozen=True)
class Away:
    """One :meth:`MessageCounter.disconnect`: when the socket closed (``left``) and a new one connected
    (``back``)."""

    left: float
    back: float


class MessageCounter(HelperThread):
    """Subscribes to everything ``address`` publishes and counts it (see the module docstring) on a thread
    of its own (``streamad-soak-listener``). Times come from ``clock``. Readers (any thread):
    :meth:`count`, :meth:`gaps`, :meth:`frames`, :meth:`statuses`, :meth:`first_frame_after`.
    :meth:`stop` ends and joins the thread and closes the socket (safe to call twice)."""

    def __init__(self, address: str, clock: Callable[[], float], *, rcvhwm: int = 10000) -> None:
        self.address, self.clock, self.rcvhwm = address, clock, rcvhwm
        self.malformed = 0
        self._counts: Counter[tuple[str, str]] = Counter()
        self._seqs: dict[tuple[str, str], SeqGaps] = {}
        self._gaps: list[Gap] = []
        self._frames: list[tuple[float, str, int]] = []   # (t, camera, index) of every frame message
        self._events: list[tuple[float, str]] = []        # (t, camera) of every event message
        self._statuses: list[StatusSample] = []
        self._aways: list[Away] = []
        self._last: dict[tuple[str, str], float] = {}     # when each (camera, type) last arrived
        self._started = clock()
        self._lock = threading.Lock()
        self._away_request: tuple[float, threading.Event] | None = None
        self._init_thread("streamad-soak-listener")

    # -- the thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        sub = Subscriber(self.address, rcvhwm=self.rcvhwm)
        try:
            while not self._stop.is_set():
                request = self._away_request
                if request is not None:
                    sub = self._go_away(sub, *request)
                    continue
                try:
                    msg = sub.receive(timeout=0.1)
                except SchemaError:
                    self.malformed += 1
                    continue
                if msg is not None:
                    self._record(self.clock(), msg)
        finally:
            sub.close()

    def _go_away(self, sub: Subscriber, seconds: float, done: threading.Event) -> Subscriber:
        sub.close()
        left = self.clock()
        self._stop.wait(seconds)
        sub = Subscriber(self.address, rcvhwm=self.rcvhwm)
        with self._lock:
            self._aways.append(Away(left, self.clock()))
            self._away_request = None
        done.set()
        return sub

    def _record(self, t: float, msg: FrameMessage | EventMessage | StatusMessage) -> None:
        camera = msg.camera or msg.topic
        with self._lock:
            key = (camera, msg.type)
            self._counts[key] += 1
            missed = self._seqs.setdefault(key, SeqGaps()).see(msg.seq)
            if missed:
                self._gaps.append(Gap(t, camera, msg.type, missed, msg.seq, self._last.get(key, self._started)))
            self._last[key] = t
            if isinstance(msg, FrameMessage):
                self._frames.append((t, camera, msg.index))
            elif isinstance(msg, EventMessage):
                self._events.append((t, camera))
            elif isinstance(msg, StatusMessage):
                f = msg.fields
                self._statuses.append(StatusSample(t, camera, str(f.get("state")), f.get("lag_s"),
                                                   f.get("admissions_per_s"), int(f.get("frames") or 0),
                                                   int(f.get("failures") or 0), int(f.get("reconnects") or 0)))

    # -- the subscriber fault -------------------------------------------------------------------------
    def disconnect(self, seconds: float, timeout: float | None = None) -> Away | None:
        """Close the socket for ``seconds``, then connect a new one; returns when it is back (None if the
        counter stopped first, or after ``timeout``)."""
        done = threading.Event()
        with self._lock:
            self._away_request = (float(seconds), done)
        if not done.wait(seconds + 10.0 if timeout is None else timeout):
            return None
        with self._lock:
            return self._aways[-1]

    # -- readers ----------------------------------------------------------------------------------------
    def count(self, camera: str | None = None, kind: str | None = None) -> int:
        """Messages received (of ``camera``, of ``kind``; None: all)."""
        with self._lock:
            return sum(n for (c, k), n in self._counts.items()
                       if (camera is None or c == camera) and (kind is None or k == kind))

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def gaps(self) -> list[Gap]:
        with self._lock:
            return list(self._gaps)

    def frames(self) -> list[tuple[float, str, int]]:
        with self._lock:
            return list(self._frames)

    def events(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._events)

    def statuses(self) -> list[StatusSample]:
        with self._lock:
            return list(self._statuses)

    def aways(self) -> list[Away]:
        with self._lock:
            return list(self._aways)

    def cameras(self) -> set[str]:
        """The cameras whose frames arrived."""
        with self._lock:
            return {c for (c, k) in self._counts if k == "frame"}

    def first_frame_after(self, camera: str, t: float) -> float | None:
        """When the first frame message of ``camera`` after ``t`` arrived (None: none yet)."""
        with self._lock:
            frames = self._frames  # in order of arrival, so of time
            for i in range(bisect.bisect_right(frames, t, key=lambda r: r[0]), len(frames)):
                if frames[i][1] == camera:
                    return frames[i][0]
        return None

    def last_index(self, camera: str) -> int | None:
        """The frame index of ``camera``'s newest frame message (None: none)."""
        with self._lock:
            for _, cam, index in reversed(self._frames):
                if cam == camera:
                    return index
        return None

