"""The live loop: frames from a source through a detector to a publisher, a recorder and a window.

The loop does no math and the detector does no I/O. ``run_watch`` takes every part as a parameter,
so it runs the same with the real ``StreamDetector`` or a stand-in::

    with open_source("demo") as source:
        summary = run_watch(source, detector, max_frames=100)
    print(summary)

It survives bad frames (a ``ValueError`` from the detector skips the frame and counts it), stops between
frames when ``stop`` is set (see :func:`stop_on_signals` for Ctrl-C and SIGTERM), and returns a
:class:`WatchSummary`, which also holds the time each stage took per frame (waiting for the source, the
detector, drawing the overlay, publishing, recording, the window). Closing the source, publisher and
recorder is the caller's job (``with`` blocks), so they are closed however the loop ends.

Two threads, when the detector is a :class:`~streamad.runtime.detector.DescribingScorer` (``StreamDetector``
is; ``pipeline=False`` or a plain :class:`~streamad.runtime.detector.FrameScorer` keeps one): a
:class:`~streamad.runtime.reader.FrameReader` reads the source and computes each frame's features
(``describe``, the backbone) one frame ahead, while the loop's thread scores the frame before
(``process_described``) and delivers it; the results are the same, in the same order. A stop then
finishes the frame in flight (at most one more frame read), it drops nothing. Everything but the reads
and ``describe`` stays on the caller's thread (the detector's state, publisher, recorder, window, saves).

The frame's timestamp (grab time of a live source, media time of a video file) is passed to the
detector, so the published ``timestamp`` is when the frame was taken, not when it was scored.

With :class:`~streamad.stream.events.AlarmEvents` (``events=``) consecutive anomalous frames become
alarm events: each one is published as an event message when it closes (and the one still open when
the loop ends), and handed to ``on_alarm``.

With a :class:`StateSaver` the detector's state is saved every N frames and when the loop ends in
order (end of the source, ``max_frames``, a stop request, Ctrl-C); a failed save is reported, counted
and retried N frames later, never fatal (docs/persistence.md).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
import numpy as np

from streamad.vision.frames import as_rgb_uint8
from streamad.results import AlarmEvent, FrameResult
from streamad.stream.events import AlarmEvents

from streamad.display.overlay import SnapshotRecorder, VideoRecorder, Window, render_overlay
from streamad.adapters.publisher import CameraPublisher, Publisher
from streamad.adapters.sources import Frame, Source, SourceStats
from streamad.runtime.detector import DescribingScorer, Detector, FrameScorer
from streamad.runtime.reader import FrameReader, ReadEnd, ReadItem

log = logging.getLogger(__name__)


class StopFlag:
    """A stop request that a signal handler may set (a plain attribute: no lock to deadlock on).

    >>> flag = StopFlag()
    >>> bool(flag), flag.set("signal SIGTERM"), bool(flag), flag.reason
    (False, None, True, 'signal SIGTERM')
    """

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str = "stop requested") -> None:
        if self.reason is None:
            self.reason = reason

    def __bool__(self) -> bool:
        return self.reason is not None


@contextmanager
def stop_on_signals(flag: StopFlag, notify: Callable[[str], None] | None = None) -> Iterator[StopFlag]:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM set ``flag`` so the loop finishes its current frame
    and stops; a second Ctrl-C raises ``KeyboardInterrupt`` at once. Previous handlers are restored
    afterwards. Outside the main thread (where Python allows no handlers) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set(f"signal {name}")
        if notify is not None:
            notify(f"{name}: stopping after the current frame (Ctrl-C again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


STAGES = ("read", "features", "detect", "overlay", "publish", "record", "show", "save")


class StateSaver:
    """Saves ``detector`` (its ``save(directory)``) to ``directory`` every ``every`` frames
    (None: only at the end) and at the end of the loop. Never raises: a failure is counted in
    ``failed``, told once per distinct error to ``on_event`` (default: a logged warning), and the next
    save is tried ``every`` frames later.

    >>> class Flaky:
    ...     calls = 0
    ...     def save(self, directory):
    ...         Flaky.calls += 1
    ...         if Flaky.calls % 2:
    ...             raise OSError(28, "No space left on device")
    >>> notes = []
    >>> saver = StateSaver(Flaky(), "state", every=2, on_event=notes.append)
    >>> [saver.frame_done() for _ in range(6)], saver.saved, saver.failed, len(notes)
    ([False, True, False, True, False, True], 1, 2, 1)
    >>> notes[0]
    'cannot save the state to state: No space left on device (errno 28); the loop goes on and retries in 2 frames'
    """

    def __init__(self, detector: Detector, directory: str | os.PathLike[str], every: int | None = 500,
                 on_event: Callable[[str], None] | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1 or None, got {every!r}")
        self.detector, self.directory, self.every = detector, directory, every
        self.on_event = on_event or (lambda line: log.warning("%s", line))
        self.saved = self.failed = 0
        self._since_attempt = self._unsaved = 0
        self._told: set[tuple[str, object]] = set()

    def frame_done(self) -> bool:
        """Count a processed frame; save if ``every`` frames passed since the last try. True if it tried."""
        self._since_attempt += 1
        self._unsaved += 1
        if self.every is None or self._since_attempt < self.every:
            return False
        self.save()
        return True

    def finish(self) -> bool:
        """The final save, unless nothing changed since the last successful one. True if it tried."""
        if not self._unsaved:
            return False
        self.save()
        return True

    def save(self) -> bool:
        """Save now; True on success."""
        self._since_attempt = 0
        try:
            self.detector.save(self.directory)
        except Exception as exc:  # noqa: BLE001 - a failed save must never stop the live loop
            self.failed += 1
            if isinstance(exc, OSError) and exc.strerror:
                key: tuple[str, object] = (type(exc).__name__, exc.errno)
                why = f"{exc.strerror} (errno {exc.errno})"
            else:
                key, why = (type(exc).__name__, str(exc)), str(exc) or type(exc).__name__
            if key not in self._told:
                self._told.add(key)
                retry = f"retries in {self.every} frames" if self.every else "retries at the end"
                self.on_event(f"cannot save the state to {self.directory}: {why}; the loop goes on and {retry}")
            return False
        self.saved += 1
        self._unsaved = 0
        return True


@dataclass(frozen=True)
class StageTime:
    """Time one stage of the loop took per frame, in milliseconds: ``count`` frames, ``mean`` over all
    of them, ``median`` and ``p95`` over the most recent ``StageTimer.keep`` (10,000) frames.

    >>> t = StageTimer()
    >>> for ms in (1.0, 2.0, 3.0, 10.0):
    ...     t.add(ms / 1000)
    >>> s = t.summary()
    >>> s.count, s.mean, s.median
    (4, 4.0, 2.5)
    """

    count: int
    mean: float
    median: float
    p95: float


class StageTimer:
    """Collects the durations (seconds) of one stage; memory is bounded whatever the run's length."""

    keep = 10_000

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.recent: deque[float] = deque(maxlen=self.keep)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.recent.append(seconds)

    def summary(self) -> StageTime:
        if not self.count:
            return StageTime(0, math.nan, math.nan, math.nan)
        recent = np.asarray(self.recent) * 1000.0
        return StageTime(self.count, self.total * 1000.0 / self.count, float(np.median(recent)),
                         float(np.percentile(recent, 95)))


