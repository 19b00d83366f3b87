"""Publish every frame's verdict, and every alarm event, over ZeroMQ (PUB), without ever blocking the engine.

Wire format (schema 4; docs/live_io.md): three message types, told apart by the header's ``type``
and by the topic. A **frame** message per frame, three parts, or four with an overlay::

    [0] topic    bytes: the camera's name (``streamad serve``), default b"streamad" (``streamad watch``);
                 subscribers filter on its prefix
    [1] header   UTF-8 JSON object:
                 {"schema": 4, "type": "frame", "seq": int, "camera": str, "index": int, "timestamp": float,
                  "source": str, "score": float|null, "threshold": float|null, "p_value": float|null,
                  "anomalous": bool, "ready": bool, "drift": bool, "admitted": bool,
                  "calibration": "trusted"|"screened"|"quantile"|null, "calibration_frames": int,
                  "heatmap_shape": [h, w], "heatmap_dtype": "float32", "has_overlay": bool}
    [2] heatmap  raw little-endian float32, C order (row by row), h*w*4 bytes; empty (and
                 heatmap_shape [0, 0]) when there is no heatmap (not ready)
    [3] overlay  JPEG (RGB content) of the annotated frame; present only when has_overlay is true

and an **event** message per alarm event (consecutive anomalous frames, :mod:`streamad.stream.events`)
when it closes, three parts, on the topic ``<topic>/event`` (so a subscriber to that prefix gets
only events)::

    [0] topic    bytes, b"streamad/event"
    [1] header   {"schema": 4, "type": "event", "seq": int, "camera": str, "source": str, "event": int,
                  "start": int, "end": int, "frames": int, "start_time": float, "end_time": float,
                  "peak_index": int, "peak_score": float, "peak_p_value": float|null,
                  "peak_threshold": float|null, "heatmap_shape": [h, w], "heatmap_dtype": "float32"}
    [2] heatmap  the peak frame's heatmap, as in a frame message

and, from ``streamad serve``, a **status** message per camera once a second, two parts, on the topic
``_status/<camera>`` (a subscriber to ``_status`` gets every camera's)::

    [0] topic    bytes, b"_status/line3"
    [1] header   {"schema": 4, "type": "status", "seq": int, "camera": str, "time": float, "state": str,
                  "frames": int, "fps": float, "lag_s": float|null, "dropped": int, "bad_frames": int,
                  "admissions_per_s": float, "nominal_patches": int|null, "score": float|null,
                  "threshold": float|null, "anomalous": int, "alarms": int, "reconnects": int,
                  "failures": int}

``score`` and ``threshold`` are null while warming up (and a non-finite value is sent as null, so the
header is strict JSON). ``seq`` numbers the messages of one type on one topic of one publisher (0, 1,
2, ...): a gap at a subscriber means messages of that type were dropped on the way. ``camera`` names
the camera (the topic of its frames). ``index`` is the detector's frame number. ``calibration``
names the rule whose calibration gave the threshold (null while there is none: the frame could not be
judged yet, which is not the same as normal) and ``calibration_frames`` how many scores it holds.
Schema 3 had no ``calibration`` fields; schema 2 had no
``camera`` and no status message; schema 1 was the frame message without ``type`` and ``p_value``.

Never blocking: the socket has a bounded send high-water mark (``hwm`` messages per subscriber),
``LINGER 0`` and every send is non-blocking. ZeroMQ's PUB socket drops messages for a subscriber
whose queue is full (a slow or stalled one) without telling the sender; a send refused outright
(``zmq.Again``) is counted in ``dropped``. Either way ``publish`` returns at once.

Safety: the socket binds to loopback (``tcp://127.0.0.1:5556``) unless told otherwise; binding to
any other interface (``tcp://*:5556``, ``tcp://0.0.0.0:...``, a LAN address) exposes the stream to
the network and needs ``bind_any=True`` (CLI: ``--bind-any``), unless CURVE is on.

CURVE (optional): with ``curve_secret_key_file`` (the server's ``.key_secret``) and
``allowed_clients_dir`` (a folder of the accepted clients' public ``.key`` files) every message is
encrypted and only those clients can subscribe; the others are refused during the handshake and
receive nothing. Then a non-loopback address needs no ``bind_any``: the stream is not readable by
whoever can reach the port. The keys are read once, when the publisher starts (see
:mod:`streamad.adapters.security` and ``streamad keys``).

    >>> with Publisher("tcp://127.0.0.1:*") as pub:       # "*": any free port
    ...     pub.address.startswith("tcp://127.0.0.1:")
    True
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq

from streamad.adapters.wire import (  # re-exported: the names publisher users know
    DEFAULT_ADDRESS,
    DEFAULT_TOPIC,
    EVENT_SUFFIX,
    HEATMAP_DTYPE,
    SCHEMA_VERSION,
    STATUS_FIELDS,
    STATUS_PREFIX,
)
from streamad.errors import UserError
from streamad.results import AlarmEvent, FrameResult

log = logging.getLogger(__name__)

LOCAL_TRANSPORTS = ("ipc", "inproc")


class PublishError(UserError):
    """The publisher cannot bind (address in use, not loopback without permission, malformed)."""


def _host_of(address: str) -> tuple[str, str]:
    """(transport, host) of a ZeroMQ endpoint such as ``tcp://127.0.0.1:5556``."""
    if "://" not in address:
        raise PublishError(f"bad publish address {address!r}: expected e.g. {DEFAULT_ADDRESS}")
    transport, rest = address.split("://", 1)
    if transport not in ("tcp",):
        return transport, rest
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port:
        raise PublishError(f"bad publish address {address!r}: expected tcp://HOST:PORT, e.g. {DEFAULT_ADDRESS}")
    return transport, host.strip("[]")


