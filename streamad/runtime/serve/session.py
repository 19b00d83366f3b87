"""A ``streamad serve`` run put together from its configuration, as :mod:`streamad.runtime.session` puts a
``watch`` run together: the command line only parses, checks, calls and prints.

:class:`ServeSession` opens, in one ``ExitStack`` (so everything is closed however the run ends): the
process's thread budget, the shared ZeroMQ :class:`~streamad.adapters.publisher.Publisher`, the shared
backbone (:class:`~streamad.runtime.serve.batcher.SharedBackbone`), the worker processes
(``[serve] workers``), every camera (its detector resumed from its state folder, its source opened), the
:class:`~streamad.runtime.serve.fleet.Fleet`, and the web page::

    config = load_config("cameras.toml")
    with ServeSession.from_config(config, on_event=print) as session:
        summary = session.run()
    print(summary)

Every message for the user goes to ``on_event(line)``; a camera's progress lines to
``status_lines(camera)(line)`` when given. A problem with a camera (a bad value, an unusable state, a
source that cannot be opened) is a :class:`~streamad.errors.UserError` that names the camera.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from streamad.config import FeatureConfig, StreamConfig, ThreadConfig
from streamad.errors import UserError
from streamad.stream.events import AlarmEvents
from streamad.adapters.publisher import Publisher
from streamad.adapters.sources import Source, open_source
from streamad.runtime.detector import Detector
from streamad.runtime.live import StateSaver
from streamad.runtime.serve.batcher import BatchedExtractor, SharedBackbone
from streamad.runtime.serve.config import CameraConfig, ServeConfig, auto_batch_wait_ms
from streamad.runtime.serve.fleet import Camera, Fleet, FleetSummary
from streamad.runtime.serve.web import WebPage
from streamad.runtime.serve.workers import DetectorSpec, WorkerDied, WorkerPool
from streamad.runtime.session import resume_state

EventSink = Callable[[str], None]
#: A camera's detector from its StreamConfig and its handle on the shared backbone.
DetectorFactory = Callable[[StreamConfig, BatchedExtractor], Detector]


def make_extractor(features: FeatureConfig) -> Any:
    """The real extractor of ``features`` (tests and benchmarks put a stand-in here)."""
    from streamad.vision.features import PatchFeatureExtractor

    return PatchFeatureExtractor(features)


def make_detector(config: StreamConfig, extractor: BatchedExtractor) -> Detector:
    """``StreamDetector(config, extractor)``: a camera's detector in this process."""
    from streamad.stream.detector import StreamDetector

    return StreamDetector(config, extractor=extractor)


def read_token(path: str | None) -> str | None:
    """The web page's access token: the file's first line, else ``$STREAMAD_WEB_TOKEN``, else None."""
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


class Extractors:
    """One extractor per distinct feature configuration, and one backbone module for all that share a
    backbone (name, layers, weights, device): cameras with other presets still share the network."""

    def __init__(self) -> None:
        self._by_config: dict[FeatureConfig, Any] = {}
        self._networks: dict[tuple[Any, ...], Any] = {}

    def get(self, features: FeatureConfig) -> Any:
        if features not in self._by_config:
            try:
                ext = make_extractor(features)
            except (ValueError, FileNotFoundError) as exc:
                raise UserError(f"cannot load the backbone {features.backbone!r}: {exc}") from exc
            key = (features.backbone, tuple(features.layers), features.weights, features.device)
            network = getattr(ext, "backbone", None)  # a stand-in extractor has no network to share
            if network is not None:
                ext.backbone = self._networks.setdefault(key, network)
            self._by_config[features] = ext
        return self._by_config[features]

    def devices(self) -> list[str]:
        """The torch devices of the extractors made so far (``"cpu"`` for a stand-in that names none)."""
        return [str(getattr(ext, "device", "cpu")) for ext in self._by_config.values()]


