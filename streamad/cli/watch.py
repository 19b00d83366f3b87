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
threshold, counters; see docs/persistence.md) and saves it there every --state-every frames and on
exit. A failed save (read-only folder, disk full) is reported once and retried, never fatal. A state
that cannot be loaded (corrupt, other format, other settings) stops the command with exit code 2,
unless --state-reset moves it aside (to DIR.bad-TIMESTAMP) and starts fresh.

examples:
  streamad watch demo --max-frames 300
  streamad watch demo --max-frames 300 --record demo.mp4 --publish
  streamad listen --count 10                    # in another terminal, while the line above runs
  streamad watch 0 --publish --show
  streamad watch rtsp://camera.local/stream1 --publish tcp://127.0.0.1:5560 --record run.mp4
  streamad watch clip.mp4 --quiet --stats       # throughput and per-stage cost on a video file
  streamad watch frames/ --preset fast --record last.png
  streamad watch 0 --state line3.state --publish    # stop and start again: it carries on where it was
  streamad watch clip.mp4 --alarms-per-hour 6   # at most about 6 false alarms an hour at the video's frame rate
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from streamad.cli import options
from streamad.cli.options import add
from streamad.errors import UserError

if TYPE_CHECKING:
    from streamad.config import EventConfig, StreamConfig
    from streamad.runtime.detector import Detector
    from streamad.runtime.live import WatchSummary
    from streamad.runtime.session import Outputs, Parts

NAME = "watch"
HELP = "run the streaming detector on a camera, video, folder, URL or the built-in demo"
DEFAULT_SAVE_EVERY = 500  # --state-every: frames between two saves of the state


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamad.adapters.publisher import DEFAULT_ADDRESS

    p.add_argument("source", metavar="SOURCE", help="0 (camera), a video file, an image folder, a URL, or 'demo'")
    add(p, "max_frames")
    p.add_argument("--quiet", action="store_true",
                   help="no status line and no per-frame event lines (source failures are still reported)")
    p.add_argument("--stats", action="store_true",
                   help="at the end, print the time per frame of each stage (read, detect, overlay, publish, ...)")
    p.add_argument("--max-retries", type=int, default=None, metavar="N",
                   help="camera or URL: give up after N failed reconnection attempts in a row (default: retry "
                        "forever, waiting 0.5 s, 1 s, 2 s, ... up to 10 s between attempts)")
    g = p.add_argument_group("detector")
    add(g, "preset", "window", "admit_every")
    add(g, "backbone", "device", "learning", "learner_duty", "learner_nice", "torch_threads", "blas_threads",
           "associate_threads", "memory")
    g = p.add_argument_group("alarms")
    add(g, "false_alarm_rate")
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
    add(g, "record")
    g.add_argument("--fps", type=float, default=None,
                   help="frame rate of the saved video and of --alarms-per-hour (default: the source's, else 10 for "
                        "the video)")
    g = p.add_argument_group("state (resume after a restart)")
    g.add_argument("--state", metavar="DIR", default=None,
                   help="resume from the detector state saved in DIR if there is one; save it there every "
                        "--state-every frames and on exit (end of source, Ctrl-C, SIGTERM)")
    add(g, "state_every")
    g.add_argument("--state-reset", action="store_true",
                   help="with --state: if DIR holds a state that cannot be loaded (corrupt, another format "
                        "version, other settings), move it aside to DIR.bad-TIMESTAMP and start fresh instead "
                        "of stopping with an error")


def build_config(args: argparse.Namespace) -> StreamConfig:
    """The StreamConfig the preset and options describe (bad values become UserErrors naming the option)."""
    return options.stream_config(args)


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
    if args.state is None and (args.state_every is not None or args.state_reset):
        raise UserError("--state-every and --state-reset apply to a state directory: use them with --state DIR")
    if args.state_every is not None and args.state_every < 0:
        raise UserError(f"--state-every must be >= 0 (0: only on exit), got {args.state_every}")
    if args.alarms_per_hour is not None and args.false_alarm_rate is not None:
        raise UserError("--alarms-per-hour and --false-alarm-rate say the same thing: give one of them")


def event_config(args: argparse.Namespace) -> EventConfig:
    """The EventConfig --event-gap and --event-min-frames describe (bad values become UserErrors)."""
    from streamad.config import EventConfig

    given = {k: v for k, v in (("max_gap", args.event_gap), ("min_frames", args.event_min_frames)) if v is not None}
    try:
        return EventConfig(**given)
    except ValueError as exc:
        raise UserError(str(exc).replace("EventConfig.max_gap", "--event-gap").replace("EventConfig.min_frames",
                                                                                       "--event-min-frames")) from exc


def outputs(args: argparse.Namespace) -> Outputs:
    """The outputs the options ask for (``streamad.runtime.session.Outputs``)."""
    from streamad.runtime.session import Outputs

    return Outputs(publish=args.publish, topic=args.topic, bind_any=args.bind_any, overlay_jpeg=args.overlay_jpeg,
                   curve_server_key=args.curve_server_key, curve_clients=args.curve_clients, save=args.record,
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
        if args.alarms_per_hour is not None:
            config = session.per_hour(config, args.alarms_per_hour, session.stream_fps(parts.source, args.fps))
        if config is not None and not args.quiet:
            console.event(session.alarm_line(config.decisions, session.stream_fps(parts.source, args.fps)))
        detector, saver = make_detector(config), None
        stack.callback(lambda: detector.close())  # stop the learner after the final save
        if args.state is not None:
            if not isinstance(detector, StreamDetector):
                raise UserError(f"--state needs a detector that saves and loads its state, not {type(detector).__name__}")
            every = DEFAULT_SAVE_EVERY if args.state_every is None else args.state_every
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
    """Set the process's torch, BLAS and association threads as ``config.threads`` says
    (streamad.stream.threads); none without a config (a stand-in detector's)."""
    from streamad.stream.threads import apply_threads

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
            print(f"threads: torch {threads['torch']}, BLAS {threads['blas']}, association {threads['associate']}")
        if learner:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in learner.get("stage_ms", {}).items())
            print(f"background learner: {learner['admitted']} admissions ({learner['admissions_per_s']:.2f}/s), "
                  f"{learner['skipped']} due frames skipped for a newer one, busy {100 * learner['busy']:.0f} % "
                  f"of the time, {100 * learner.get('cpu', 0.0):.0f} % of a core in CPU time; ms per admission: "
                  f"{stages or '-'}")
    if parts.publisher is not None:
        print(f"published on {parts.publisher.address}")
    saved = saved_line(parts.recorder, args.record)
    if saved is not None:
        print(saved)
    why = failure(parts.source, summary)
    if why is not None:
        print(f"streamad watch: error: {why}", file=sys.stderr)
        return 1
    return 0
