"""Frame sources on OpenCV: camera, video file, RTSP/HTTP URL, image folder, and the built-in demo.

Every source yields :class:`Frame` objects (RGB ``uint8`` images) and is used the same way::

    with open_source("frames/") as source:       # "0", "clip.mp4", "rtsp://...", "demo"
        for frame in source:
            ...

or, when the caller must stay responsive (a live loop that also watches for Ctrl-C)::

    frame = source.read(timeout=0.25)   # None: nothing yet (live) or the end (source.ended)

Files and folders end cleanly: iteration stops. Live sources (camera, URL) grab on a background
thread and keep only the newest frame (older unread frames are dropped and counted, so a slow
consumer never falls behind), reconnect with capped exponential back-off when the device or stream
fails, and report each failure to ``on_event`` (or the ``streamad.adapters.sources`` logger).

Timestamps: live sources and folders give the wall-clock time (``time.time()``) when the frame was
grabbed or read; video files give the nominal media time ``index / fps``; the demo gives
``index / fps`` of its configuration.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from streamad.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
SPEC_HINT = ("SOURCE can be a camera index (0), a video file, a folder of images, "
             "an rtsp:// or http(s):// URL, or 'demo'")


class SourceError(UserError):
    """A source that cannot be opened or understood (bad path, unreadable video, unknown spec)."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame from a source: ``image`` is RGB ``uint8`` (H, W, 3).

    ``index`` counts the frames the source produced (live sources count every grabbed frame, so a
    gap in ``index`` shows dropped frames); ``source`` names where it came from.
    """

    image: np.ndarray
    timestamp: float
    index: int
    source: str


@dataclass(frozen=True)
class SourceStats:
    """Counters of a source: ``frames`` delivered, ``dropped`` stale live frames overwritten before
    being read, ``skipped`` unreadable files, ``failures`` failed opens/reads of a live source and
    ``reconnects`` successful reconnections after one."""

    frames: int = 0
    dropped: int = 0
    skipped: int = 0
    failures: int = 0
    reconnects: int = 0


@dataclass(frozen=True)
class SourceEvent:
    """Something a user should hear about: ``kind`` is one of ``"skipped"``, ``"open_failed"``,
    ``"lost"``, ``"reconnected"``, ``"gave_up"``. ``retry_in`` is the back-off delay (seconds)
    before the next attempt, when there is one."""

    kind: str
    source: str
    message: str
    attempt: int = 0
    retry_in: float | None = None


EventCallback = Callable[[SourceEvent], None]


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use (so tests can inject a fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[Any], Capture]


def default_capture(target: int | str, *, timeout_ms: int = 5000) -> Capture:
    """``cv2.VideoCapture`` for a camera index or a file/URL; network URLs get open/read timeouts so a
    stalled stream is detected rather than blocking forever."""
    if isinstance(target, str) and urlsplit(target).scheme.lower() in URL_SCHEMES:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    cap = cv2.VideoCapture(target)
    if isinstance(target, int) and cap.isOpened():
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # best effort: keep the driver's own queue short
    return cap


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (source names end up in logs and messages).

    >>> redact_url("rtsp://admin:secret@10.0.0.5:554/stream1")
    'rtsp://admin:***@10.0.0.5:554/stream1'
    >>> redact_url("http://cam.local/video")
    'http://cam.local/video'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An OpenCV image (BGR, BGRA or grayscale) as RGB (H, W, 3), in the image's own dtype.

    This is the one place where OpenCV's BGR(A) order becomes the RGB(A) the engine assumes. It
    never raises: an image it cannot convert (an odd channel count, an empty or 5-d array, a dtype
    OpenCV does not convert) is returned unchanged, and the detector rejects it with a clear error,
    which the live loop counts as a bad frame.

    >>> bgra = np.zeros((2, 2, 4), np.uint8); bgra[..., 0] = 255      # blue, opaque or not
    >>> to_rgb(bgra)[0, 0].tolist(), to_rgb(np.zeros((2, 2), np.uint8)).shape
    ([0, 0, 255], (2, 2, 3))
    >>> to_rgb(np.zeros((2, 2, 2), np.uint8)).shape                     # not convertible: unchanged
    (2, 2, 2)
    """
    try:
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        if image.ndim == 3 and image.shape[2] == 3:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except (cv2.error, AttributeError, TypeError) as exc:
        log.debug("cannot convert a %s image to RGB: %r", getattr(image, "shape", None), exc)
    return image


