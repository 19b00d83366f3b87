"""The live web page of ``streamad serve``: a tile per camera (annotated frame, score and threshold over
the last minutes, latest alarms) and a JSON status endpoint, on the standard library's
``http.server.ThreadingHTTPServer`` (no web framework: three read-only routes need none, and it adds
no dependency to a camera box).

Routes (GET only; nothing else is served, no file is ever read from disk):

- ``/``: the page (HTML, inline script and style); it polls ``/status.json`` every second;
- ``/status.json``: every camera's status (the fields of the status message), its recent scores and
  thresholds and latest alarms; no source paths, addresses or secrets;
- ``/frame/<camera>.jpg``: the camera's newest annotated frame, drawn when asked for (not in the
  camera's loop), cached per frame.

The page binds to loopback unless told otherwise; on any other address it needs an access token
(:class:`WebPage` refuses to start without one), which every request must carry as ``?token=...`` or
an ``Authorization: Bearer ...`` header (403 otherwise; compared in constant time).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from streamad.errors import UserError
from streamad.results import FrameResult
from streamad.vision.frames import as_rgb_uint8

from streamad.display.overlay import render_overlay
from streamad.adapters.publisher import encode_jpeg
from streamad.runtime.serve.status import StatusSnapshot
from streamad.adapters.sources import Frame

log = logging.getLogger(__name__)
CHART_POINTS = 300  # the page's chart gets at most this many points per camera


class WebError(UserError):
    """The page cannot start: a bad address, a non-loopback address without a token, a port in use."""


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port).

    >>> parse_address("127.0.0.1:8080"), parse_address("localhost:0")
    (('127.0.0.1', 8080), ('localhost', 0))
    """
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise WebError(f"bad web page address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses.

    >>> is_loopback_host("127.0.0.1"), is_loopback_host("::1"), is_loopback_host("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def status_document(snapshots: list[StatusSnapshot]) -> dict[str, Any]:
    """The JSON status: each camera's status fields, chart points (seconds before now, score,
    threshold) and latest alarms."""
    cams = []
    for snap in snapshots:
        hist = snap.history
        step = max(1, math.ceil(len(hist) / CHART_POINTS))
        points = [[round(t - snap.time, 2), _finite(s), _finite(th)] for t, s, th in hist[::step]]
        fields = {k: _finite(v) for k, v in snap.fields().items()}
        cams.append({"name": snap.camera, **fields, "last_index": snap.last_index,
                     "history": points, "latest_alarms": [{k: _finite(v) for k, v in a.items()}
                                                          for a in snap.latest_alarms]})
    return {"cameras": cams}


class FrameImages:
    """Each camera's newest annotated frame as JPEG, drawn on request and cached per frame."""

    def __init__(self, latest: Mapping[str, tuple[Frame, FrameResult]], quality: int = 80) -> None:
        self.latest, self.quality = latest, quality
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def jpeg(self, camera: str) -> bytes | None:
        pair = self.latest.get(camera)  # one read: the camera replaces the pair whole
        if pair is None:
            return None
        frame, result = pair
        with self._lock:
            hit = self._cache.get(camera)
            if hit is not None and hit[0] == result.index:
                return hit[1]
        image = render_overlay(as_rgb_uint8(frame.image), result, label=f"{camera} #{result.index}")
        data = encode_jpeg(image, self.quality)
        with self._lock:
            self._cache[camera] = (result.index, data)
        return data


class WebPage:
    """The page's server on ``address`` (``HOST:PORT``; port 0: any free one), on a daemon thread.
    ``snapshots()`` gives the cameras' status snapshots; ``latest`` maps a camera to its newest
    (frame, result). ``token``: required on every request (and by any non-loopback address)."""

    def __init__(self, address: str, snapshots: Callable[[], list[StatusSnapshot]],
                 latest: Mapping[str, tuple[Frame, FrameResult]], *, token: str | None = None,
                 title: str = "streamad serve") -> None:
        host, port = parse_address(address)
        if not is_loopback_host(host) and not token:
            raise WebError(f"refusing to serve the web page on {address}: it is reachable from other machines. "
                           "Give an access token (web token_file in the configuration, --http-token-file, or "
                           "STREAMAD_WEB_TOKEN), or use a loopback address such as 127.0.0.1:8080")
        if token is not None and len(token) < 16:
            raise WebError("the web page's access token must have at least 16 characters")
        self.snapshots, self.token, self.title = snapshots, token, title
        self.images = FrameImages(latest)
        self.requests = self.refused = 0
        handler = _handler_class(self)
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise WebError(f"cannot serve the web page on {address}: {exc.strerror or exc}") from exc
        self.server.daemon_threads = True
        bound_host, bound_port = self.server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.address = f"{shown}:{bound_port}"
        self.url = f"http://{self.address}/" + (f"?token={token}" if token else "")
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="streamad-web", daemon=True)
        self._thread.start()

    def authorised(self, path: str, headers: Any) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlsplit(path).query).get("token", [""])[0]
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = given or auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def close(self) -> None:
        """Stop serving and join the server thread. Safe to call twice."""
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(5.0)
        self.server.server_close()

    def __enter__(self) -> WebPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_class(page: WebPage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamad"
        sys_version = ""

        def log_message(self, fmt: str, *args: Any) -> None:  # the camera box's stderr is for the cameras
            log.debug("web: " + fmt, *args)

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'none'; img-src 'self'; "
                             "script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            page.requests += 1
            if not page.authorised(self.path, self.headers):
                page.refused += 1
                self._send(HTTPStatus.FORBIDDEN, b"403: this page needs its access token (?token=...)\n",
                           "text/plain; charset=utf-8")
                return
            route = urlsplit(self.path).path
            try:
                if route in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, PAGE.replace("__TITLE__", page.title).encode("utf-8"),
                               "text/html; charset=utf-8")
                elif route == "/status.json":
                    doc = status_document(page.snapshots())
                    self._send(HTTPStatus.OK, json.dumps(doc, allow_nan=False).encode("utf-8"), "application/json")
                elif route.startswith("/frame/") and route.endswith(".jpg"):
                    data = page.images.jpeg(route[len("/frame/"):-len(".jpg")])
                    if data is None:
                        self._send(HTTPStatus.NOT_FOUND, b"no frame yet\n", "text/plain; charset=utf-8")
                    else:
                        self._send(HTTPStatus.OK, data, "image/jpeg")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"404: not here\n", "text/plain; charset=utf-8")
            except (BrokenPipeError, ConnectionResetError):  # the browser went away: nothing to do
                pass

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"405: read-only\n", "text/plain; charset=utf-8")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    return Handler


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px system-ui, sans-serif; margin: 12px; background: #14171c; color: #e6e6e6; }
h1 { font-size: 18px; margin: 0 0 10px; } #note { color: #9aa; font-size: 12px; }
#tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 12px; }
.tile { background: #1e232b; border: 2px solid #2c333d; border-radius: 6px; padding: 8px; }
.tile.alarm { border-color: #e0433a; }
.tile h2 { font-size: 15px; margin: 0 0 6px; display: flex; justify-content: space-between; }
.tile img { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; background: #000; display: block; }
.tile canvas { width: 100%; height: 90px; display: block; margin-top: 6px; background: #171b21; }
.stats { font-size: 12px; color: #b9c2cc; margin-top: 4px; line-height: 1.5; }
.alarms { font-size: 12px; color: #f0a09a; margin-top: 4px; min-height: 1.4em; }
.state { font-size: 12px; padding: 1px 6px; border-radius: 8px; background: #2f6f3e; }
.state.waiting, .state.failed { background: #8a5a12; } .state.stopped, .state.ended { background: #555; }
</style></head><body>
<h1>__TITLE__ <span id="note"></span></h1>
<div id="tiles"></div>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const q = (extra) => token ? "?token=" + encodeURIComponent(token) + (extra ? "&" + extra : "") : (extra ? "?" + extra : "");
const tiles = {};
function fmt(v, d) { return v === null || v === undefined ? "-" : Number(v).toFixed(d); }
function tile(cam) {
  if (tiles[cam.name]) return tiles[cam.name];
  const el = document.createElement("div"); el.className = "tile"; el.dataset.camera = cam.name;
  const h = document.createElement("h2"); const n = document.createElement("span"); n.textContent = cam.name;
  const st = document.createElement("span"); st.className = "state"; h.append(n, st);
  const img = document.createElement("img"); img.alt = cam.name;
  const cv = document.createElement("canvas"); cv.width = 600; cv.height = 140;
  const stats = document.createElement("div"); stats.className = "stats";
  const alarms = document.createElement("div"); alarms.className = "alarms";
  el.append(h, img, cv, stats, alarms); document.getElementById("tiles").append(el);
  return tiles[cam.name] = {el, st, img, cv, stats, alarms, index: null};
}
function chart(cv, hist) {
  const g = cv.getContext("2d"); g.clearRect(0, 0, cv.width, cv.height);
  const pts = hist.filter(p => p[1] !== null);
  if (!pts.length) { g.fillStyle = "#778"; g.font = "22px sans-serif"; g.fillText("warming up", 12, 40); return; }
  const t0 = Math.min(...hist.map(p => p[0])), vals = pts.map(p => p[1]).concat(hist.filter(p => p[2] !== null).map(p => p[2]));
  const hi = Math.max(...vals) * 1.1 || 1, x = t => (t - t0) / Math.max(1e-6, -t0) * (cv.width - 4) + 2, y = v => cv.height - 4 - v / hi * (cv.height - 8);
  const line = (sel, colour) => { g.strokeStyle = colour; g.lineWidth = 2; g.beginPath(); let on = false;
    for (const p of hist) { const v = p[sel]; if (v === null) { on = false; continue; } on ? g.lineTo(x(p[0]), y(v)) : g.moveTo(x(p[0]), y(v)); on = true; } g.stroke(); };
  line(1, "#5fb3f9"); line(2, "#e0433a");
  g.fillStyle = "#9aa"; g.font = "18px sans-serif"; g.fillText("last " + Math.round(-t0) + " s: score (blue), threshold (red)", 8, cv.height - 10);
}
async function refresh() {
  try {
    const r = await fetch("status.json" + q()); const doc = await r.json();
    document.getElementById("note").textContent = doc.cameras.length + " camera(s), updated " + new Date().toLocaleTimeString();
    for (const cam of doc.cameras) {
      const t = tile(cam);
      t.st.textContent = cam.state; t.st.className = "state " + cam.state;
      if (cam.last_index !== null && cam.last_index !== t.index) { t.index = cam.last_index; t.img.src = "frame/" + encodeURIComponent(cam.name) + ".jpg" + q("i=" + cam.last_index); }
      t.stats.textContent = ["frame " + fmt(cam.last_index, 0), fmt(cam.fps, 1) + " fps", "lag " + fmt(cam.lag_s, 2) + " s",
        "score " + fmt(cam.score, 2) + " / threshold " + fmt(cam.threshold, 2), "dropped " + cam.dropped,
        "admissions/s " + fmt(cam.admissions_per_s, 2), "nominal " + fmt(cam.nominal_patches, 0), "alarms " + cam.alarms].join(" \u00b7 ");
      t.alarms.textContent = cam.latest_alarms.slice(-3).reverse().map(a => "alarm " + a.event + ": frames " + a.start + "-" + a.end + ", peak " + fmt(a.peak_score, 2)).join("  |  ");
      t.el.classList.toggle("alarm", cam.score !== null && cam.threshold !== null && cam.score > cam.threshold);
      chart(t.cv, cam.history);
    }
  } catch (e) { document.getElementById("note").textContent = "no answer from the server: " + e; }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
