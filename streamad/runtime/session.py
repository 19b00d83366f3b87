"""A ``streamad watch`` run put together: the parts around :func:`~streamad.runtime.live.run_watch`.

The command line only parses, checks and prints; this module does the rest, one job per function:

- :func:`open_parts` opens the source and the outputs (ZeroMQ publisher, video or snapshot recorder,
  window) in an ``ExitStack``, so they are closed however the run ends;
- :func:`resume_state` resumes the detector from a state directory (or starts fresh, or moves an
  unusable state aside) and gives the :class:`~streamad.runtime.live.StateSaver` that keeps it saved;
- :func:`watch` runs the loop as a one-camera :class:`~streamad.runtime.serve.fleet.Fleet` (the
  machinery of ``streamad serve``) with Ctrl-C / SIGTERM handling, alarm events
  (:class:`~streamad.stream.events.AlarmEvents`) and the event lines of :class:`EventLines`;
- :func:`saved_line` and :func:`failure` say what became of the saved file and whether the run failed.

Every message for the user goes to an ``on_event(line)`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamad.config import DecisionConfig, EventConfig, StreamConfig
from streamad.errors import UserError
from streamad.results import AlarmEvent, FrameResult
from streamad.stream.events import AlarmEvents

from streamad.display.overlay import SnapshotRecorder, VideoRecorder, Window, make_recorder
from streamad.runtime.detector import Detector
from streamad.runtime.live import StateSaver, WatchSummary
from streamad.adapters.publisher import Publisher
from streamad.adapters.sources import DemoSource, Frame, Source, VideoFileSource, open_source

if TYPE_CHECKING:
    from streamad.stream.detector import StreamDetector

EventSink = Callable[[str], None]


def quiet_opencv() -> None:
    """Only errors from OpenCV's own log: the sources' messages explain failures."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass(frozen=True)
class Outputs:
    """Where the results go: ``publish`` (a ZeroMQ address, with its topic, exposure and CURVE options),
    ``save`` (a video file or a .png snapshot, at ``fps``) and ``show`` (a window)."""

    publish: str | None = None
    topic: str = "streamad"
    bind_any: bool = False
    overlay_jpeg: bool = False
    curve_server_key: str | None = None
    curve_clients: str | None = None
    save: str | None = None
    fps: float | None = None
    show: bool = False


@dataclass
class Parts:
    """The opened source and outputs of one run (None: that output is not used)."""

    source: Source
    publisher: Publisher | None = None
    recorder: VideoRecorder | SnapshotRecorder | None = None
    window: Window | None = None


def open_parts(stack: ExitStack, spec: str, outputs: Outputs, *, on_event: EventSink,
               max_retries: int | None = None) -> Parts:
    """Open the source ``spec`` names and the ``outputs``, each closed by ``stack``."""
    source = stack.enter_context(open_source(spec, on_event=lambda e: on_event(e.message), max_retries=max_retries))
    return Parts(source, publisher=open_publisher(stack, outputs, on_event),
                 recorder=open_recorder(stack, outputs, source), window=open_window(stack, outputs, source))


def open_publisher(stack: ExitStack, outputs: Outputs, on_event: EventSink) -> Publisher | None:
    if not outputs.publish:
        return None
    publisher = stack.enter_context(Publisher(outputs.publish, topic=outputs.topic, bind_any=outputs.bind_any,
                                              overlay_jpeg=outputs.overlay_jpeg,
                                              curve_secret_key_file=outputs.curve_server_key,
                                              allowed_clients_dir=outputs.curve_clients))
    curve = f", CURVE: {publisher.allowed_clients} allowed client key(s)" if publisher.curve else ""
    on_event(f"publishing on {publisher.address} (topic {outputs.topic!r}{curve})")
    return publisher


def stream_fps(source: Source, fps: float | None = None) -> float | None:
    """The stream's frame rate: ``fps`` if given, else a video file's or the demo's; None when unknown
    (camera, URL, folder)."""
    if fps is None and isinstance(source, VideoFileSource) and source.fps:
        fps = source.fps
    if fps is None and isinstance(source, DemoSource):
        fps = source.stream.config.fps
    return fps