@dataclass(frozen=True)
class WatchSummary:
    """What a ``run_watch`` did. ``frames`` were processed, ``bad_frames`` skipped (the detector
    rejected them), ``stopped`` says why it ended: ``"end"`` of the source, ``"max_frames"``, the
    stop reason (e.g. ``"signal SIGTERM"``), ``"interrupted"`` or ``"window closed"``."""

    frames: int
    ready: int
    anomalies: int
    drifts: int
    bad_frames: int
    seconds: float
    published: int
    publish_dropped: int
    source: SourceStats
    stopped: str
    stages: dict[str, StageTime] = field(default_factory=dict)
    alarm_events: int = 0  # with AlarmEvents: the events reported
    state_dir: str | None = None  # with a StateSaver: where, how many saves succeeded and failed
    state_saves: int = 0
    state_save_failures: int = 0
    admissions: int = 0  # admissions the detector completed and handed back with its results

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def stage_table(self) -> str:
        """Per-frame time of each stage that ran, in milliseconds (``read`` is the wait for the source's
        next frame, including decoding a video file; ``features`` the backbone on the reader's thread when
        the loop describes one frame ahead, else part of ``detect``; ``publish`` is encoding and sending one
        message)."""
        lines = [f"{'stage':<8} {'frames':>7} {'median ms':>10} {'p95 ms':>8} {'mean ms':>8}"]
        for name, t in self.stages.items():
            if t.count:
                lines.append(f"{name:<8} {t.count:>7} {t.median:>10.2f} {t.p95:>8.2f} {t.mean:>8.2f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        s = self.source
        lines = [f"frames {self.frames} in {self.seconds:.1f} s ({self.fps:.1f} fps), stopped: {self.stopped}",
                 f"ready {self.ready}, anomalous {self.anomalies} (alarm events {self.alarm_events}), "
                 f"drift flags {self.drifts}, bad frames skipped {self.bad_frames}",
                 f"source: dropped {s.dropped} stale frames, skipped {s.skipped} unreadable files, "
                 f"{s.failures} failures, {s.reconnects} reconnects"]
        if self.published or self.publish_dropped:
            lines.append(f"published {self.published} messages (frames and events)"
                         + (f", {self.publish_dropped} dropped (send queue full)" if self.publish_dropped else ""))
        if self.state_dir is not None:
            times = "time" if self.state_saves == 1 else "times"
            lines.append(f"state saved {self.state_saves} {times} to {self.state_dir}"
                         + (f", {self.state_save_failures} failed saves" if self.state_save_failures else ""))
        return "\n".join(lines)


def status_line(frames: int, seconds: float, result: FrameResult | None, anomalies: int, bad: int,
                stats: SourceStats) -> str:
    """One-line progress text."""
    fps = frames / seconds if seconds > 0 else 0.0
    text = f"frame {frames}  {fps:5.1f} fps  "
    if result is None or not result.ready or result.score is None:
        text += "warming up"
    else:
        thr = "-" if result.threshold is None else f"{result.threshold:.3f}"
        text += f"score {result.score:.3f} / {thr}"
    text += f"  anomalous {anomalies}"
    if bad:
        text += f"  bad {bad}"
    if stats.dropped:
        text += f"  dropped {stats.dropped}"
    if stats.failures:
        text += f"  failures {stats.failures}"
    return text


def run_watch(source: Source, detector: FrameScorer, *, publisher: Publisher | CameraPublisher | None = None,
              recorder: VideoRecorder | SnapshotRecorder | None = None, window: Window | None = None,
              max_frames: int | None = None, stop: StopFlag | None = None,
              on_result: Callable[[Frame, FrameResult], None] | None = None,
              on_status: Callable[[str], None] | None = None, status_interval: float = 1.0,
              on_bad_frame: Callable[[Frame, ValueError, int], None] | None = None,
              overlay_scale: float | None = None, poll: float = 0.25,
              saver: StateSaver | None = None, events: AlarmEvents | None = None,
              on_alarm: Callable[[AlarmEvent], None] | None = None,
              on_failure: Callable[[WatchSummary], None] | None = None,
              pipeline: bool | None = None) -> WatchSummary:
    """Run ``detector`` on every frame of ``source`` until it ends, ``max_frames`` frames were read,
    ``stop`` is set, Ctrl-C, or the window is closed. Each result goes to ``publisher`` (with the frame
    and source name), its overlay to ``recorder`` and ``window``, and to ``on_result(frame, result)``.
    ``on_status(line)`` gets a progress line at most every ``status_interval`` seconds;
    ``on_bad_frame(frame, error, count)`` hears of each skipped frame (default: a logged warning for
    the first three and every hundredth). ``saver`` saves the detector's state every N frames and once
    more when the loop ends (not when an exception escapes it, nor after a Ctrl-C that interrupted the
    detector in the middle of a frame: its state could be half-updated). ``events`` groups anomalous
    frames into alarm events: each is published (``Publisher.publish_event``) and handed to
    ``on_alarm(event)`` when it closes; the one open at the end is closed then. When an exception
    escapes the loop, ``on_failure`` first gets the summary of what it did (``stopped``: ``"failed: ..."``),
    so that a caller that restarts the loop counts every frame. ``pipeline`` (None: whenever the detector
    is a ``DescribingScorer``) describes each frame one ahead on a reader thread (the module's docstring)."""
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None, got {max_frames!r}")
    describing = isinstance(detector, DescribingScorer)
    if pipeline and not describing:
        raise ValueError(f"pipeline=True needs a detector with describe and process_described "
                         f"(a DescribingScorer such as StreamDetector); {type(detector).__name__} has only process")
    loop = _WatchLoop(source, detector, publisher=publisher, recorder=recorder, window=window,
                      on_result=on_result, on_bad_frame=on_bad_frame, overlay_scale=overlay_scale, saver=saver,
                      events=events, on_alarm=on_alarm, pipeline=describing if pipeline is None else pipeline)
    start = time.monotonic()
    status = _StatusTicker(on_status, status_interval, start)
    try:
        stopped = loop.run(stop if stop is not None else StopFlag(), max_frames, poll, status)
    except Exception as exc:
        if on_failure is not None:
            on_failure(loop.summary(f"failed: {type(exc).__name__}: {exc}", time.monotonic() - start))
        raise
    loop.finish_events()
    loop.finish_state()
    seconds = time.monotonic() - start
    status.final(loop.status_line(seconds))
    return loop.summary(stopped, seconds)


class _StatusTicker:
    """Calls ``on_status`` with a progress line at most every ``interval`` seconds."""

    def __init__(self, on_status: Callable[[str], None] | None, interval: float, start: float) -> None:
        self.on_status, self.interval, self.start = on_status, interval, start
        self.next = start + interval

    def tick(self, line: Callable[[float], str]) -> None:
        """``line(seconds since the start)`` to ``on_status`` if the interval has passed."""
        now = time.monotonic()
        if self.on_status is not None and now >= self.next:
            self.on_status(line(now - self.start))
            self.next = now + self.interval

    def final(self, line: str) -> None:
        if self.on_status is not None:
            self.on_status(line)


class _WatchLoop:
    """One run of :func:`run_watch`: its parts, counters and stage timers; one method per step of a frame."""

    def __init__(self, source: Source, detector: FrameScorer, *, publisher: Publisher | CameraPublisher | None,
                 recorder: VideoRecorder | SnapshotRecorder | None, window: Window | None,
                 on_result: Callable[[Frame, FrameResult], None] | None,
                 on_bad_frame: Callable[[Frame, ValueError, int], None] | None, overlay_scale: float | None,
                 saver: StateSaver | None, events: AlarmEvents | None = None,
                 on_alarm: Callable[[AlarmEvent], None] | None = None, pipeline: bool = False) -> None:
        self.source, self.detector, self.saver, self.pipeline = source, detector, saver, pipeline
        self.events, self.on_alarm = events, on_alarm
        self.publisher, self.recorder, self.window = publisher, recorder, window
        self.on_result, self.on_bad_frame, self.overlay_scale = on_result, on_bad_frame, overlay_scale
        self.need_overlay = (recorder is not None or window is not None
                             or (publisher is not None and publisher.overlay_jpeg))
        self.timers = {name: StageTimer() for name in STAGES}
        self.frames = self.ready = self.anomalies = self.drifts = self.bad = 0
        self.admissions = 0  # admissions completed, as the results hand them back (FrameResult.learned)
        self.last: FrameResult | None = None
        self.busy = False  # inside detector.process: a KeyboardInterrupt now may leave it half-updated
        self._mark = 0.0   # perf_counter at the end of the last timed stage

    def run(self, stop: StopFlag, max_frames: int | None, poll: float, status: _StatusTicker) -> str:
        """Process frames until something stops the loop; return why (``WatchSummary.stopped``)."""
        if self.pipeline:
            return self.run_pipelined(stop, max_frames, poll, status)
        try:
            while True:
                if stop:
                    return stop.reason or "stop requested"
                if max_frames is not None and self.frames + self.bad >= max_frames:
                    return "max_frames"
                frame = self.read(poll)
                if frame is None:
                    if self.source.ended:
                        return "end"
                    continue  # nothing yet (live source): only the read that returns a frame is timed
                result = self.detect(frame)
                if result is None:
                    continue
                if not self.deliver(frame, result):
                    return "window closed"
                self.save_tick()
                status.tick(self.status_line)
        except KeyboardInterrupt:
            return "interrupted"

    def run_pipelined(self, stop: StopFlag, max_frames: int | None, poll: float, status: _StatusTicker) -> str:
        """``run`` with a :class:`FrameReader` reading and describing one frame ahead; this thread scores and
        delivers. A closed window stops the reading; the frame already read is still scored and delivered."""
        reader = FrameReader(self.source, self.detector.describe, stop=stop,  # type: ignore[attr-defined]
                             max_frames=max_frames, poll=poll).start()
        closed = False
        try:
            while True:
                item = reader.next(timeout=poll)
                if item is None:
                    continue
                if isinstance(item, ReadEnd):
                    if item.error is not None:
                        raise item.error
                    return "window closed" if closed else item.reason
                self.timers["read"].add(item.read_s)
                self._mark = time.perf_counter()
                result = self.detect_described(item)
                if result is None:
                    continue
                if not self.deliver(item.frame, result, show=not closed) and not closed:
                    closed = True
                    reader.finish_reading("window closed")
                self.save_tick()
                status.tick(self.status_line)
        except KeyboardInterrupt:
            return "interrupted"
        finally:
            if not reader.close():
                log.warning("the frame reader did not end within 10 s (a source read or the backbone hangs)")

    def detect_described(self, item: ReadItem) -> FrameResult | None:
        """``detect`` for a frame the reader described: its error (a bad frame, counted; anything else,
        raised) or the second half of the detector on it."""
        if item.error is not None:
            if not isinstance(item.error, ValueError):
                raise item.error
            self.skip(item.frame, item.error)
            return None
        self.timers["features"].add(item.describe_s)
        return self.run_detector(item.frame, self.detector.process_described, item.described)  # type: ignore[attr-defined]

    def read(self, poll: float) -> Frame | None:
        t0 = time.perf_counter()
        frame = self.source.read(timeout=poll)
        if frame is not None:
            self._mark = time.perf_counter()
            self.timers["read"].add(self._mark - t0)
        return frame

    def detect(self, frame: Frame) -> FrameResult | None:
        """The detector's result, counted; None for a frame it rejected (counted and reported)."""
        return self.run_detector(frame, self.detector.process, frame.image, timestamp=frame.timestamp)

    def run_detector(self, frame: Frame, call: Callable[..., FrameResult], *args: object,
                     **kwargs: object) -> FrameResult | None:
        """``call(*args, **kwargs)`` (the detector, or its scoring half) on ``frame``, with ``busy`` set while
        it runs (a KeyboardInterrupt leaves it set: no final save of a half-updated detector); its result
        counted, or None for a frame it rejected (counted and reported)."""
        self.busy = True
        try:
            result = call(*args, **kwargs)
        except ValueError as exc:
            self.busy = False
            self.skip(frame, exc)
            return None
        self.busy = False
        return self.count(result)

    def skip(self, frame: Frame, exc: ValueError) -> None:
        """A frame the detector rejected: counted and reported."""
        self.bad += 1
        if self.on_bad_frame is not None:
            self.on_bad_frame(frame, exc, self.bad)
        elif self.bad <= 3 or self.bad % 100 == 0:
            log.warning("%s frame %d skipped (%d so far): %s", frame.source, frame.index, self.bad, exc)

    def count(self, result: FrameResult) -> FrameResult:
        """A result the detector returned: timed (``detect``) and counted."""
        self._mark = _lap(self.timers["detect"], self._mark)
        self.frames += 1
        self.ready += bool(result.ready)
        self.anomalies += bool(result.anomalous)
        self.drifts += bool(result.drift)
        self.admissions += len(result.learned)
        self.last = result
        return result

    def deliver(self, frame: Frame, result: FrameResult, show: bool = True) -> bool:
        """Overlay, publish, record, ``on_result`` and the window (unless ``show`` is False); False when the
        window was closed."""
        t0, overlay = self._mark, None
        if self.need_overlay:
            # the detector accepted the frame, so it converts (a custom source may yield grayscale,
            # float or RGBA arrays; the overlay needs RGB uint8)
            overlay = render_overlay(as_rgb_uint8(frame.image), result, scale=self.overlay_scale,
                                     label=f"{frame.source} #{result.index}")
            t0 = _lap(self.timers["overlay"], t0)
        if self.publisher is not None:
            self.publisher.publish(result, frame.image, frame.source, overlay=overlay)
            t0 = _lap(self.timers["publish"], t0)
        if self.recorder is not None and overlay is not None:
            self.recorder.write(overlay, ready=bool(result.ready))
            _lap(self.timers["record"], t0)
        if self.on_result is not None:
            self.on_result(frame, result)
        if self.events is not None:
            self.alarm(self.events.update(result), frame.source)
        if self.window is not None and overlay is not None and show:
            t0 = time.perf_counter()
            is_open = self.window.show(overlay)
            _lap(self.timers["show"], t0)
            return is_open
        return True

    def alarm(self, event: AlarmEvent | None, source: str) -> None:
        """A closed alarm event (if any) to the publisher and ``on_alarm``."""
        if event is None:
            return
        if self.publisher is not None:
            self.publisher.publish_event(event, source)
        if self.on_alarm is not None:
            self.on_alarm(event)

    def finish_events(self) -> None:
        """Close the alarm event still open when the loop ends."""
        if self.events is not None:
            self.alarm(self.events.flush(), self.source.name)

    def save_tick(self) -> None:
        if self.saver is not None:
            t0 = time.perf_counter()
            if self.saver.frame_done():
                _lap(self.timers["save"], t0)

    def finish_state(self) -> None:
        """The final save, unless the loop was interrupted in the middle of a frame."""
        if self.saver is not None and self.busy:
            self.saver.on_event("not saving the state: interrupted in the middle of a frame (the state saved "
                                "last is kept)")
        elif self.saver is not None:
            t0 = time.perf_counter()
            if self.saver.finish():
                _lap(self.timers["save"], t0)

    def status_line(self, seconds: float) -> str:
        return status_line(self.frames, seconds, self.last, self.anomalies, self.bad, self.source.stats)

    def summary(self, stopped: str, seconds: float) -> WatchSummary:
        publisher, saver = self.publisher, self.saver
        published = publisher.sent + publisher.events_sent if publisher else 0
        return WatchSummary(frames=self.frames, ready=self.ready, anomalies=self.anomalies, drifts=self.drifts,
                            bad_frames=self.bad, seconds=seconds, published=published,
                            publish_dropped=publisher.dropped if publisher else 0, source=self.source.stats,
                            stopped=stopped,
                            stages={name: t.summary() for name, t in self.timers.items() if t.count},
                            alarm_events=0 if self.events is None else self.events.reported,
                            state_dir=None if saver is None else str(saver.directory),
                            state_saves=0 if saver is None else saver.saved,
                            state_save_failures=0 if saver is None else saver.failed,
                            admissions=self.admissions)


def _lap(timer: StageTimer, t0: float) -> float:
    """Record the time since ``t0`` (``time.perf_counter``) in ``timer``; return now (the start of the
    next stage)."""
    now = time.perf_counter()
    timer.add(now - t0)
    return now
