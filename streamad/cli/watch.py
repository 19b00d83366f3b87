"""Watch a live source: score every frame, learn "normal" from the stream itself, report anomalies.

SOURCE is a camera index (0), a video file, a folder of images, an rtsp:// or http(s):// URL, or
"demo" (a generated scene with drifting light and occasional defects: no camera or data needed).
Live sources keep only the newest frame and reconnect with back-off when they fail. Every result can
be published over ZeroMQ (see 'streamad listen'), shown in a window and saved as an annotated video.
Frames the detector rejects (empty, too small) are skipped and counted. Ctrl-C or SIGTERM stops
after the current frame and prints a summary; --stats adds the time per frame of each stage.

With --state DIR the detector resumes from the state saved in DIR (window, nominal patches,
threshold, counters; see docs/persistence.md) and saves it there every --save-every frames and on
exit. A failed save (read-only folder, disk full) is reported once and retried, never fatal. A state
that cannot be loaded (corrupt, other format, other settings) stops the command with exit code 2,
unless --state-reset moves it aside (to DIR.bad-TIMESTAMP) and starts fresh.

examples:
  streamad watch demo --max-frames 300
  streamad watch demo --max-frames 300 --save demo.mp4 --publish
  streamad listen --count 10                    # in another terminal, while the line above runs
  streamad watch 0 --publish --show
  streamad watch rtsp://camera.local/stream1 --publish tcp://127.0.0.1:5560 --save run.mp4
  streamad watch clip.mp4 --quiet --stats       # throughput and per-stage cost on a video file
  streamad watch frames/ --preset fast --save last.png
  streamad watch 0 --state line3.state --publish    # stop and start again: it carries on where it was
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import ExitStack
from typing import Any

from streamad.errors import UserError
from streamad.stream.presets import DESCRIPTIONS, PRESETS

NAME = "watch"
HELP = "run the streaming detector on a camera, video, folder, URL or the built-in demo"
DEFAULT_SAVE_EVERY = 500  # --save-every: frames between two saves of the state


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamad.adapters.publisher import DEFAULT_ADDRESS

    p.add_argument("source", metavar="SOURCE", help="0 (camera), a video file, an image folder, a URL, or 'demo'")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--quiet", action="store_true",
                   help="no status line and no per-frame event lines (source failures are still reported)")
    p.add_argument("--stats", action="store_true",
                   help="at the end, print the time per frame of each stage (read, detect, overlay, publish, ...)")
    p.add_argument("--max-retries", type=int, default=None, metavar="N",
                   help="camera or URL: give up after N failed reconnection attempts in a row (default: retry "
                        "forever, waiting 0.5 s, 1 s, 2 s, ... up to 10 s between attempts)")
    g = p.add_argument_group("detector")
    g.add_argument("--preset", choices=tuple(PRESETS), default="default",
                   help="; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()))
    g.add_argument("--window", type=int, default=None, metavar="W", help="frames kept in the sliding window")
    g.add_argument("--admit-every", type=int, default=None, metavar="K", help="admit one frame in K to the window")
    g.add_argument("--backbone", default=None, help="feature backbone (default: the preset's, efficientnet_lite0)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default cpu)")
    g = p.add_argument_group("outputs")
    g.add_argument("--publish", nargs="?", const=DEFAULT_ADDRESS, default=None, metavar="ADDR",
                   help=f"publish every result over ZeroMQ PUB (default address {DEFAULT_ADDRESS})")
    g.add_argument("--bind-any", action="store_true",
                   help="allow --publish on a non-loopback address (visible to the network); not needed with CURVE")
    g.add_argument("--curve-server-key", metavar="SECRETFILE", default=None,
                   help="encrypt the published stream with CURVE using this server secret key (see 'streamad "
                        "keys'); needs --curve-clients")
    g.add_argument("--curve-clients", metavar="DIR", default=None,
                   help="with --curve-server-key: only subscribers whose public key (*.key) is in DIR may connect")
    g.add_argument("--overlay-jpeg", action="store_true", help="include the annotated frame as JPEG in messages")
    g.add_argument("--topic", default="streamad", help="ZeroMQ topic (default streamad)")
    g.add_argument("--show", action="store_true", help="show the annotated frames in a window (q or Esc closes)")
    g.add_argument("--save", metavar="FILE",
                   help="write the annotated video (.mp4, .avi, .mkv) or, for .png, the last ready frame")
    g.add_argument("--fps", type=float, default=None,
                   help="frame rate of the saved video (default: the source's, else 10)")
    g = p.add_argument_group("state (resume after a restart)")
    g.add_argument("--state", metavar="DIR", default=None,
                   help="resume from the detector state saved in DIR if there is one; save it there every "
                        "--save-every frames and on exit (end of source, Ctrl-C, SIGTERM)")
    g.add_argument("--save-every", type=int, default=None, metavar="N",
                   help=f"with --state: save every N frames (default {DEFAULT_SAVE_EVERY}; 0: only on exit)")
    g.add_argument("--state-reset", action="store_true",
                   help="with --state: if DIR holds a state that cannot be loaded (corrupt, another format "
                        "version, other settings), move it aside to DIR.bad-TIMESTAMP and start fresh instead "
                        "of stopping with an error")


def build_config(args: argparse.Namespace) -> Any:
    """The StreamConfig the preset and options describe (bad values become UserErrors)."""
    from streamad.stream.presets import stream_config

    overrides: dict[str, Any] = {}
    if args.window is not None:
        overrides["window"] = args.window
    if args.admit_every is not None:
        overrides["admit_every"] = args.admit_every
    features = {k: v for k, v in (("backbone", args.backbone), ("device", args.device)) if v is not None}
    if features:
        overrides["features"] = features
    try:
        return stream_config(args.preset, overrides)
    except ImportError as exc:
        raise UserError(f"{exc}: the streaming detector is missing from this installation") from exc
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from exc


def make_detector(config: Any) -> Any:
    """The real detector: ``streamad.StreamDetector(config)``."""
    import streamad

    cls = getattr(streamad, "StreamDetector", None)
    if cls is None:
        raise UserError("streamad.StreamDetector is not available in this installation")
    try:
        return cls(config)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def open_state(directory: str, detector: Any, reset: bool, console: Console) -> Any:
    """``detector`` resumed from the state in ``directory`` if there is one (else ``detector`` itself,
    fresh). An unusable state is a UserError, or with ``reset`` is moved aside."""
    from streamad.stream.persistence import StateError, has_state, move_aside

    if not callable(getattr(detector, "save", None)) or not callable(getattr(type(detector), "load", None)):
        raise UserError("--state needs a detector that can save and load its state")
    try:
        found = has_state(directory)
    except OSError as exc:
        raise UserError(f"cannot read the state directory {directory}: {exc.strerror or exc}") from exc
    if not found:
        console.event(f"no saved state in {directory}: starting fresh (it will be saved there)")
        return detector
    try:
        resumed = type(detector).load(directory, extractor=detector.extractor, config=detector.config)
    except StateError as exc:
        if not reset:
            hint = "" if "--state-reset" in str(exc) else " (--state-reset moves it aside and starts fresh)"
            raise UserError(f"{exc}{hint}") from exc
        try:
            aside = move_aside(directory)
        except OSError as err:
            raise UserError(f"{exc}; and it cannot be moved aside: {err.strerror or err}") from err
        console.event(f"cannot resume: {exc}")
        console.event(f"moved the unusable state to {aside}; starting fresh")
        return detector
    console.event(f"resumed from {directory}: {resumed.frames_seen} frames seen, window "
                  f"{len(resumed.channels)}/{resumed.config.window} frames, {resumed.nominal_count} nominal patches")
    return resumed


class Console:
    """Status line (rewritten in place on a terminal, a line every few seconds otherwise) and event
    lines on stderr; safe to call from the source's grabber thread."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 5.0
        self._pending = False
        self._lock = threading.Lock()

    def status(self, line: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.tty:
                sys.stderr.write("\r" + line + "\x1b[K")
                self._pending = True
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def event(self, line: str) -> None:
        with self._lock:
            if self._pending:
                sys.stderr.write("\n")
                self._pending = False
            sys.stderr.write(f"streamad watch: {line}\n")
            sys.stderr.flush()

    def end(self) -> None:
        with self._lock:
            if self._pending:
                sys.stderr.write("\n")
                self._pending = False


def run(args: argparse.Namespace) -> int:
    import cv2

    from streamad.adapters.demo import DemoSource
    from streamad.adapters.display import SnapshotRecorder, Window, make_recorder
    from streamad.adapters.live import StateSaver, StopFlag, run_watch, stop_on_signals
    from streamad.adapters.publisher import Publisher
    from streamad.adapters.sources import VideoFileSource, open_source

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.max_retries is not None and args.max_retries < 0:
        raise UserError(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.fps is not None and not args.fps > 0:
        raise UserError(f"--fps must be > 0, got {args.fps}")
    if args.overlay_jpeg and not args.publish:
        raise UserError("--overlay-jpeg adds images to published messages: use it with --publish")
    if (args.curve_server_key or args.curve_clients) and not args.publish:
        raise UserError("--curve-server-key and --curve-clients protect the published stream: use them with --publish")
    if args.state is None and (args.save_every is not None or args.state_reset):
        raise UserError("--save-every and --state-reset apply to a state directory: use them with --state DIR")
    if args.save_every is not None and args.save_every < 0:
        raise UserError(f"--save-every must be >= 0 (0: only on exit), got {args.save_every}")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our own messages explain failures
    console = Console(args.quiet)
    config = build_config(args)
    with ExitStack() as stack:
        source = stack.enter_context(open_source(args.source, on_event=lambda e: console.event(e.message),
                                                 max_retries=args.max_retries))
        publisher = recorder = window = None
        if args.publish:
            publisher = stack.enter_context(Publisher(args.publish, topic=args.topic, bind_any=args.bind_any,
                                                      overlay_jpeg=args.overlay_jpeg,
                                                      curve_secret_key_file=args.curve_server_key,
                                                      allowed_clients_dir=args.curve_clients))
            curve = f", CURVE: {publisher.allowed_clients} allowed client key(s)" if publisher.curve else ""
            console.event(f"publishing on {publisher.address} (topic {args.topic!r}{curve})")
        if args.save:
            fps = args.fps or (source.fps if isinstance(source, VideoFileSource) and source.fps else None)
            if fps is None and isinstance(source, DemoSource):
                fps = source.stream.config.fps
            recorder = make_recorder(args.save, fps=fps or 10.0)
            stack.callback(recorder.close)
        if args.show:
            window = Window(f"streamad: {source.name}")
            stack.callback(window.close)
        detector = make_detector(config)
        saver = None
        if args.state is not None:
            detector = open_state(args.state, detector, args.state_reset, console)
            every = DEFAULT_SAVE_EVERY if args.save_every is None else args.save_every
            saver = StateSaver(detector, args.state, every=every or None, on_event=console.event)

        previous = {"anomalous": False}

        def on_result(frame: Any, result: Any) -> None:
            if args.quiet:
                return
            if result.anomalous and not previous["anomalous"]:
                thr = "-" if result.threshold is None else f"{result.threshold:.3f}"
                console.event(f"frame {result.index}: anomalous (score {result.score:.3f}, threshold {thr})")
            if result.drift:
                console.event(f"frame {result.index}: drift in the score distribution")
            previous["anomalous"] = bool(result.anomalous)

        def on_bad_frame(frame: Any, error: ValueError, count: int) -> None:
            if count <= 3 or count % 100 == 0:
                console.event(f"{frame.source} frame {frame.index} skipped ({count} so far): {error}")

        flag = StopFlag()
        with stop_on_signals(flag, notify=console.event):
            summary = run_watch(source, detector, publisher=publisher, recorder=recorder, window=window,
                                max_frames=args.max_frames, stop=flag, on_result=on_result,
                                on_status=console.status, status_interval=console.interval,
                                on_bad_frame=on_bad_frame, saver=saver)
        console.end()
        stack.close()  # finish the video file and close the sockets before reporting
    print(summary)
    if args.stats:
        print(summary.stage_table())
    if publisher is not None:
        print(f"published on {publisher.address}")
    if isinstance(recorder, SnapshotRecorder):
        if recorder.wrote_ready is None:
            print(f"nothing saved to {args.save}: no frame was processed")
        else:
            print(f"saved {args.save}" + ("" if recorder.wrote_ready else " (no frame was ready: the last frame)"))
    elif recorder is not None:
        print(f"saved {args.save} ({recorder.frames} frames)" if recorder.frames else
              f"nothing saved to {args.save}: no frame was processed")
    if source.live and summary.stopped == "end":  # a camera or URL only ends by giving up (--max-retries)
        print(f"streamad watch: error: {source.name} could not be read "
              f"({summary.source.failures} failed attempts)", file=sys.stderr)
        return 1
    if summary.frames == 0 and summary.bad_frames > 0:
        print(f"streamad watch: error: the detector rejected all {summary.bad_frames} frames", file=sys.stderr)
        return 1
    return 0
