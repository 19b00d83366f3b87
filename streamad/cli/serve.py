"""Serve many cameras from one process: one backbone, one ZeroMQ publisher, one live web page.

CONFIG is a TOML file listing the cameras (name, source, preset and overrides, window, admission
policy, optional state folder) and the process-wide settings (device, publisher address, web page);
docs/live_io.md has the whole format. Unknown keys and bad values are refused at start with the
file, key and line named.

The newest frame of every camera goes through the backbone in one batch (a batch forms from what is
ready and waits at most [serve] batch_wait_ms for the rest); each camera has its own detector
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
import os
import sys
import threading
from contextlib import ExitStack
from typing import Any

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
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="stop each camera after N frames (overrides the cameras' max_frames)")
    p.add_argument("--quiet", action="store_true", help="no status lines (events and failures are still reported)")
    p.add_argument("--json", metavar="FILE", default=None, help="write the summary (per camera) as JSON")


class Console:
    """Lines on stderr, safe from every camera's thread."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()

    def event(self, line: str) -> None:
        with self._lock:
            sys.stderr.write(f"streamad serve: {line}\n")
            sys.stderr.flush()

    def status(self, camera: str) -> Any:
        def line(text: str) -> None:
            if not self.quiet:
                self.event(f"{camera}: {text}")
        return line


def make_extractor(features: Any) -> Any:
    """The real extractor of ``features`` (a :class:`~streamad.config.FeatureConfig`)."""
    from streamad.vision.features import PatchFeatureExtractor

    return PatchFeatureExtractor(features)


def make_detector(config: Any, extractor: Any) -> Any:
    """``streamad.StreamDetector(config, extractor)``."""
    import streamad

    return streamad.StreamDetector(config, extractor=extractor)


class Extractors:
    """One extractor per distinct feature configuration, and one backbone module for all that share a
    backbone (name, layers, weights, device): cameras with other presets still share the network."""

    def __init__(self) -> None:
        self._by_config: dict[Any, Any] = {}
        self._networks: dict[tuple[Any, ...], Any] = {}

    def get(self, features: Any) -> Any:
        if features not in self._by_config:
            try:
                ext = make_extractor(features)
            except (ValueError, FileNotFoundError) as exc:
                raise UserError(f"cannot load the backbone {features.backbone!r}: {exc}") from exc
            key = (features.backbone, tuple(features.layers), features.weights, features.device)
            network = getattr(ext, "backbone", None)
            if network is not None:
                ext.backbone = self._networks.setdefault(key, network)
            self._by_config[features] = ext
        return self._by_config[features]


def make_remote_detector(pool: Any, cam: Any, config: Any, extractor: Any, on_event: Any) -> Any:
    """Camera ``cam``'s detector in a worker process of ``pool`` (a
    :class:`~streamad.runtime.serve.workers.WorkerPool`), opened there and resumed from its state
    folder; ``extractor`` (this process's handle on the shared backbone) gives its descriptors."""
    from streamad.runtime.serve.workers import DetectorSpec

    spec = DetectorSpec.of(cam.name, config, extractor, state=cam.state, state_reset=cam.state_reset)
    return pool.detector(spec, extractor, on_event=on_event)