class ServeSession:
    """One ``streamad serve`` run of ``config`` (see the module docstring). ``max_frames`` overrides every
    camera's; ``token`` is the page's access token (default: :func:`read_token` of
    ``config.http_token_file``). After :meth:`open` (or entering the ``with`` block) ``threads``,
    ``batch_wait_ms`` (the file's, else :func:`~streamad.runtime.serve.config.auto_batch_wait_ms`; None: no
    batches, each camera's backbone work on its own thread),
    ``workers``, ``publisher``, ``cameras``, ``fleet`` and ``page`` are set."""

    def __init__(self, config: ServeConfig, *, on_event: EventSink, status_lines: Callable[[str], EventSink] | None
                 = None, max_frames: int | None = None, token: str | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise UserError(f"max_frames must be >= 1, got {max_frames}")
        self.config, self.on_event, self.status_lines = config, on_event, status_lines
        self.max_frames, self.token = max_frames, token
        self.workers = min(config.workers, len(config.cameras))
        self.threads: dict[str, int] = {}
        self.batch_wait_ms: float | None = None
        self.publisher: Publisher | None = None
        self.cameras: list[Camera] = []
        self.fleet: Fleet | None = None
        self.page: WebPage | None = None
        self._stack = ExitStack()
        self._opened = False

    @classmethod
    def from_config(cls, config: ServeConfig, *, on_event: EventSink,
                    status_lines: Callable[[str], EventSink] | None = None, max_frames: int | None = None,
                    token_file: str | None = None) -> ServeSession:
        """A session of ``config``, its page's token read from ``token_file`` (default: the config's
        ``http_token_file``, else ``$STREAMAD_WEB_TOKEN``)."""
        return cls(config, on_event=on_event, status_lines=status_lines, max_frames=max_frames,
                   token=read_token(token_file or config.http_token_file))

    # -- opening -----------------------------------------------------------------------------------
    def open(self) -> ServeSession:
        """Open every part (once); on an error, close what was opened and raise."""
        if self._opened:
            return self
        self._opened = True
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _open(self) -> None:
        from streamad.stream.threads import apply_threads

        config, stack = self.config, self._stack
        # the rule of watch (with or without workers): the backbone's results depend on torch's thread count,
        # so in synchronous mode serve and watch run it on as many threads and give the same scores
        background = any(c.learning == "background" for c in config.cameras)
        self.threads = apply_threads(ThreadConfig(torch=config.torch_threads, blas=config.blas_threads),
                                     background=background)
        self.publisher = self._open_publisher()
        backbone = SharedBackbone(max_wait=None)  # its wait is set below, once the backbones' devices are known
        stack.callback(backbone.stop)
        pool = None
        if self.workers:
            pool = WorkerPool(self.workers, request_timeout=config.worker_timeout_s)
            stack.callback(pool.close)  # after every camera's final save and close (the stack unwinds in reverse)
        extractors = Extractors()
        self.cameras = [self._camera(cam, extractors, backbone, pool) for cam in config.cameras]
        self.batch_wait_ms = (config.batch_wait_ms if config.batch_wait_ms is not None
                              else auto_batch_wait_ms(extractors.devices()))
        backbone.max_wait = None if self.batch_wait_ms is None else self.batch_wait_ms / 1000.0
        fleet = Fleet(self.cameras, publisher=self.publisher, backbone=backbone, status_every=config.status_every,
                      on_event=self.on_event, history_s=config.history_s)
        self.fleet = fleet
        if config.http:
            self.page = stack.enter_context(WebPage(config.http, lambda: [s.snapshot() for s in fleet.statuses.values()],
                                                    fleet.latest, token=self.token))
            self.on_event(f"live page on http://{self.page.address}/" + (" (with its access token: ?token=...)"
                                                                         if self.token else ""))
        self.on_event(f"{len(self.cameras)} camera(s): " + ", ".join(f"{c.name} ({c.source.name})" for c in self.cameras)
                      + f"; threads: torch {self.threads['torch']}, BLAS {self.threads['blas']}"
                      + ("; backbone on each camera's thread (no batches on the CPU)" if self.batch_wait_ms is None
                         else f"; batch wait {self.batch_wait_ms:g} ms")
                      + (f"; detection in {self.workers} worker process(es)" if self.workers else ""))

    def _open_publisher(self) -> Publisher | None:
        config = self.config
        if not config.publish:
            return None
        publisher = self._stack.enter_context(Publisher(
            config.publish, topic=config.cameras[0].name, bind_any=config.bind_any, overlay_jpeg=config.overlay_jpeg,
            hwm=config.hwm, curve_secret_key_file=config.curve_server_key, allowed_clients_dir=config.curve_clients))
        publisher.linger_s = 0.5  # the last status messages (every camera's final state) still go out
        self.on_event(f"publishing on {publisher.address} (topic: the camera's name; status: _status/CAMERA)")
        return publisher

    def _camera(self, cam: CameraConfig, extractors: Extractors, backbone: SharedBackbone,
                pool: WorkerPool | None) -> Camera:
        """One camera of the fleet: its detector (resumed from its state; in a worker process with
        ``pool``), its opened source."""
        stack = self._stack

        def note(line: str) -> None:
            self.on_event(f"{cam.name}: {line}")

        try:
            stream_config = cam.stream_config(self.config.device)  # threads are the process's ([serve]), set above
            events = AlarmEvents(cam.event_config())
        except ValueError as exc:
            raise UserError(f"camera {cam.name}: {exc}") from exc
        handle = backbone.client(extractors.get(stream_config.features))
        detector, saver = self._detector(cam, stream_config, handle, pool, note)
        stack.callback(detector.close)  # after the final save: stop its learner

        def reopen() -> Source:
            return open_source(cam.source, on_event=lambda e: note(e.message), max_retries=cam.max_retries)

        try:
            source = reopen()
        except UserError as exc:
            raise UserError(f"camera {cam.name}: {exc}") from exc
        # the session closes only the source the camera ends with: the fleet closes (and drops) each one it
        # replaces, and nothing here may keep one alive (the session once held the first source to the end:
        # a camera restarted in a one-hour soak kept its first demo source's frames, 36 MiB, for good)
        camera = Camera(cam.name, source, detector, saver=saver, events=events,
                        max_frames=self.max_frames if self.max_frames is not None else cam.max_frames, reopen=reopen,
                        on_status=None if self.status_lines is None else self.status_lines(cam.name),
                        status_interval=10.0)
        stack.callback(lambda: camera.source.close())
        return camera

    def _detector(self, cam: CameraConfig, config: StreamConfig, handle: BatchedExtractor, pool: WorkerPool | None,
                  note: EventSink) -> tuple[Detector, StateSaver | None]:
        """The camera's detector and its state saver: in a worker process of ``pool`` (which resumes it
        from the state folder; this process's saver asks the worker to save), else in this process."""
        try:
            if pool is not None:
                spec = DetectorSpec.of(cam.name, config, handle, state=cam.state, state_reset=cam.state_reset)
                remote = pool.detector(spec, handle, on_event=note)
                saver = None if cam.state is None else StateSaver(remote, cam.state, every=cam.save_every or None,
                                                                   on_event=note)
                return remote, saver
            detector = make_detector(config, handle)
            if cam.state is None:
                return detector, None
            from streamad.stream.detector import StreamDetector

            if not isinstance(detector, StreamDetector):
                raise UserError(f"state = {cam.state!r} needs a detector that saves and loads its state")
            return resume_state(detector, cam.state, every=cam.save_every, reset=cam.state_reset, on_event=note)
        except (ValueError, UserError, WorkerDied) as exc:
            raise UserError(f"camera {cam.name}: {exc}") from exc

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> FleetSummary:
        """Run every camera until each ends or a stop (Ctrl-C, SIGTERM); then close everything (learners
        stopped, sources, page and publisher closed) and return the summary."""
        self.open()
        assert self.fleet is not None
        try:
            return self.fleet.run()
        finally:
            self.close()

    def close(self) -> None:
        """Close what :meth:`open` opened, in reverse order; safe to call twice."""
        self._stack.close()

    def __enter__(self) -> ServeSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary_document(self, summary: FleetSummary) -> dict[str, Any]:
        """The summary as a JSON document: the whole run, the thread budget, and one entry per camera."""
        keys = ("frames", "seconds", "fps", "ready", "anomalies", "alarm_events", "bad_frames", "stopped", "published",
                "state_saves", "state_save_failures", "admissions")
        return {"frames": summary.frames, "seconds": summary.seconds, "fps": summary.fps, "stopped": summary.stopped,
                "batches": summary.batches, "mean_batch": summary.mean_batch, "batch_wait_ms": self.batch_wait_ms,
                "threads": self.threads,
                "workers": self.workers,
                "cameras": [{"name": c.name, **{k: getattr(c.summary, k) for k in keys}, "restarts": c.restarts}
                            for c in summary.cameras]}


def with_overrides(config: ServeConfig, **changes: Any) -> ServeConfig:
    """``config`` with the given settings replaced (None: kept); a bad value is a UserError naming the
    setting as ``--NAME`` (the command line's overrides).

    >>> from streamad.runtime.serve.config import CameraConfig
    >>> base = ServeConfig((CameraConfig("a", "demo"),))
    >>> with_overrides(base, workers=2, http=None).workers
    2
    >>> with_overrides(base, workers=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamad.errors.UserError: --workers must be an int in [0, 256] ..., got -1
    """
    given = {k: v for k, v in changes.items() if v is not None}
    try:
        return dataclasses.replace(config, **given)
    except ValueError as exc:
        message = str(exc)
        for name in given:
            message = message.replace(f"ServeConfig.{name}", "--" + name.replace("_", "-"))
        raise UserError(message) from exc