def per_hour(config: StreamConfig, alarms_per_hour: float, fps: float | None) -> StreamConfig:
    """``config`` with the false alarm rate of ``alarms_per_hour`` at ``fps`` (and, for the conformal rules
    (auto, trusted, screened), ``calibration_size`` long enough to resolve it); a UserError without a frame
    rate.

    >>> from streamad.config import StreamConfig
    >>> cfg = per_hour(StreamConfig(), 1, 10)        # one false alarm an hour at 10 fps, default rule (auto)
    >>> round(cfg.decisions.false_alarm_rate * 1e6, 1), cfg.decisions.calibration_size
    (27.8, 36000)
    """
    import dataclasses
    import math

    from streamad.config import per_frame_rate

    if fps is None:
        raise UserError("--alarms-per-hour needs the stream's frame rate: this source does not say it, give --fps")
    try:
        rate = per_frame_rate(alarms_per_hour, fps)
        size = config.decisions.calibration_size
        if config.decisions.rule != "quantile":  # the conformal rules need 1/rate - 1 calibration scores
            size = max(size, math.ceil(1.0 / rate))
        decisions = dataclasses.replace(config.decisions, false_alarm_rate=rate, calibration_size=size)
    except ValueError as exc:
        raise UserError(f"--alarms-per-hour: {exc}") from exc
    return dataclasses.replace(config, decisions=decisions)


def alarm_line(decisions: DecisionConfig, fps: float | None = None) -> str:
    """What the alarm threshold is and when it will exist, for the user."""
    import math

    rate = decisions.alpha
    per = "" if fps is None else f" (about {rate * 3600 * fps:.3g} per hour at {fps:g} fps)"
    if decisions.rule == "quantile":
        return (f"alarm threshold: the {1 - rate:g} quantile of the last {decisions.calibration_size} scores of "
                f"every frame (rule quantile){per}, from the {decisions.warmup}th score on")
    need = max(decisions.warmup, math.ceil(1.0 / rate - 1.0 - 1e-9))
    when = "" if fps is None else f" (at {fps:g} fps at least {need / fps / 60:.1f} min)"
    return (f"alarm threshold: {rate:g} of normal frames flagged{per}, learned from frames the engine trusts: "
            f"provisional from the {decisions.warmup}th trusted frame after the window filled (the highest trusted "
            f"score: false alarms at most 1/(n+1)), at that rate from the {need}th{when}")


def recording_fps(source: Source, fps: float | None = None) -> float:
    """Frame rate of the saved video: ``fps`` if given, else the video file's or the demo's, else 10."""
    if fps is None and isinstance(source, VideoFileSource) and source.fps:
        fps = source.fps
    if fps is None and isinstance(source, DemoSource):
        fps = source.stream.config.fps
    return fps or 10.0


def open_recorder(stack: ExitStack, outputs: Outputs, source: Source) -> VideoRecorder | SnapshotRecorder | None:
    if not outputs.save:
        return None
    recorder = make_recorder(outputs.save, fps=recording_fps(source, outputs.fps))
    stack.callback(recorder.close)
    return recorder


def open_window(stack: ExitStack, outputs: Outputs, source: Source) -> Window | None:
    if not outputs.show:
        return None
    window = Window(f"streamad: {source.name}")
    stack.callback(window.close)
    return window


def resume_state(detector: StreamDetector, directory: str, *, every: int | None, reset: bool,
                 on_event: EventSink) -> tuple[StreamDetector, StateSaver]:
    """The detector to run (resumed from ``directory``, or ``detector`` itself when there is no usable
    state) and the saver that saves it there every ``every`` frames (None or 0: only at the end)."""
    detector = open_state(directory, detector, reset, on_event)
    return detector, StateSaver(detector, directory, every=every or None, on_event=on_event)


def open_state(directory: str, detector: StreamDetector, reset: bool, on_event: EventSink) -> StreamDetector:
    """``detector`` resumed from the state in ``directory`` if there is one (else ``detector`` itself,
    fresh). An unusable state is a UserError, or with ``reset`` is moved aside."""
    from streamad.stream.persistence import StateError, has_state

    try:
        found = has_state(directory)
    except OSError as exc:
        raise UserError(f"cannot read the state directory {directory}: {exc.strerror or exc}") from exc
    if not found:
        on_event(f"no saved state in {directory}: starting fresh (it will be saved there)")
        return detector
    try:
        resumed = type(detector).load(directory, extractor=detector.extractor, config=detector.config)
    except StateError as exc:
        return _set_aside(directory, detector, exc, reset, on_event)
    on_event(f"resumed from {directory}: {resumed.frames_seen} frames seen, window "
             f"{len(resumed.channels)}/{resumed.config.window} frames, {resumed.nominal_count} nominal patches")
    return resumed