def is_loopback(address: str) -> bool:
    """True when a bind address only accepts connections from this machine.

    >>> is_loopback("tcp://127.0.0.1:5556"), is_loopback("tcp://localhost:1"), is_loopback("ipc:///tmp/s")
    (True, True, True)
    >>> is_loopback("tcp://*:5556"), is_loopback("tcp://0.0.0.0:5556"), is_loopback("tcp://192.168.1.4:5556")
    (False, False, False)
    """
    transport, host = _host_of(address)
    if transport in LOCAL_TRANSPORTS:
        return True
    if transport != "tcp":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a hostname: not provably local
        return False


def _number(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _heatmap_part(heatmap: np.ndarray | None, what: str) -> tuple[list[int], bytes]:
    """``heatmap_shape`` and the payload bytes of a heatmap (``[0, 0]`` and empty for None)."""
    if heatmap is None:
        return [0, 0], b""
    hm = np.ascontiguousarray(heatmap, dtype="<f4")  # little-endian float32 whatever the machine
    if hm.ndim != 2:
        raise ValueError(f"{what} must be 2-D (h, w), got shape {hm.shape}")
    return [int(hm.shape[0]), int(hm.shape[1])], hm.tobytes()


def encode_message(result: FrameResult, *, source: str = "", seq: int = 0, topic: str = DEFAULT_TOPIC,
                   overlay_jpeg: bytes | None = None, camera: str | None = None) -> list[bytes]:
    """The frame message (3 ``bytes`` parts, 4 with an overlay) for one result; see the module
    docstring. ``camera`` defaults to the topic."""
    shape, payload = _heatmap_part(result.heatmap, "FrameResult.heatmap")
    header = {
        "schema": SCHEMA_VERSION,
        "type": "frame",
        "seq": int(seq),
        "camera": str(topic if camera is None else camera),
        "index": int(result.index),
        "timestamp": _number(result.timestamp),
        "source": str(source),
        "score": _number(result.score),
        "threshold": _number(result.threshold),
        "p_value": _number(result.p_value),
        "anomalous": bool(result.anomalous),
        "ready": bool(result.ready),
        "drift": bool(result.drift),
        "admitted": bool(result.admitted),
        "calibration": None if result.calibration is None else str(result.calibration),
        "calibration_frames": int(result.calibration_frames),
        "heatmap_shape": shape,
        "heatmap_dtype": HEATMAP_DTYPE,
        "has_overlay": bool(overlay_jpeg),
    }
    text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    parts = [topic.encode("utf-8"), text.encode("utf-8"), payload]
    return parts + [overlay_jpeg] if overlay_jpeg else parts


def encode_event(event: AlarmEvent, *, source: str = "", seq: int = 0, topic: str = DEFAULT_TOPIC,
                 camera: str | None = None) -> list[bytes]:
    """The event message (3 ``bytes`` parts, on topic ``topic + EVENT_SUFFIX``) for one alarm event;
    see the module docstring. ``camera`` defaults to the topic."""
    shape, payload = _heatmap_part(event.peak_heatmap, "AlarmEvent.peak_heatmap")
    header = {
        "schema": SCHEMA_VERSION,
        "type": "event",
        "seq": int(seq),
        "camera": str(topic if camera is None else camera),
        "source": str(source),
        "event": int(event.number),
        "start": int(event.start),
        "end": int(event.end),
        "frames": int(event.frames),
        "start_time": _number(event.start_time),
        "end_time": _number(event.end_time),
        "peak_index": int(event.peak_index),
        "peak_score": _number(event.peak_score),
        "peak_p_value": _number(event.peak_p_value),
        "peak_threshold": _number(event.peak_threshold),
        "heatmap_shape": shape,
        "heatmap_dtype": HEATMAP_DTYPE,
    }
    text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    return [(topic + EVENT_SUFFIX).encode("utf-8"), text.encode("utf-8"), payload]


def status_topic(camera: str = "") -> str:
    """The topic of ``camera``'s status messages (every camera's: ``status_topic()``, a prefix).

    >>> status_topic("line3"), status_topic()
    ('_status/line3', '_status')
    """
    return f"{STATUS_PREFIX}/{camera}" if camera else STATUS_PREFIX


def encode_status(status: Mapping[str, Any], *, camera: str, seq: int = 0) -> list[bytes]:
    """The status message (2 ``bytes`` parts, topic ``_status/<camera>``) of one camera: the fields
    ``STATUS_FIELDS`` of ``status`` (missing ones null; non-finite numbers null)."""
    header: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": "status", "seq": int(seq), "camera": str(camera)}
    for name in STATUS_FIELDS:
        value = status.get(name)
        if isinstance(value, float):
            value = _number(value)
        header[name] = value
    text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    return [status_topic(camera).encode("utf-8"), text.encode("utf-8")]


def encode_jpeg(image_rgb: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an RGB ``uint8`` image."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding of the overlay failed")
    return buf.tobytes()


class Publisher:
    """A ZeroMQ PUB socket that sends one message per frame and one per alarm event (see the module
    docstring): ``publish(result)`` and ``publish_event(event)``; ``sent`` and ``events_sent`` count
    them, ``dropped`` counts the messages of either type refused by a full queue.

    ``overlay_jpeg=True`` adds the annotated frame as JPEG (rendered from ``frame`` by
    ``streamad.display.overlay.render_overlay`` unless ``publish`` is given ``overlay``).
    ``curve_secret_key_file`` and ``allowed_clients_dir`` (together) turn CURVE on (see the module
    docstring): ``curve`` is then True, ``allowed_clients`` counts the admitted public keys, and the
    socket lives in a ZeroMQ context of its own (``context`` is ignored).
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, *, topic: str = DEFAULT_TOPIC, hwm: int = 8,
                 bind_any: bool = False, overlay_jpeg: bool = False, jpeg_quality: int = 80,
                 context: zmq.Context | None = None, curve_secret_key_file: str | os.PathLike[str] | None = None,
                 allowed_clients_dir: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(hwm, int) or hwm < 1:
            raise ValueError(f"Publisher.hwm must be an int >= 1 (messages queued per subscriber), got {hwm!r}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"Publisher.jpeg_quality must be in 1..100, got {jpeg_quality!r}")
        if (curve_secret_key_file is None) != (allowed_clients_dir is None):
            raise PublishError("CURVE needs both the server's secret key file (--curve-server-key) and the folder "
                               "of allowed client public keys (--curve-clients); 'streamad keys DIR' writes both")
        self.curve = curve_secret_key_file is not None
        if not is_loopback(address) and not bind_any and not self.curve:
            raise PublishError(f"refusing to bind {address}: it is reachable from other machines. Use a loopback "
                               f"address such as {DEFAULT_ADDRESS}, pass --bind-any (bind_any=True) if the "
                               "stream should be visible on the network, or protect it with CURVE "
                               "(--curve-server-key and --curve-clients)")
        self.topic = topic
        self.overlay_jpeg = overlay_jpeg
        self.jpeg_quality = int(jpeg_quality)
        self.sent = 0
        self.events_sent = 0
        self.dropped = 0
        self.allowed_clients = 0
        self._auth = None
        self._own_ctx: zmq.Context | None = None
        if self.curve:
            from streamad.adapters.security import allowed_client_keys, load_key_pair

            public, secret = load_key_pair(curve_secret_key_file)  # type: ignore[arg-type]
            self.allowed_clients = len(allowed_client_keys(allowed_clients_dir))  # type: ignore[arg-type]
            # a context of its own: the authenticator (ZAP handler) then governs this socket only
            self._own_ctx = self._ctx = zmq.Context()
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx, log=log)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(allowed_clients_dir))
        else:
            self._ctx = context or zmq.Context.instance()
        self._socket = self._ctx.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDTIMEO, 0)
        if self.curve:
            self._socket.curve_secretkey = secret
            self._socket.curve_publickey = public
            self._socket.curve_server = True
        try:
            self._socket.bind(address)
        except zmq.ZMQError as exc:
            self._socket.close(0)
            self._stop_auth()
            raise PublishError(f"cannot bind {address}: {exc.strerror}. Is another publisher (e.g. a running "
                               "'streamad watch') using it? Pick another address, e.g. tcp://127.0.0.1:5557") from exc
        self.address: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.status_sent = 0
        self.linger_s = 0.0  # on close, how long queued messages may still go out (0: dropped at once)
        self._seqs: dict[tuple[str, str], int] = {}  # (message type, topic) -> next seq
        self._lock = threading.Lock()  # one socket, many camera threads: a ZeroMQ socket is not thread-safe

    def next_seq(self, kind: str = "frame", topic: str | None = None) -> int:
        """The ``seq`` the next message of type ``kind`` on ``topic`` (default: the publisher's; for a
        status message, the camera's name) will carry."""
        return self._seqs.get((kind, self.topic if topic is None else topic), 0)

    def _next_seq(self, kind: str, topic: str) -> int:
        seq = self._seqs.get((kind, topic), 0)
        self._seqs[(kind, topic)] = seq + 1
        return seq

    def _send(self, parts: list[bytes]) -> bool:
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        return True

    def publish(self, result: FrameResult, frame: np.ndarray | None = None, source: str = "", *,
                overlay: np.ndarray | None = None, topic: str | None = None, camera: str | None = None) -> bool:
        """Send ``result`` (plus, with ``overlay_jpeg``, the annotated ``frame`` or the given
        ``overlay`` image, RGB) on ``topic`` (default: the publisher's), naming ``camera`` (default: the
        topic). Returns False when the message was dropped. Never blocks; safe from several threads."""
        if self._socket.closed:
            raise RuntimeError("publish() on a closed Publisher")
        jpeg = None
        if self.overlay_jpeg:
            if overlay is None and frame is not None:
                from streamad.display.overlay import render_overlay

                overlay = render_overlay(frame, result)
            if overlay is not None:
                jpeg = encode_jpeg(overlay, self.jpeg_quality)
        topic = self.topic if topic is None else topic
        with self._lock:
            parts = encode_message(result, source=source, seq=self._next_seq("frame", topic), topic=topic,
                                   overlay_jpeg=jpeg, camera=camera)
            if not self._send(parts):
                return False
            self.sent += 1
        return True

    def publish_event(self, event: AlarmEvent, source: str = "", *, topic: str | None = None,
                      camera: str | None = None) -> bool:
        """Send one alarm event message (topic ``topic + EVENT_SUFFIX``). Returns False when it was
        dropped. Never blocks; safe from several threads."""
        if self._socket.closed:
            raise RuntimeError("publish_event() on a closed Publisher")
        topic = self.topic if topic is None else topic
        with self._lock:
            parts = encode_event(event, source=source, seq=self._next_seq("event", topic), topic=topic, camera=camera)
            if not self._send(parts):
                return False
            self.events_sent += 1
        return True

    def publish_status(self, status: Mapping[str, Any], camera: str) -> bool:
        """Send one camera's status message (topic ``_status/<camera>``, :func:`encode_status`). Returns
        False when it was dropped. Never blocks; safe from several threads."""
        if self._socket.closed:
            raise RuntimeError("publish_status() on a closed Publisher")
        with self._lock:
            parts = encode_status(status, camera=camera, seq=self._next_seq("status", camera))
            if not self._send(parts):
                return False
            self.status_sent += 1
        return True

    def close(self) -> None:
        """Close the socket (queued messages go out for at most ``linger_s`` seconds, 0 by default: they
        are discarded). Safe to call twice."""
        with self._lock:
            if not self._socket.closed:
                self._socket.close(int(self.linger_s * 1000))
        self._stop_auth()

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx is not None:
            self._own_ctx.term()
            self._own_ctx = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CameraPublisher:
    """One camera's view of a shared :class:`Publisher` (``streamad serve``): its frames and events go
    out on the topic ``camera`` with ``camera`` in the header; ``sent``, ``events_sent`` and ``dropped``
    count this camera's messages only. It has what the live loop needs of a publisher.

        >>> with Publisher("tcp://127.0.0.1:*") as shared:
        ...     line3 = CameraPublisher(shared, "line3")
        ...     line3.topic, line3.address == shared.address, line3.sent
        ('line3', True, 0)
    """

    def __init__(self, shared: Publisher, camera: str) -> None:
        self.shared, self.camera, self.topic = shared, camera, camera
        self.overlay_jpeg = shared.overlay_jpeg
        self.address = shared.address
        self.sent = self.events_sent = self.dropped = 0

    def publish(self, result: FrameResult, frame: np.ndarray | None = None, source: str = "", *,
                overlay: np.ndarray | None = None) -> bool:
        ok = self.shared.publish(result, frame, source, overlay=overlay, topic=self.topic, camera=self.camera)
        self.sent += ok
        self.dropped += not ok
        return ok

    def publish_event(self, event: AlarmEvent, source: str = "") -> bool:
        ok = self.shared.publish_event(event, source, topic=self.topic, camera=self.camera)
        self.events_sent += ok
        self.dropped += not ok
        return ok