class Source:
    """Base class: ``read(timeout)``, iteration, ``stats``, ``ended``, ``close()`` and ``with``."""

    live: bool = False

    def __init__(self, name: str, on_event: EventCallback | None = None) -> None:
        self.name = name
        self._on_event = on_event
        self._lock = threading.Lock()
        self._counts = {"frames": 0, "dropped": 0, "skipped": 0, "failures": 0, "reconnects": 0}
        self._ended = False

    # -- subclasses implement ------------------------------------------------------------------
    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame; ``None`` when nothing arrived within ``timeout`` seconds (live sources
        only) or when the source has ended (then ``ended`` is True)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; further reads return ``None``. Safe to call twice."""
        self._ended = True

    # -- shared --------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        """True once the source has no more frames (end of file, closed, or gave up reconnecting)."""
        return self._ended

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(**self._counts)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _report(self, event: SourceEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken callback must not kill the grabber thread
                log.exception("on_event callback failed for: %s", event.message)
        else:
            level = logging.INFO if event.kind == "reconnected" else logging.WARNING
            log.log(level, event.message)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read(timeout=None)
            if frame is None:
                if self.ended:
                    return
                continue
            yield frame

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _natural_key(path: Path) -> list[Any]:
    """Sort key that puts ``frame2.png`` before ``frame10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _decode_file(path: Path) -> tuple[np.ndarray | None, str]:
    """(BGR image, "") or (None, why). The bytes are decoded in memory: unlike ``cv2.imread``, which
    returns the decoded part of a truncated JPEG (the rest grey), ``cv2.imdecode`` refuses it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    if not data:
        return None, "empty file, 0 bytes"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        return None, "corrupt, truncated or wrong format"
    return image, ""


class FolderSource(Source):
    """The images of one folder (not its subfolders), in natural name order.

    png, jpg/jpeg, bmp and tif/tiff are read (extensions in any case); grayscale and 16-bit images
    become RGB ``uint8``. A file OpenCV cannot decode (corrupt, truncated, empty, not an image, deleted
    since the folder was listed) is skipped, counted in ``stats.skipped`` and reported; it never stops
    the stream.
    """

    def __init__(self, folder: str | os.PathLike[str], *, on_event: EventCallback | None = None) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise SourceError(f"image folder {str(folder)!r} does not exist or is not a folder. {SPEC_HINT}")
        super().__init__(f"folder:{root}", on_event)
        self.paths = sorted((p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                            key=_natural_key)
        if not self.paths:
            raise SourceError(f"folder {str(root)!r} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        self._next = 0

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, timeout: float | None = None) -> Frame | None:
        while not self._ended and self._next < len(self.paths):
            i, path = self._next, self.paths[self._next]
            self._next += 1
            image, why = _decode_file(path)
            if image is None:
                self._count("skipped")
                self._report(SourceEvent("skipped", self.name, f"{self.name}: skipped {path.name}: "
                                         f"not a readable image ({why})"))
                continue
            self._count("frames")
            return Frame(to_rgb(image), time.time(), i, self.name)
        self._ended = True
        return None


class VideoFileSource(Source):
    """A video file decoded by OpenCV (whatever its FFmpeg reads: mp4, avi, mkv, ...); ends at the
    last frame. ``capture_factory`` replaces ``cv2.VideoCapture`` (tests)."""

    def __init__(self, path: str | os.PathLike[str], *, capture_factory: CaptureFactory | None = None,
                 on_event: EventCallback | None = None) -> None:
        super().__init__(f"video:{path}", on_event)
        self._cap: Capture | None = (capture_factory or default_capture)(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            self._cap = None
            raise SourceError(f"cannot open video {str(path)!r}: OpenCV could not decode it "
                              "(is it a video file, and complete?)")
        get = getattr(self._cap, "get", None)
        fps = float(get(cv2.CAP_PROP_FPS)) if get else 0.0
        self.fps = fps if np.isfinite(fps) and fps > 0 else 0.0
        self._index = 0

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._ended or self._cap is None:
            self._ended = True
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            self.close()
            return None
        i = self._index
        self._index += 1
        self._count("frames")
        ts = i / self.fps if self.fps else time.time()
        return Frame(to_rgb(image), ts, i, self.name)

    def close(self) -> None:
        self._ended = True
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``initial * factor**(attempt-1)`` seconds, capped at ``maximum``.

    >>> [Backoff(initial=0.5, maximum=4.0).delay(a) for a in range(1, 6)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    """

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"Backoff.initial must be > 0 seconds, got {self.initial!r}")
        if not self.maximum >= self.initial:
            raise ValueError(f"Backoff.maximum must be >= initial ({self.initial}), got {self.maximum!r}")
        if not self.factor >= 1:
            raise ValueError(f"Backoff.factor must be >= 1, got {self.factor!r}")

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** max(0, attempt - 1)))


