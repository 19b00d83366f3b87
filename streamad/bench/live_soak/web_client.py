"""The soak's browser: polls serve's live page as the page's own script does, and counts every answer.

Every ``every`` seconds: ``/status.json``; then ``/frame/CAMERA.jpg`` of each camera whose newest frame
changed (as the page reloads a tile's image); every ``page_every`` seconds the page itself (``/``). A
request that gets no answer within ``timeout`` seconds, or an answer other than 200 (a frame route may
say 404 before the camera's first frame), is a failure.

    >>> from streamad.runtime.serve.web import WebPage
    >>> import time
    >>> with WebPage("127.0.0.1:0", lambda: [], {}) as page:
    ...     poller = PagePoller(f"http://{page.address}", clock=time.monotonic, every=0.1).start()
    ...     time.sleep(0.5)
    ...     poller.stop()
    >>> totals = poller.totals()
    >>> totals["requests"] >= 3, totals["failed"], sorted(totals["routes"])
    (True, 0, ['/', '/status.json'])
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from streamad.bench.live_soak.helper_thread import HelperThread


@dataclass(frozen=True)
class WebRecord:
    """One request: when (``t``), which ``route``, the HTTP ``status`` (None: no answer), milliseconds, and
    whether it counts as ``ok``."""

    t: float
    route: str
    status: int | None
    ms: float
    ok: bool


class PagePoller(HelperThread):
    """Polls the page at ``base`` (``http://HOST:PORT``) on a thread of its own (``streamad-soak-web``),
    which owns its HTTP requests and its records; ``records()`` and ``totals()`` read them (any thread);
    ``stop()`` ends and joins it (safe to call twice; a request in flight ends within ``timeout``)."""

    def __init__(self, base: str, clock: Callable[[], float], *, every: float = 1.0, page_every: float = 30.0,
                 timeout: float = 10.0) -> None:
        if not every > 0:
            raise ValueError(f"PagePoller.every must be > 0 seconds, got {every!r}")
        self.base, self.clock = base.rstrip("/"), clock
        self.every, self.page_every, self.timeout = float(every), float(page_every), float(timeout)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        self._records: list[WebRecord] = []
        self._shown: dict[str, Any] = {}  # camera -> the frame index last fetched
        self._lock = threading.Lock()
        self._init_thread("streamad-soak-web")

    def get(self, route: str, *, not_found_ok: bool = False) -> bytes | None:
        """GET ``route``, recorded; its body, or None when it failed."""
        t0 = time.perf_counter()
        status, body = None, None
        try:
            with self._opener.open(self.base + route, timeout=self.timeout) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError):  # refused, reset, timed out
            pass
        ok = status == 200 or (not_found_ok and status == 404)
        with self._lock:
            self._records.append(WebRecord(self.clock(), route.split("?")[0], status, (time.perf_counter() - t0) * 1e3,
                                           ok))
        return body if status == 200 else None

    def poll_once(self, page: bool = False) -> None:
        """One round: the page (with ``page``), the status, the frames that changed."""
        if page:
            self.get("/")
        body = self.get("/status.json")
        if body is None:
            return
        try:
            cameras = json.loads(body).get("cameras", [])
        except ValueError:
            return
        for cam in cameras:
            name, index = cam.get("name"), cam.get("last_index")
            if isinstance(name, str) and index is not None and self._shown.get(name) != index:
                self._shown[name] = index
                self.get(f"/frame/{quote(name)}.jpg?i={index}", not_found_ok=True)

    def _run(self) -> None:
        next_page = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self.poll_once(page=now >= next_page)
            if now >= next_page:
                next_page = now + self.page_every
            self._stop.wait(self.every)

    def records(self) -> list[WebRecord]:
        with self._lock:
            return list(self._records)

    def totals(self, start: float = float("-inf"), end: float = float("inf")) -> dict[str, Any]:
        """Requests, failures and the slowest answer (ms) between ``start`` and ``end``, also per route
        (``/frame/CAMERA.jpg`` routes counted together as ``/frame``)."""
        recs = [r for r in self.records() if start <= r.t < end]
        routes: dict[str, dict[str, Any]] = {}
        for r in recs:
            key = "/frame" if r.route.startswith("/frame/") else r.route
            row = routes.setdefault(key, {"requests": 0, "failed": 0, "max_ms": 0.0})
            row["requests"] += 1
            row["failed"] += not r.ok
            row["max_ms"] = max(row["max_ms"], r.ms)
        return {"requests": len(recs), "failed": sum(not r.ok for r in recs),
                "max_ms": max((r.ms for r in recs), default=0.0), "routes": routes}

    def stop(self, timeout: float | None = None) -> None:
        super().stop(self.timeout + 5.0 if timeout is None else timeout)
