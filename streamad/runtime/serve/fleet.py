"""Many cameras, one process: a live loop per camera, one backbone, one publisher, status once a second.

Each camera runs :func:`streamad.runtime.live.run_watch`, the loop ``streamad watch`` runs, on a
thread of its own, with its own source, detector (window, index, learner, threshold, state saver) and
alarm events; its detector's extractor is a :class:`~streamad.runtime.serve.batcher.BatchedExtractor`,
so the backbone work of all cameras goes through one :class:`~streamad.runtime.serve.batcher.SharedBackbone`
thread in batches. Frames and events go out on the shared :class:`~streamad.adapters.publisher.Publisher`
with the camera's name as topic (:class:`~streamad.adapters.publisher.CameraPublisher`); a status thread
publishes each camera's :class:`~streamad.runtime.serve.status.CameraStatus` every ``status_every``
seconds. ``streamad watch`` is the one-camera case: the loop then runs on the calling thread. With
``[serve] workers`` a camera's detector is a :class:`~streamad.runtime.serve.workers.RemoteDetector`:
the detector itself (scoring, learner, decisions, state) lives in a worker process, and a worker that
dies fails that camera's loop like any other error (reported, restarted); see that module.

Threads and what they own (docs/DESIGN.md, "Threads of `streamad serve`"):

- a camera thread owns its source reads, its detector's scoring, its events and its state saver; it
  writes its ``CameraStatus`` and ``latest`` entry (one tuple, replaced whole);
- the backbone thread owns the extractor calls; the learner threads (background learning) own the
  channels of their detector while they admit;
- the status thread and the web server's threads only read snapshots.

Stopping: Ctrl-C or SIGTERM (or :meth:`Fleet.stop`) sets one :class:`~streamad.runtime.live.StopFlag`;
every camera finishes its current frame, closes its last alarm event, saves its state, and its thread
ends; then the status thread and the backbone stop. A camera whose loop fails with an unexpected error
is reported, waits (0.5 s, 1 s, ... up to 10 s), reopens its source and goes on; the others never wait
for it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamad.results import AlarmEvent, FrameResult
from streamad.stream.events import AlarmEvents

from streamad.display.overlay import SnapshotRecorder, VideoRecorder, Window
from streamad.runtime.detector import Detector
from streamad.runtime.live import StateSaver, StopFlag, WatchSummary, run_watch, stop_on_signals
from streamad.adapters.publisher import CameraPublisher, Publisher
from streamad.runtime.heap import TRIM_EVERY_S, HeapTrimmer
from streamad.runtime.serve.batcher import BatchedExtractor, SharedBackbone
from streamad.runtime.serve.status import CameraStatus
from streamad.adapters.sources import Frame, Source

log = logging.getLogger(__name__)
EventSink = Callable[[str], None]


FIRST_BACKOFF_S = 0.5  # a failed loop's first wait; doubled per failure in a row, up to ``max_backoff``


@dataclass
class Camera:
    """One camera of a :class:`Fleet`: its ``name`` (topic, tile), opened ``source``, ``detector`` and
    what its loop needs. ``reopen`` gives a fresh source after a failure (None: the camera ends on one).
    ``recorder`` and ``window`` are ``streamad watch``'s; ``on_result`` / ``on_alarm`` /
    ``on_bad_frame`` hear of its results, events and skipped frames."""

    name: str
    source: Source
    detector: Detector
    saver: StateSaver | None = None
    events: AlarmEvents | None = None
    max_frames: int | None = None
    reopen: Callable[[], Source] | None = None
    recorder: VideoRecorder | SnapshotRecorder | None = None
    window: Window | None = None
    on_result: Callable[[Frame, FrameResult], None] | None = None
    on_alarm: Callable[[AlarmEvent], None] | None = None
    on_bad_frame: Callable[[Frame, ValueError, int], None] | None = None
    on_status: EventSink | None = None
    status_interval: float = 1.0

    @property
    def extractor(self) -> BatchedExtractor | None:
        """The camera's handle on the fleet's shared backbone (None: its detector has an extractor of its own)."""
        ext = self.detector.extractor
        return ext if isinstance(ext, BatchedExtractor) else None


@dataclass(frozen=True)
class CameraSummary:
    """How one camera's run went: its name, the loop's :class:`WatchSummary` (frames summed over
    restarts), and how often its loop failed and restarted."""

    name: str
    summary: WatchSummary
    restarts: int = 0
    error: str | None = None

    def __str__(self) -> str:
        s = self.summary
        text = (f"{self.name}: frames {s.frames} in {s.seconds:.1f} s ({s.fps:.1f} fps), stopped: {s.stopped}; "
                f"ready {s.ready}, anomalous {s.anomalies} (alarm events {s.alarm_events}), drift flags {s.drifts}, "
                f"bad frames {s.bad_frames}; source dropped {s.source.dropped}, {s.source.failures} failures, "
                f"{s.source.reconnects} reconnects")
        if s.published or s.publish_dropped:
            text += f"; published {s.published}" + (f" ({s.publish_dropped} dropped)" if s.publish_dropped else "")
        if s.state_dir is not None:
            text += f"; state saved {s.state_saves}x" + (f", {s.state_save_failures} failed" if s.state_save_failures
                                                         else "")
        if self.restarts:
            text += f"; loop restarted {self.restarts}x ({self.error})"
        return text


@dataclass(frozen=True)
class FleetSummary:
    """Every camera's :class:`CameraSummary`, the wall time, and the backbone's batching."""

    cameras: tuple[CameraSummary, ...]
    seconds: float
    stopped: str
    batches: int = 0
    mean_batch: float = 0.0

    @property
    def frames(self) -> int:
        return sum(c.summary.frames for c in self.cameras)

    @property
    def fps(self) -> float:
        """Aggregate frames per second: every camera's frames over the run's wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"{len(self.cameras)} camera(s), {self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps "
                 f"together), stopped: {self.stopped}"]
        if self.batches:
            lines.append(f"backbone: {self.batches} batches, {self.mean_batch:.2f} frames per batch on average")
        lines += [str(c) for c in self.cameras]
        return "\n".join(lines)