class LiveSource(Source):
    """A camera or network stream read on a background thread that keeps only the newest frame.

    ``target`` is a camera index or a URL. When opening or reading fails, the thread waits
    ``backoff.delay(attempt)`` seconds and tries again (``stats.failures`` and, once it works again,
    ``stats.reconnects`` count this; every failure is reported). ``max_retries`` consecutive failed
    attempts end the source (``None``: retry forever). ``capture_factory(target)`` replaces
    ``cv2.VideoCapture``, so a test can simulate a device that fails and recovers.
    """

    live = True

    def __init__(self, target: int | str, *, name: str | None = None, capture_factory: CaptureFactory | None = None,
                 backoff: Backoff | None = None, max_retries: int | None = None,
                 on_event: EventCallback | None = None) -> None:
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"LiveSource.max_retries must be >= 0 or None, got {max_retries!r}")
        if name is None:
            name = f"camera:{target}" if isinstance(target, int) else redact_url(str(target))
        super().__init__(name, on_event)
        self.target = target
        self.backoff = backoff or Backoff()
        self.max_retries = max_retries
        self._factory = capture_factory or default_capture
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, float, int] | None = None
        self._grabbed = 0
        self._stop = threading.Event()
        self._done = False  # the grabber thread has finished (closed or gave up)
        self._thread = threading.Thread(target=self._run, name=f"streamad-grab[{name}]", daemon=True)
        self._thread.start()

    def _open(self) -> Capture | None:
        try:
            cap = self._factory(self.target)
        except Exception as exc:  # a factory may raise instead of returning a closed capture
            log.debug("capture factory raised: %r", exc)
            return None
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _run(self) -> None:
        attempt = 0          # consecutive failures since the last good frame
        connected_once = False
        while not self._stop.is_set():
            cap = self._open()
            kind = "open_failed"
            if cap is not None:
                kind = "lost"
                try:
                    while not self._stop.is_set():
                        ok, image = cap.read()
                        if not ok or image is None:
                            break
                        if attempt:
                            if connected_once:
                                self._count("reconnects")
                            verb = "reconnected" if connected_once else "connected"
                            self._report(SourceEvent("reconnected", self.name,
                                                     f"{self.name}: {verb} after {attempt} failed attempt(s)"))
                        attempt, connected_once = 0, True
                        self._publish(image)
                except Exception as exc:  # a driver error is a lost stream, not a dead thread
                    log.debug("capture read raised: %r", exc)
                finally:
                    cap.release()
            if self._stop.is_set():
                break
            attempt += 1
            self._count("failures")
            what = "cannot open" if kind == "open_failed" else "stream lost"
            if self.max_retries is not None and attempt > self.max_retries:
                self._report(SourceEvent("gave_up", self.name, f"{self.name}: {what}; giving up after "
                                         f"{self.max_retries} retries", attempt))
                break
            delay = self.backoff.delay(attempt)
            self._report(SourceEvent(kind, self.name, f"{self.name}: {what}; retrying in {delay:.1f} s "
                                     f"(attempt {attempt})", attempt, delay))
            self._stop.wait(delay)
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def _publish(self, image: np.ndarray) -> None:
        ts = time.time()
        with self._cond:
            if self._ended:
                return
            if self._latest is not None:
                self._count("dropped")
            self._latest = (image, ts, self._grabbed)
            self._grabbed += 1
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        return self._ended or ((self._done or not self._thread.is_alive()) and self._latest is None)

    def read(self, timeout: float | None = None) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None:
                if self._ended or self._done or not self._thread.is_alive():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                # wake periodically so a thread that died without notifying is noticed
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
            image, ts, index = self._latest
            self._latest = None
        self._count("frames")
        return Frame(to_rgb(image), ts, index, self.name)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the grabber thread and release the device (waits up to ``timeout`` seconds for a
        read in progress; a driver stuck longer is left to its daemon thread)."""
        self._stop.set()
        with self._cond:
            self._ended = True
            self._latest = None
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: capture thread did not stop within %.1f s (driver read blocked)", self.name, timeout)


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def open_source(spec: str, *, capture_factory: CaptureFactory | None = None, on_event: EventCallback | None = None,
                backoff: Backoff | None = None, max_retries: int | None = None) -> Source:
    """The source ``spec`` names.

    - ``"demo"``: the built-in generated stream (see ``streamad.adapters.demo``);
    - digits (``"0"``): that camera index; a device node (``/dev/video0``): that camera;
    - ``scheme://...`` (rtsp, http, https, rtmp, udp, tcp, srt): a live network stream;
    - a folder: its images; any other existing file: a video.

    >>> with open_source("demo") as source:
    ...     frame = source.read()
    >>> frame.image.shape, frame.image.dtype, frame.source
    ((384, 384, 3), dtype('uint8'), 'demo')
    """
    text = str(spec).strip()
    if not text:
        raise SourceError(f"empty source. {SPEC_HINT}")
    if text.lower() == "demo":
        from streamad.adapters.demo import DemoSource

        return DemoSource()
    if text.isdigit():
        return LiveSource(int(text), capture_factory=capture_factory, on_event=on_event, backoff=backoff,
                          max_retries=max_retries)
    scheme = urlsplit(text).scheme.lower()
    if "://" in text:
        if scheme not in URL_SCHEMES:
            raise SourceError(f"unsupported URL scheme {scheme!r} in {redact_url(text)!r} "
                              f"(supported: {', '.join(URL_SCHEMES)})")
        return LiveSource(text, capture_factory=capture_factory, on_event=on_event, backoff=backoff,
                          max_retries=max_retries)
    if os.path.isdir(text):
        return FolderSource(text, on_event=on_event)
    if _is_char_device(text):
        return LiveSource(text, name=f"camera:{text}", capture_factory=capture_factory, on_event=on_event,
                          backoff=backoff, max_retries=max_retries)
    if os.path.isfile(text):
        if Path(text).suffix.lower() in IMAGE_EXTENSIONS:
            raise SourceError(f"{text!r} is a single image; a stream needs several: give the folder that holds "
                              "the images instead")
        return VideoFileSource(text, capture_factory=capture_factory, on_event=on_event)
    raise SourceError(f"no such file or folder: {text!r}. {SPEC_HINT}")