def _set_aside(directory: str, detector: StreamDetector, error: Exception, reset: bool,
               on_event: EventSink) -> StreamDetector:
    """A state that cannot be loaded: a UserError, or with ``reset`` moved aside and ``detector`` fresh."""
    from streamad.stream.persistence import move_aside

    if not reset:
        hint = "" if "--state-reset" in str(error) else " (--state-reset moves it aside and starts fresh)"
        raise UserError(f"{error}{hint}") from error
    try:
        aside = move_aside(directory)
    except OSError as err:
        raise UserError(f"{error}; and it cannot be moved aside: {err.strerror or err}") from err
    on_event(f"cannot resume: {error}")
    on_event(f"moved the unusable state to {aside}; starting fresh")
    return detector


class EventLines:
    """Event lines for the user (unless ``quiet``): one per alarm event when it ends (not one per
    anomalous frame), drift explained (what changed, since when), skipped frames (the first three and
    every hundredth)."""

    def __init__(self, on_event: EventSink, quiet: bool = False) -> None:
        self.on_event, self.quiet = on_event, quiet

    def on_alarm(self, event: AlarmEvent) -> None:
        if not self.quiet:
            self.on_event(event.describe())

    def on_result(self, frame: Frame, result: FrameResult) -> None:
        if self.quiet or not result.drift:
            return
        why = (result.drift_change.describe() if result.drift_change is not None
               else "the score distribution changed")
        self.on_event(f"frame {result.index}: drift: {why}")

    def on_bad_frame(self, frame: Frame, error: ValueError, count: int) -> None:
        if count <= 3 or count % 100 == 0:
            self.on_event(f"{frame.source} frame {frame.index} skipped ({count} so far): {error}")


def watch(parts: Parts, detector: Detector, *, on_event: EventSink, on_status: EventSink | None = None,
          status_interval: float = 1.0, max_frames: int | None = None, saver: StateSaver | None = None,
          quiet: bool = False, alarms: EventConfig | None = None) -> WatchSummary:
    """Run the live loop on ``parts`` until the source ends, ``max_frames``, Ctrl-C or SIGTERM (which
    finish the current frame), or the window is closed. Anomalous frames are grouped into alarm events
    as ``alarms`` says (default ``EventConfig()``): published, and one line each to ``on_event``.

    This is ``streamad serve`` with one camera (its name: the publisher's topic): a
    :class:`~streamad.runtime.serve.fleet.Fleet` whose one loop runs on this thread."""
    from streamad.runtime.serve.fleet import Camera, Fleet

    events = EventLines(on_event, quiet)
    name = parts.publisher.topic if parts.publisher is not None else "streamad"
    camera = Camera(name, parts.source, detector, saver=saver, events=AlarmEvents(alarms), max_frames=max_frames,
                    recorder=parts.recorder, window=parts.window, on_result=events.on_result,
                    on_alarm=events.on_alarm, on_bad_frame=events.on_bad_frame, on_status=on_status,
                    status_interval=status_interval)
    fleet = Fleet([camera], publisher=parts.publisher, status_every=None, on_event=on_event)
    return fleet.run().cameras[0].summary


def saved_line(recorder: VideoRecorder | SnapshotRecorder | None, path: str | None) -> str | None:
    """What became of ``--save``: the file written, or why nothing was; None without a recorder."""
    if isinstance(recorder, SnapshotRecorder):
        if recorder.wrote_ready is None:
            return f"nothing saved to {path}: no frame was processed"
        return f"saved {path}" + ("" if recorder.wrote_ready else " (no frame was ready: the last frame)")
    if recorder is not None:
        return (f"saved {path} ({recorder.frames} frames)" if recorder.frames else
                f"nothing saved to {path}: no frame was processed")
    return None


def failure(source: Source, summary: WatchSummary) -> str | None:
    """Why the run failed, or None: a camera or URL that gave up (--max-retries), or no frame accepted."""
    if source.live and summary.stopped == "end":  # a camera or URL only ends by giving up
        return f"{source.name} could not be read ({summary.source.failures} failed attempts)"
    if summary.frames == 0 and summary.bad_frames > 0:
        return f"the detector rejected all {summary.bad_frames} frames"
    return None