def token_from(path: str | None) -> str | None:
    """The access token: the file's first line, else $STREAMAD_WEB_TOKEN, else None."""
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.readline().strip()
        except OSError as exc:
            raise UserError(f"cannot read the web token file {path}: {exc.strerror or exc}") from exc
        if not token:
            raise UserError(f"the web token file {path} is empty")
        return token
    return os.environ.get("STREAMAD_WEB_TOKEN") or None


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from streamad.adapters.publisher import Publisher
    from streamad.runtime.serve.batcher import SharedBackbone
    from streamad.runtime.serve.config import load_config
    from streamad.runtime.serve.fleet import Fleet
    from streamad.runtime.serve.web import WebPage
    from streamad.runtime.serve.workers import WorkerPool
    from streamad.runtime.session import quiet_opencv, resume_state
    from streamad.adapters.sources import open_source
    from streamad.config import ThreadConfig
    from streamad.stream.events import AlarmEvents
    from streamad.vision.threads import apply_threads

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    config = load_config(args.config)
    if args.workers is not None:
        try:
            config = dataclasses.replace(config, workers=args.workers)
        except ValueError as exc:
            raise UserError(str(exc).replace("ServeConfig.workers", "--workers")) from exc
    if args.publish is not None:
        config = dataclasses.replace(config, publish=args.publish)
    if args.http is not None:
        config = dataclasses.replace(config, http=args.http)
    token = token_from(args.http_token_file or config.http_token_file)
    quiet_opencv()
    console = Console(args.quiet)
    workers = min(config.workers, len(config.cameras))
    # the rule of watch (with or without workers): the backbone's results depend on torch's thread count,
    # so in synchronous mode serve and watch run it on as many threads and give the same scores
    background = any(c.learning == "background" for c in config.cameras)
    threads = apply_threads(ThreadConfig(torch=config.torch_threads, blas=config.blas_threads), background=background)
    with ExitStack() as stack:
        publisher = None
        if config.publish:
            publisher = stack.enter_context(Publisher(
                config.publish, topic=config.cameras[0].name, bind_any=config.bind_any,
                overlay_jpeg=config.overlay_jpeg,
                hwm=config.hwm, curve_secret_key_file=config.curve_server_key,
                allowed_clients_dir=config.curve_clients))
            publisher.linger_s = 0.5  # the last status messages (every camera's final state) still go out
            console.event(f"publishing on {publisher.address} (topic: the camera's name; status: _status/CAMERA)")
        backbone = SharedBackbone(max_wait=config.batch_wait_ms / 1000.0)
        stack.callback(backbone.stop)
        pool = None
        if workers:
            pool = WorkerPool(workers, request_timeout=config.worker_timeout_s)
            stack.callback(pool.close)  # after every camera's final save and close (the stack unwinds in reverse)
        extractors, cameras = Extractors(), []
        for cam in config.cameras:
            cameras.append(_camera(stack, cam, config, extractors, backbone, console, args.max_frames,
                                   resume_state, open_source, AlarmEvents, pool))
        fleet = Fleet(cameras, publisher=publisher, backbone=backbone, status_every=config.status_every,
                      on_event=console.event, history_s=config.history_s)
        page = None
        if config.http:
            page = stack.enter_context(WebPage(config.http, lambda: [s.snapshot() for s in fleet.statuses.values()],
                                               fleet.latest, token=token))
            console.event(f"live page on http://{page.address}/" + (" (with its access token: ?token=...)"
                                                                     if token else ""))
        console.event(f"{len(cameras)} camera(s): " + ", ".join(f"{c.name} ({c.source.name})" for c in cameras)
                      + f"; threads: torch {threads['torch']}, BLAS {threads['blas']}"
                      + (f"; detection in {workers} worker process(es)" if workers else ""))
        summary = fleet.run()
        stack.close()  # stop learners, close sources, page and publisher before reporting
    print(summary)
    if args.json:
        _write_json(args.json, summary, threads, workers)
    return 0 if any(c.summary.frames for c in summary.cameras) or summary.stopped != "end" else 1


def _camera(stack: ExitStack, cam: Any, config: Any, extractors: Extractors,
            backbone: Any, console: Console, max_frames: int | None, resume_state: Any, open_source: Any,
            alarm_events: Any, pool: Any = None) -> Any:
    """One camera of the fleet: its detector (resumed from its state; in a worker process with
    ``pool``), its opened source."""
    from streamad.runtime.live import StateSaver
    from streamad.runtime.serve.fleet import Camera
    from streamad.runtime.serve.workers import WorkerDied

    def note(line: str) -> None:
        console.event(f"{cam.name}: {line}")

    try:
        stream_config = cam.stream_config(config.device)  # threads are the process's ([serve]), set above
        events = alarm_events(cam.event_config())
    except ValueError as exc:
        raise UserError(f"camera {cam.name}: {exc}") from exc
    handle = backbone.client(extractors.get(stream_config.features))
    saver = None
    try:
        if pool is not None:
            detector = make_remote_detector(pool, cam, stream_config, handle, note)
            if cam.state is not None:  # the worker resumed it; this process's saver asks the worker to save
                saver = StateSaver(detector, cam.state, every=cam.save_every or None, on_event=note)
        else:
            detector = make_detector(stream_config, handle)
            if cam.state is not None:
                detector, saver = resume_state(detector, cam.state, every=cam.save_every, reset=cam.state_reset,
                                               on_event=note)
    except (ValueError, UserError, WorkerDied) as exc:
        raise UserError(f"camera {cam.name}: {exc}") from exc
    stack.callback(lambda: getattr(detector, "close", lambda: None)())  # after the final save: stop its learner

    def reopen() -> Any:
        return open_source(cam.source, on_event=lambda e: note(e.message), max_retries=cam.max_retries)

    try:
        source = stack.enter_context(reopen())
    except UserError as exc:
        raise UserError(f"camera {cam.name}: {exc}") from exc
    camera = Camera(cam.name, source, detector, saver=saver, events=events,
                    max_frames=max_frames if max_frames is not None else cam.max_frames, reopen=reopen,
                    on_status=console.status(cam.name), status_interval=10.0)
    stack.callback(lambda: camera.source.close())  # the source it ends with (it may have been reopened)
    return camera


def _write_json(path: str, summary: Any, threads: dict[str, int], workers: int = 0) -> None:
    doc = {"frames": summary.frames, "seconds": summary.seconds, "fps": summary.fps, "stopped": summary.stopped,
           "batches": summary.batches, "mean_batch": summary.mean_batch, "threads": threads, "workers": workers,
           "cameras": [{"name": c.name, "frames": c.summary.frames, "seconds": c.summary.seconds,
                        "fps": c.summary.fps, "ready": c.summary.ready, "anomalies": c.summary.anomalies,
                        "alarm_events": c.summary.alarm_events, "bad_frames": c.summary.bad_frames,
                        "stopped": c.summary.stopped, "restarts": c.restarts, "published": c.summary.published,
                        "state_saves": c.summary.state_saves, "state_save_failures": c.summary.state_save_failures,
                        "admissions": c.summary.admissions}
                       for c in summary.cameras]}
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
