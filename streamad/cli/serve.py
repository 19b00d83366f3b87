"""Serve many cameras from one process: one backbone, one ZeroMQ publisher, one live web page.

CONFIG is a TOML file listing the cameras (name, source, preset and overrides, window, admission
policy, optional state folder) and the process-wide settings (device, publisher address, web page);
docs/live_io.md has the whole format. Unknown keys and bad values are refused at start with the
file, key and line named.

With a GPU backbone the newest frame of every camera goes through it in one batch (a batch forms from
what is ready and waits at most [serve] batch_wait_ms for the rest, by default 5). On the CPU, where a
batch costs the sum of its frames, each camera runs its frames through the one backbone on its own
thread, side by side (setting batch_wait_ms batches there too); each camera has its own detector
(window, index, learner, threshold, state). Results go out on one ZeroMQ publisher with the camera's
name as topic, plus a status message per camera each second (topic _status/CAMERA); 'streamad listen'
reads them. A camera that fails is reopened while the others go on. Ctrl-C or SIGTERM stops every
camera after its current frame, saves every state and prints a summary per camera.

--workers N ([serve] workers) runs the cameras' detectors (scoring, learning, state) in N worker
processes, so that cameras do not wait on each other for Python's interpreter lock; the backbone
stays in this process. 0 (the default) runs them on threads of this process.

--http ADDR serves a live page (a tile per camera: the annotated frame, score and threshold over the
last minutes, the latest alarms) and /status.json. It binds to loopback unless told otherwise; any
other address needs an access token (--http-token-file, [web] token_file or STREAMAD_WEB_TOKEN),
which the page's URL carries (?token=...).

examples:
  streamad serve cameras.toml
  streamad serve cameras.toml --http                       # page on http://127.0.0.1:8080/
  streamad serve cameras.toml --http 0.0.0.0:8080 --http-token-file web.token
  streamad serve cameras.toml --workers 4                  # detection in 4 worker processes
  streamad listen --topic line1 --topic line2              # in another terminal
  streamad listen --status --topic _status                 # one status line per camera per second

a minimal CONFIG:
  [[cameras]]
  name = "line1"
  source = "demo"
  preset = "fast"

  [[cameras]]
  name = "line2"
  source = "rtsp://camera2.local/stream1"
  window = 128
  state = "states/line2"
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from streamad.cli.options import add
from streamad.errors import UserError

NAME = "serve"
HELP = "run the detector on many cameras in one process: one backbone, one publisher, a live web page"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamad.runtime.serve.config import DEFAULT_HTTP

    p.add_argument("config", metavar="CONFIG", help="the TOML file that lists the cameras (see above)")
    p.add_argument("--http", nargs="?", const=DEFAULT_HTTP, default=None, metavar="ADDR",
                   help=f"serve the live page on HOST:PORT (default {DEFAULT_HTTP}; overrides [web] address)")
    p.add_argument("--http-token-file", metavar="FILE", default=None,
                   help="the page's access token (needed off loopback); overrides [web] token_file")
    p.add_argument("--publish", metavar="ADDR", default=None, help="the ZeroMQ address (overrides [publisher])")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the detectors in N worker processes (0: on threads; overrides [serve] workers)")
    add(p, "max_frames")
    p.add_argument("--quiet", action="store_true", help="no status lines (events and failures are still reported)")
    add(p, "json")


class Console:
    """Lines on stderr, safe from every camera's thread."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()

    def event(self, line: str) -> None:
        with self._lock:
            sys.stderr.write(f"streamad serve: {line}\n")
            sys.stderr.flush()

    def status(self, camera: str) -> Callable[[str], None]:
        def line(text: str) -> None:
            if not self.quiet:
                self.event(f"{camera}: {text}")
        return line


def run(args: argparse.Namespace) -> int:
    from streamad.runtime.serve.config import load_config
    from streamad.runtime.serve.session import ServeSession, with_overrides
    from streamad.runtime.session import quiet_opencv

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    config = with_overrides(load_config(args.config), workers=args.workers, publish=args.publish, http=args.http)
    quiet_opencv()
    console = Console(args.quiet)
    session = ServeSession.from_config(config, on_event=console.event, status_lines=console.status,
                                       max_frames=args.max_frames, token_file=args.http_token_file)
    with session:
        summary = session.run()  # stops learners, closes sources, page and publisher before reporting
    print(summary)
    if args.json:
        _write_json(args.json, session.summary_document(summary))
    return 0 if any(c.summary.frames for c in summary.cameras) or summary.stopped != "end" else 1


def _write_json(path: str, document: dict[str, Any]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=1)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
