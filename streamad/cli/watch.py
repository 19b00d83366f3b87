"""Watch a live source: score every frame, learn "normal" from the stream itself, report anomalies.

SOURCE is a camera index (0), a video file, a folder of images, an rtsp:// or http(s):// URL, or
"demo" (a generated scene with drifting light and occasional defects: no camera or data needed).
Live sources keep only the newest frame and reconnect with back-off when they fail. Every result can
be published over ZeroMQ (see 'streamad listen'), shown in a window and saved as an annotated video.
Frames the detector rejects (empty, too small) are skipped and counted. Ctrl-C or SIGTERM stops
after the current frame and prints a summary; --stats adds the time per frame of each stage.

Alarms: a frame is anomalous when its score is unusual among frames the engine trusts as normal
(frames whose patches the channels kept); --false-alarm-rate (or --alarms-per-hour at the stream's
frame rate) says how many normal frames you accept to see flagged, and the threshold follows from it
once enough trusted frames were seen (docs/alarms.md). Consecutive anomalous frames are reported as
one alarm event (start, end, peak) when it ends; drift (normal frames scoring differently, e.g. new
lighting) is reported separately and raises no alarm.

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
  streamad watch clip.mp4 --alarms-per-hour 6   # at most about 6 false alarms an hour at the video's frame rate
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from streamad.errors import UserError
from streamad.stream.presets import DESCRIPTIONS, PRESETS

if TYPE_CHECKING:
    from streamad.config import EventConfig, StreamConfig
    from streamad.runtime.detector import Detector
    from streamad.runtime.live import WatchSummary
    from streamad.runtime.session import Outputs, Parts

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
    g.add_argument("--learning", choices=("background", "sync"), default="background",
                   help="background (default): every frame is scored at once and a learner thread admits the "
                        "newest due frame, so scoring never waits for learning; sync: score and admit on one thread "
                        "(deterministic, as 'streamad eval' does; slower)")
    g.add_argument("--learner-duty", type=float, default=None, metavar="F",
                   help="background learning: the largest share of the time the learner may be busy (default 0.5), "
                        "so that scoring keeps the cores")
    g.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="threads of the backbone (default 0: all usable cores)")
    g.add_argument("--blas-threads", type=int, default=None, metavar="N",
                   help="BLAS threads of association and search (default 0: 1 with background learning, else all "
                        "cores), so that scorer and learner do not fight over the cores")
    g.add_argument("--memory", type=int, default=None, metavar="N",
                   help="long-term nominal memory beyond the window: at most N trusted patches of frames that left "
                        "it (default 60000; 0: none, as --preset lean; docs/stream_defaults.md says what it gains and "
                        "costs); saved and resumed with --state")
    g = p.add_argument_group("alarms")
    g.add_argument("--false-alarm-rate", type=float, default=None, metavar="R",
                   help="share of normal frames you accept to see flagged (default 0.01); the threshold follows")
    g.add_argument("--alarms-per-hour", type=float, default=None, metavar="N",
                   help="instead of --false-alarm-rate: false alarms per hour at the stream's frame rate (a video's, "
                        "the demo's 10, else --fps)")
    g.add_argument("--rule", choices=("auto", "trusted", "screened", "quantile"), default=None,
                   help="auto (default): trusted where the channels vouch for a fair share of frames, screened "
                        "elsewhere, chosen by itself (results say which); trusted: the threshold learns from frames "
                        "whose top patches the channels keep; "
                        "screened: from every frame's score less those a robust screen puts outside normal (for "
                        "textures, where few patches find a channel); quantile: the former rolling quantile of every "
                        "score (flags about the rate of all frames, defects included)")
    g.add_argument("--event-gap", type=int, default=None, metavar="N",
                   help="anomalous frames at most N quiet frames apart are one alarm event (default 1)")
    g.add_argument("--event-min-frames", type=int, default=None, metavar="N",
                   help="report an alarm event only if it holds at least N anomalous frames (default 1)")
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
                   help="frame rate of the saved video and of --alarms-per-hour (default: the source's, else 10 for "
                        "the video)")
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


def build_config(args: argparse.Namespace) -> StreamConfig:
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
    overrides["learn_in_background"] = getattr(args, "learning", "background") == "background"
    if getattr(args, "learner_duty", None) is not None:
        overrides["learner_duty"] = args.learner_duty
    threads = {k: v for k, v in (("torch", getattr(args, "torch_threads", None)),
                                 ("blas", getattr(args, "blas_threads", None))) if v is not None}
    if threads:
        overrides["threads"] = threads
    if getattr(args, "memory", None) is not None:
        overrides["memory"] = {"capacity": args.memory}
    decisions = {k: v for k, v in (("rule", getattr(args, "rule", None)),
                                   ("false_alarm_rate", getattr(args, "false_alarm_rate", None))) if v is not None}
    if decisions:
        overrides["decisions"] = decisions
    try:
        return stream_config(args.preset, overrides)
    except ImportError as exc:
        raise UserError(f"{exc}: the streaming detector is missing from this installation") from exc
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc).replace("MemoryConfig.capacity", "--memory")) from exc


def make_detector(config: StreamConfig | None) -> Detector:
    """The real detector: ``streamad.StreamDetector(config)``."""
    from streamad.stream.detector import StreamDetector

    try:
        return StreamDetector(config)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


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


def check(args: argparse.Namespace) -> None:
    """Refuse option values and combinations that make no sense (a UserError says which)."""
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
    if getattr(args, "alarms_per_hour", None) is not None and getattr(args, "false_alarm_rate", None) is not None:
        raise UserError("--alarms-per-hour and --false-alarm-rate say the same thing: give one of them")


def event_config(args: argparse.Namespace) -> EventConfig:
    """The EventConfig --event-gap and --event-min-frames describe (bad values become UserErrors)."""
    from streamad.config import EventConfig

    given = {k: v for k, v in (("max_gap", getattr(args, "event_gap", None)),
                               ("min_frames", getattr(args, "event_min_frames", None))) if v is not None}
    try:
        return EventConfig(**given)
    except ValueError as exc:
        raise UserError(str(exc).replace("EventConfig.max_gap", "--event-gap").replace("EventConfig.min_frames",
                                                                                       "--event-min-frames")) from exc


def outputs(args: argparse.Namespace) -> Outputs:
    """The outputs the options ask for (``streamad.runtime.session.Outputs``)."""
    from streamad.runtime.session import Outputs

    return Outputs(publish=args.publish, topic=args.topic, bind_any=args.bind_any, overlay_jpeg=args.overlay_jpeg,
                   curve_server_key=args.curve_server_key, curve_clients=args.curve_clients, save=args.save,
                   fps=args.fps, show=args.show)


def run(args: argparse.Namespace) -> int:
    from streamad.runtime import session
    from streamad.stream.detector import StreamDetector

    check(args)
    session.quiet_opencv()
    console = Console(args.quiet)
    config = build_config(args)
    alarms = event_config(args)
    threads = apply_thread_budget(config)
    with ExitStack() as stack:
        parts = session.open_parts(stack, args.source, outputs(args), on_event=console.event,
                                   max_retries=args.max_retries)
        if getattr(args, "alarms_per_hour", None) is not None:
            config = session.per_hour(config, args.alarms_per_hour, session.stream_fps(parts.source, args.fps))
        if config is not None and not args.quiet:
            console.event(session.alarm_line(config.decisions, session.stream_fps(parts.source, args.fps)))
        detector, saver = make_detector(config), None
        stack.callback(lambda: detector.close())  # stop the learner after the final save
        if args.state is not None:
            if not isinstance(detector, StreamDetector):
                raise UserError(f"--state needs a detector that saves and loads its state, not {type(detector).__name__}")
            every = DEFAULT_SAVE_EVERY if args.save_every is None else args.save_every
            detector, saver = session.resume_state(detector, args.state, every=every, reset=args.state_reset,
                                                   on_event=console.event)
        summary = session.watch(parts, detector, on_event=console.event, on_status=console.status,
                                status_interval=console.interval, max_frames=args.max_frames, saver=saver,
                                quiet=args.quiet, alarms=alarms)
        console.end()
        learner = detector.learner_stats()
        stack.close()  # finish the video file and close the sockets before reporting
    return report(args, parts, summary, threads, learner)


def apply_thread_budget(config: StreamConfig | None) -> dict[str, int]:
    """Set the process's torch and BLAS threads as ``config.threads`` says (streamad.vision.threads); none
    without a config (a stand-in detector's)."""
    from streamad.vision.threads import apply_threads

    if config is None:
        return {}
    return apply_threads(config.threads, background=config.learn_in_background)


def report(args: argparse.Namespace, parts: Parts, summary: WatchSummary, threads: dict[str, int] | None = None,
           learner: dict[str, Any] | None = None) -> int:
    """Print the summary and what was published and saved; the exit status."""
    from streamad.runtime.session import failure, saved_line

    print(summary)
    if args.stats:
        print(summary.stage_table())
        if threads:
            print(f"threads: torch {threads['torch']}, BLAS {threads['blas']}")
        if learner:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in learner.get("stage_ms", {}).items())
            print(f"background learner: {learner['admitted']} admissions ({learner['admissions_per_s']:.2f}/s), "
                  f"{learner['skipped']} due frames skipped for a newer one, busy {100 * learner['busy']:.0f} % "
                  f"of the time; ms per admission: {stages or '-'}")
    if parts.publisher is not None:
        print(f"published on {parts.publisher.address}")
    saved = saved_line(parts.recorder, args.save)
    if saved is not None:
        print(saved)
    why = failure(parts.source, summary)
    if why is not None:
        print(f"streamad watch: error: {why}", file=sys.stderr)
        return 1
    return 0
