"""A network camera that can fail and return: the demo scene as an MJPEG stream over HTTP on 127.0.0.1.

``streamad serve`` reads it as it reads any IP camera (``source = "http://127.0.0.1:PORT/demo.mjpg"``:
a live source, OpenCV's FFmpeg reader, a grabber thread, reconnection with back-off). :meth:`down`
takes the camera off the network as a power or network cut does: every open connection is closed (the
reader sees the stream end) and the port refuses new ones until :meth:`up`, which listens on the same
port again. Frames are the demo scene of ``seed``, numbered on from where the stream left off,
``fps`` of them per second to each connected reader.

Threads: the HTTP server's accept thread (``streamad-soak-camera``) and one thread per connection,
all owned here; :meth:`close` (or the ``with`` block's end) stops them and waits for them.

    >>> import cv2
    >>> with DemoCamera(seed=1, fps=20, size=64) as cam:
    ...     cap = cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG)
    ...     ok, image = cap.read()
    ...     cap.release()
    >>> ok, image.shape
    (True, (64, 64, 3))
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2

from streamad.adapters.sources.demo import DemoConfig, DemoStream

BOUNDARY = "streamadframe"


class DemoCamera:
    """The demo scene of ``seed`` (``size`` pixels square) served as MJPEG at ``fps`` frames per second on
    ``127.0.0.1:port`` (0: any free port, then kept across :meth:`down` / :meth:`up`); ``url`` is what a
    source opens. ``frames_sent`` counts the frames rendered for readers."""

    def __init__(self, seed: int = 0, fps: float = 5.0, *, size: int = 384, port: int = 0, quality: int = 80) -> None:
        if not 0 < fps <= 100:
            raise ValueError(f"DemoCamera.fps must be in (0, 100], got {fps!r}")
        self.stream = DemoStream(DemoConfig(seed=seed, size=size, fps=float(fps)))
        self.fps, self.quality = float(fps), int(quality)
        self.frames_sent = 0
        self._next = 0  # the next frame of the scene (shared by every connection: the scene goes on)
        self._lock = threading.Lock()
        self._down = threading.Event()
        self._closed = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/demo.mjpg"

    @property
    def is_down(self) -> bool:
        return self._down.is_set()

    def wait_down(self, seconds: float) -> bool:
        """Wait up to ``seconds`` unless the camera goes down first; True if it is down."""
        return self._down.wait(seconds)

    # -- the scene ------------------------------------------------------------------------------------
    def next_jpeg(self) -> bytes:
        """The next frame of the scene, JPEG-encoded."""
        with self._lock:
            index = self._next
            self._next += 1
            self.frames_sent += 1
        image = self.stream.sample(index).image
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    # -- on and off the network -----------------------------------------------------------------------
    def _listen(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = False  # server_close waits for the connections' threads (they end on down)
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="streamad-soak-camera", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Off the network: close every connection, refuse new ones (until :meth:`up`)."""
        if self._down.is_set() or self._closed:
            return
        self._down.set()
        self._stop_server()

    def up(self) -> None:
        """Back on the network, on the same port."""
        if not self._down.is_set() or self._closed:
            return
        self._listen()
        self._down.clear()

    def _stop_server(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()           # the accept loop ends
            server.server_close()       # the port is released; waits for the connections' threads
        if thread is not None:
            thread.join(5.0)

    def close(self) -> None:
        """Stop serving for good and join every thread. Safe to call twice."""
        self._closed = True
        self._down.set()
        self._stop_server()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> DemoCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(camera: DemoCamera) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:  # the soak's output is its report
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.connection.settimeout(10.0)  # a reader that stops reading is dropped, never waited on forever
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            period, due = 1.0 / camera.fps, time.monotonic()
            try:
                while not camera.is_down:
                    jpeg = camera.next_jpeg()
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode() + jpeg + b"\r\n")
                    self.wfile.flush()
                    due = max(due + period, time.monotonic() - period)
                    camera.wait_down(max(0.0, due - time.monotonic()))
            except OSError:  # the reader went away (or timed out): this connection is over
                pass
            self.close_connection = True

    return Handler