class Fleet:
    """The cameras of one process (see the module docstring). ``publisher`` is shared (each camera
    publishes on its own topic); ``backbone`` is the shared batching thread (stopped by :meth:`run`
    at the end); ``status_every`` seconds between status messages (None or 0: none); events for the user
    go to ``on_event``. ``statuses`` and ``latest`` (the newest (frame, result) of each camera) are what
    the web page reads. ``heap_trim_every`` seconds between hand-backs of the C heap's free memory
    (:mod:`streamad.runtime.heap`; None: never) while it runs."""

    def __init__(self, cameras: Sequence[Camera], *, publisher: Publisher | None = None,
                 backbone: SharedBackbone | None = None, status_every: float | None = 1.0,
                 on_event: EventSink | None = None, history_s: float = 300.0, poll: float = 0.25,
                 max_backoff: float = 10.0, heap_trim_every: float | None = TRIM_EVERY_S) -> None:
        names = [c.name for c in cameras]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a fleet needs cameras with distinct names, got {names}")
        self.cameras = list(cameras)
        self.publisher, self.backbone = publisher, backbone
        self.status_every = status_every or None
        self.on_event = on_event or (lambda line: log.warning("%s", line))
        self.poll, self.max_backoff = poll, max_backoff
        self.heap_trim_every = heap_trim_every
        self.stop_flag = StopFlag()
        self.statuses = {c.name: CameraStatus(c.name, history_s=history_s) for c in self.cameras}
        self.latest: dict[str, tuple[Frame, FrameResult]] = {}
        self._results: dict[str, CameraSummary] = {}
        self._status_done = threading.Event()

    # -- running -----------------------------------------------------------------------------------
    def stop(self, reason: str = "stop requested") -> None:
        """Ask every camera to stop after its current frame (any thread)."""
        self.stop_flag.set(reason)

    def run(self, *, signals: bool = True) -> FleetSummary:
        """Run every camera until each has ended or a stop (Ctrl-C, SIGTERM, :meth:`stop`); the summary
        lists each camera. One camera runs on this thread, several on threads of their own."""
        start = time.monotonic()
        status_thread = None
        if self.status_every and self.publisher is not None:
            status_thread = threading.Thread(target=self._status_loop, name="streamad-status", daemon=True)
            status_thread.start()
        trimmer = None if not self.heap_trim_every else HeapTrimmer(self.heap_trim_every).start()
        try:
            if signals:
                with stop_on_signals(self.stop_flag, notify=self.on_event):
                    self._run_cameras()
            else:
                self._run_cameras()
        finally:
            self._status_done.set()
            if status_thread is not None:
                status_thread.join(5.0)
            if trimmer is not None:
                trimmer.stop()
            if self.backbone is not None:
                self.backbone.stop()
        summaries = tuple(self._results[c.name] for c in self.cameras if c.name in self._results)
        stopped = self.stop_flag.reason or "end"
        return FleetSummary(summaries, time.monotonic() - start, stopped,
                            batches=0 if self.backbone is None else self.backbone.batches,
                            mean_batch=0.0 if self.backbone is None else self.backbone.mean_batch())

    def _run_cameras(self) -> None:
        if len(self.cameras) == 1:
            self._camera_main(self.cameras[0])
            return
        threads = [threading.Thread(target=self._camera_main, args=(c,), name=f"streamad-camera-{c.name}",
                                    daemon=True) for c in self.cameras]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:  # a second Ctrl-C: do not wait for the cameras' last frames
            self.stop_flag.set("interrupted")
            raise

    def _camera_main(self, cam: Camera) -> None:
        """One camera's thread: its loop, restarted after an unexpected failure."""
        status = self.statuses[cam.name]
        publisher = None if self.publisher is None else CameraPublisher(self.publisher, cam.name)
        events = cam.events if cam.events is not None else AlarmEvents()
        runs: list[WatchSummary] = []  # every run of the loop, the failed ones too (their frames count)
        finished = False               # the last run ended as a loop ends (source, max_frames, stop)
        restarts, error, delay = 0, None, FIRST_BACKOFF_S
        frames_at_failure = 0
        try:
            while True:
                left = None if cam.max_frames is None else cam.max_frames - sum(s.frames + s.bad_frames for s in runs)
                try:
                    runs.append(run_watch(
                        cam.source, cam.detector, publisher=publisher, recorder=cam.recorder, window=cam.window,
                        max_frames=left, stop=self.stop_flag, on_result=self._on_result(cam, status),
                        on_status=cam.on_status, status_interval=cam.status_interval,
                        on_bad_frame=self._on_bad_frame(cam, status), poll=self.poll, saver=cam.saver, events=events,
                        on_alarm=self._on_alarm(cam, status), on_failure=runs.append))
                    finished = True
                    break
                except Exception as exc:  # noqa: BLE001 - one camera's failure must not end the others
                    if cam.reopen is None and len(self.cameras) == 1:
                        raise  # streamad watch: an unexpected error ends the run, as it always did
                    restarts, error = restarts + 1, f"{type(exc).__name__}: {exc}"
                    frames = status.snapshot().frames
                    if frames > frames_at_failure:  # it ran again since the last failure: start the back-off over
                        delay, frames_at_failure = FIRST_BACKOFF_S, frames
                    status.state("failed", error)
                    if cam.reopen is None or self.stop_flag:
                        self.on_event(f"{cam.name}: stopped on an error: {error}")
                        break
                    self.on_event(f"{cam.name}: the loop failed ({error}); reopening the source in {delay:g} s")
                    if not self._sleep(delay) or not self._reopen(cam):
                        break
                    delay = min(self.max_backoff, delay * 2)
        finally:
            if cam.extractor is not None and self.backbone is not None:
                self.backbone.leave(cam.extractor)
        summary = _merge(runs, cam) if runs else _empty(cam, self.stop_flag.reason or "failed")
        status.state("failed" if not finished else "ended" if summary.stopped == "end" else "stopped")
        self._results[cam.name] = CameraSummary(cam.name, summary, restarts, error)

    def _reopen(self, cam: Camera) -> bool:
        """A fresh source for ``cam``, tried every ``max_backoff`` seconds until one opens (True) or a stop
        comes (False): a camera off the network for days waits in a loop, not a deepening recursion."""
        try:
            cam.source.close()
        except Exception:  # noqa: BLE001 - it failed already
            pass
        failures = 0
        while True:
            try:
                cam.source = cam.reopen()  # type: ignore[misc]
                return True
            except Exception as exc:  # noqa: BLE001
                failures += 1
                if failures <= 3 or failures % 100 == 0:
                    self.on_event(f"{cam.name}: cannot reopen the source ({failures} tries so far): {exc}")
            if not self._sleep(self.max_backoff):
                return False

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless a stop comes; False if it did."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.stop_flag:
                return False
            time.sleep(min(0.05, end - time.monotonic()))
        return not self.stop_flag

    # -- hooks of a camera's loop ----------------------------------------------------------------------
    def _on_result(self, cam: Camera, status: CameraStatus) -> Callable[[Frame, FrameResult], None]:
        def hook(frame: Frame, result: FrameResult) -> None:
            stats = cam.source.stats
            lag = (time.time() - frame.timestamp) if cam.source.live else sum(result.timings.values()) / 1000.0
            status.frame(result, lag_s=lag, dropped=stats.dropped,
                         nominal=cam.detector.nominal_count,
                         reconnects=stats.reconnects, failures=stats.failures)
            self.latest[cam.name] = (frame, result)  # one assignment: a reader sees a whole pair
            if cam.on_result is not None:
                cam.on_result(frame, result)
        return hook

    def _on_alarm(self, cam: Camera, status: CameraStatus) -> Callable[[AlarmEvent], None]:
        def hook(event: AlarmEvent) -> None:
            status.alarm(event)
            if cam.on_alarm is not None:
                cam.on_alarm(event)
        return hook

    def _on_bad_frame(self, cam: Camera, status: CameraStatus) -> Callable[[Frame, ValueError, int], None]:
        def hook(frame: Frame, error: ValueError, count: int) -> None:
            status.bad(count)
            if cam.on_bad_frame is not None:
                cam.on_bad_frame(frame, error, count)
            elif count <= 3 or count % 100 == 0:
                self.on_event(f"{cam.name}: frame {frame.index} skipped ({count} so far): {error}")
        return hook

    # -- status messages -------------------------------------------------------------------------------
    def _status_loop(self) -> None:
        assert self.publisher is not None and self.status_every
        while not self._status_done.wait(self.status_every):
            self.publish_status()
        self.publish_status()  # the last word: every camera's final state

    def publish_status(self) -> None:
        """One status message per camera, now."""
        if self.publisher is None:
            return
        for cam in self.cameras:
            stats = cam.source.stats
            status = self.statuses[cam.name]
            status.sources(dropped=stats.dropped, reconnects=stats.reconnects, failures=stats.failures)
            try:
                self.publisher.publish_status(status.snapshot().fields(), cam.name)
            except RuntimeError:  # the publisher was closed under us: the run is over
                return


def _merge(runs: list[WatchSummary], cam: Camera) -> WatchSummary:
    """The summaries of a camera's loop runs (one unless it restarted after failures) as one: what each
    run counted itself is summed; what the camera's publisher, events and state saver count (they live
    across runs) is the last run's, their total."""
    if len(runs) == 1:
        return runs[0]
    total = {k: sum(getattr(r, k) for r in runs) for k in ("frames", "ready", "anomalies", "drifts", "bad_frames",
                                                          "seconds", "admissions")}
    return dataclasses.replace(runs[-1], **total)


def _empty(cam: Camera, stopped: str) -> WatchSummary:
    return WatchSummary(frames=0, ready=0, anomalies=0, drifts=0, bad_frames=0, seconds=0.0, published=0,
                        publish_dropped=0, source=cam.source.stats, stopped=stopped)
