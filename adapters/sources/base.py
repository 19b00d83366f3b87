"""What every source shares: :class:`Frame`, :class:`Source`, its counters and events, and the helpers
the concrete sources use (OpenCV capture, BGR to RGB, URL redaction).

All sources report to one logger, ``streamad.adapters.sources`` (when no ``on_event`` is given).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from streamad.errors import UserError

log = logging.getLogger("streamad.adapters.sources")  # one logger for every source, named by the package

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
