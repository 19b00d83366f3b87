"""Live sources: a camera (index or device node) or a network stream (RTSP, HTTP, ...), grabbed on a
background thread that keeps only the newest frame and reconnects with capped exponential back-off."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from streamad.adapters.sources.base import (
    Capture,
    CaptureFactory,
    EventCallback,
    Frame,
    Source,
    SourceEvent,
    default_capture,
    log,
    redact_url,
    to_rgb,
)


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
