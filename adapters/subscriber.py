"""Receive and decode the messages of :mod:`streamad.adapters.publisher` (wire format schema 4: frame,
event and status messages; the schema-3, -2 and -1 messages of an older publisher are read too).

    >>> from streamad.results import FrameResult
    >>> from streamad.adapters.publisher import encode_message
    >>> import numpy as np
    >>> r = FrameResult(index=7, ready=True, score=2.5, threshold=2.0, anomalous=True,
    ...                 heatmap=np.ones((4, 6), np.float32), patch_scores=None, drift=False,
    ...                 admitted=False, timestamp=1.5)
    >>> m = decode_message(encode_message(r, source="demo"))
    >>> m.index, m.score, m.anomalous, m.heatmap.shape, m.overlay
    (7, 2.5, True, (4, 6), None)
    >>> try:
    ...     decode_message([b"streamad", b'{"schema": 5}', b""])
    ... except SchemaError as exc:
    ...     print(exc)
    message has schema 5, this streamad reads schemas 1, 2, 3 and 4: run the same streamad version on both ends

A :class:`Subscriber` may connect to several publishers (one socket each, so it knows which one sent
what): ``receive_from`` gives the address with the message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from streamad.adapters.wire import (
    DEFAULT_ADDRESS,
    DEFAULT_TOPIC,
    EVENT_FIELDS,
    EVENT_SUFFIX,
    FRAME_FIELDS,
    READABLE_SCHEMAS,
    STATUS_FIELDS,
    STATUS_HEADER_FIELDS,
    SchemaError,
    check_fields,
)
MAX_HEADER_BYTES = 65536  # a header is a few hundred bytes; a larger one is not a streamad message


@dataclass(frozen=True, eq=False)
class FrameMessage:
    """One decoded frame message: the header fields, the heatmap (float32 (h, w), or None when the
    publisher had none: not ready) and the JPEG overlay bytes (or None)."""

    topic: str
    schema: int
    seq: int
    index: int
    timestamp: float | None
    source: str
    score: float | None
    threshold: float | None
    anomalous: bool
    ready: bool
    drift: bool
    admitted: bool
    heatmap: np.ndarray | None
    overlay: bytes | None
    p_value: float | None = None  # schema 2; None from a schema-1 publisher
    camera: str | None = None  # schema 3; None from an older publisher
    calibration: str | None = None  # schema 4: the rule that gave the threshold; None without one (or older)
    calibration_frames: int = 0  # schema 4: the scores that calibration holds

    type = "frame"

    def overlay_image(self) -> np.ndarray | None:
        """The overlay decoded to RGB ``uint8`` (H, W, 3), or None when the message has none."""
        if self.overlay is None:
            return None
        import cv2

        image = cv2.imdecode(np.frombuffer(self.overlay, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SchemaError("the overlay part is not a decodable JPEG")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def header(self) -> dict[str, Any]:
        """The header fields (no heatmap or overlay), plus ``type`` and ``heatmap_shape`` (None without a
        heatmap)."""
        fields = {"type": self.type, **{k: v for k, v in self.__dict__.items() if k not in ("heatmap", "overlay")}}
        fields["heatmap_shape"] = None if self.heatmap is None else list(self.heatmap.shape)
        return fields


@dataclass(frozen=True, eq=False)
class EventMessage:
    """One decoded alarm event message (schema 2 and later): the header fields and the peak frame's heatmap
    (float32 (h, w), or None)."""

    topic: str
    schema: int
    seq: int
    source: str
    event: int
    start: int
    end: int
    frames: int
    start_time: float | None
    end_time: float | None
    peak_index: int
    peak_score: float | None
    peak_p_value: float | None
    peak_threshold: float | None
    heatmap: np.ndarray | None
    camera: str | None = None  # schema 3; None from an older publisher

    type = "event"

    def header(self) -> dict[str, Any]:
        """The header fields (no heatmap), plus ``type`` and ``heatmap_shape`` (None without a heatmap)."""
        fields = {"type": self.type, **{k: v for k, v in self.__dict__.items() if k != "heatmap"}}
        fields["heatmap_shape"] = None if self.heatmap is None else list(self.heatmap.shape)
        return fields


@dataclass(frozen=True)
class StatusMessage:
    """One camera's status (schema 3, ``streamad serve``, once a second): ``fields`` holds the header's
    status fields (``fps``, ``lag_s``, ``dropped``, ``admissions_per_s``, ``nominal_patches``,
    ``threshold``, ``alarms``, ...; see :data:`~streamad.adapters.publisher.STATUS_FIELDS`)."""

    topic: str
    schema: int
    seq: int
    camera: str
    fields: dict[str, Any]

    type = "status"
    heatmap = None

    def __getattr__(self, name: str) -> Any:
        if name in STATUS_FIELDS:
            return self.fields.get(name)
        raise AttributeError(name)

    def header(self) -> dict[str, Any]:
        return {"type": self.type, "topic": self.topic, "schema": self.schema, "seq": self.seq,
                "camera": self.camera, **self.fields}


Message = FrameMessage | EventMessage | StatusMessage


def event_topic(topic: str = DEFAULT_TOPIC) -> str:
    """The topic prefix of a publisher's event messages only (``topic`` is the publisher's topic).

    >>> event_topic(), event_topic("line3")
    ('streamad/event', 'line3/event')
    """
    return topic + EVENT_SUFFIX


class SeqGaps:
    """Messages lost between consecutive ones (dropped by a full queue, or sent before a late join).

    >>> gaps = SeqGaps()
    >>> [gaps.see(seq) for seq in (4, 5, 8, 9)], gaps.missed
    ([0, 0, 2, 0], 2)
    """

    def __init__(self) -> None:
        self.last: int | None = None
        self.missed = 0

    def see(self, seq: int) -> int:
        """Record message ``seq``; how many were missed just before it."""
        gap = 0 if self.last is None or seq <= self.last + 1 else seq - self.last - 1
        self.missed += gap
        self.last = seq
        return gap


def _heatmap(header: dict[str, Any], payload: bytes) -> np.ndarray | None:
    h, w = header["heatmap_shape"]
    if len(payload) != h * w * 4:
        raise SchemaError(f"heatmap part has {len(payload)} bytes, but heatmap_shape {[h, w]} of float32 "
                          f"needs {h * w * 4}")
    return np.frombuffer(payload, dtype="<f4").reshape(h, w).astype(np.float32) if h * w else None


def _decode_event(topic: str, header: dict[str, Any], parts: Sequence[bytes], schema: int) -> EventMessage:
    if len(parts) != 3:
        raise SchemaError(f"an event message has 3 parts (topic, header, heatmap), got {len(parts)}")
    fields = EVENT_FIELDS[schema]
    check_fields(header, fields)
    return EventMessage(topic=topic, schema=schema, heatmap=_heatmap(header, bytes(parts[2])),
                        **{k: header[k] for k in fields if not k.startswith("heatmap")})


def _decode_status(topic: str, header: dict[str, Any], parts: Sequence[bytes], schema: int) -> StatusMessage:
    if len(parts) != 2:
        raise SchemaError(f"a status message has 2 parts (topic, header), got {len(parts)}")
    check_fields(header, STATUS_HEADER_FIELDS[schema])
    return StatusMessage(topic=topic, schema=schema, seq=header["seq"], camera=header["camera"],
                         fields={k: header[k] for k in STATUS_FIELDS})


def decode_message(parts: Sequence[bytes]) -> FrameMessage | EventMessage | StatusMessage:
    """Decode one multipart message (a frame, an event or a status: see ``.type``); raises
    :class:`SchemaError` saying what is wrong with it."""
    if len(parts) not in (2, 3, 4):
        raise SchemaError(f"expected 2 to 4 message parts (topic, header[, heatmap[, overlay]]), got {len(parts)}: "
                          "is the address a streamad publisher?")
    topic_b, header_b = bytes(parts[0]), bytes(parts[1])
    if len(header_b) > MAX_HEADER_BYTES:
        raise SchemaError(f"message header has {len(header_b)} bytes, more than {MAX_HEADER_BYTES} (a streamad "
                          "header has a few hundred): is the address a streamad publisher?")
    try:
        header = json.loads(header_b.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: bad JSON, or an integer of more digits than Python converts; RecursionError: nesting
        # deeper than the parser's stack
        raise SchemaError(f"message header is not UTF-8 JSON that streamad can read ({exc.__class__.__name__}: "
                          f"{str(exc)[:200]}): is the address a streamad publisher?") from None
    if not isinstance(header, dict) or "schema" not in header:
        raise SchemaError("message header has no 'schema' field: is the address a streamad publisher?")
    schema = header["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or schema not in READABLE_SCHEMAS:
        known = ", ".join(map(str, READABLE_SCHEMAS[:-1])) + f" and {READABLE_SCHEMAS[-1]}"
        raise SchemaError(f"message has schema {schema!r}, this streamad reads schemas {known}: run the same "
                          "streamad version on both ends")
    topic = topic_b.decode("utf-8", errors="replace")
    kind = header.get("type", "frame") if schema >= 2 else "frame"
    kinds = ("frame", "event", "status") if schema >= 3 else ("frame", "event")
    if schema >= 2 and kind not in kinds:
        raise SchemaError(f"message header field 'type' must be one of {', '.join(kinds)}, got {kind!r}")
    if kind == "status":
        return _decode_status(topic, header, parts, schema)
    if kind == "event":
        return _decode_event(topic, header, parts, schema)
    if len(parts) < 3:
        raise SchemaError(f"a frame message has 3 or 4 parts (topic, header, heatmap[, overlay]), got {len(parts)}")
    if schema >= 2 and "type" not in header:
        raise SchemaError("message header lacks the field 'type'")
    check_fields(header, FRAME_FIELDS[schema])
    heatmap = _heatmap(header, bytes(parts[2]))
    overlay = bytes(parts[3]) if len(parts) == 4 else None
    if header["has_overlay"] != bool(overlay):
        raise SchemaError(f"has_overlay is {header['has_overlay']} but the message "
                          f"{'has' if overlay else 'has no'} overlay part")
    return FrameMessage(
        topic=topic, schema=schema, seq=header["seq"],
        index=header["index"], timestamp=header["timestamp"], source=header["source"],
        score=None if header["score"] is None else float(header["score"]),
        threshold=None if header["threshold"] is None else float(header["threshold"]),
        anomalous=header["anomalous"], ready=header["ready"], drift=header["drift"], admitted=header["admitted"],
        heatmap=heatmap, overlay=overlay, p_value=None if header.get("p_value") is None else float(header["p_value"]),
        camera=header.get("camera"), calibration=header.get("calibration"),
        calibration_frames=int(header.get("calibration_frames", 0)))


class Subscriber:
    """ZeroMQ SUB sockets connected to one or several streamad publishers (one socket per address, so
    every message is known by where it came from).

    ``topic`` filters by prefix (``""``: everything; a list: any of them). ``receive(timeout)`` returns
    the next decoded message or None when none arrived in ``timeout`` seconds; ``receive_from`` also
    gives the address it came from; iteration yields messages forever. Note ZeroMQ's "slow joiner":
    messages published before the connection is up are not received.

    For a CURVE publisher pass ``curve_server_public_key`` (the server's ``.key`` file, or its 40
    Z85 characters) and ``curve_client_key_file`` (this client's ``.key_secret``, whose public key
    the publisher must list). A refused or mismatched handshake delivers nothing; its reason is in
    ``handshake_error`` (e.g. "the publisher refused this subscriber's key ...").
    """

    def __init__(self, address: str | Sequence[str] = DEFAULT_ADDRESS, *, topic: str | Sequence[str] = "",
                 rcvhwm: int = 100, context: zmq.Context | None = None,
                 curve_server_public_key: str | os.PathLike[str] | bytes | None = None,
                 curve_client_key_file: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(rcvhwm, int) or rcvhwm < 1:
            raise ValueError(f"Subscriber.rcvhwm must be an int >= 1, got {rcvhwm!r}")
        if (curve_server_public_key is None) != (curve_client_key_file is None):
            raise ValueError("CURVE needs both the server's public key (--curve-server-public) and this client's "
                             "secret key file (--curve-client-key); 'streamad keys DIR' writes both")
        keys = None
        if curve_server_public_key is not None:
            from streamad.adapters.security import load_key_pair, load_public_key

            keys = (load_public_key(curve_server_public_key), *load_key_pair(curve_client_key_file))  # type: ignore
        self.addresses = [address] if isinstance(address, str) else list(address)
        if not self.addresses:
            raise ValueError("Subscriber needs at least one address")
        self.address = self.addresses[0]
        topics = [topic] if isinstance(topic, str) else list(topic) or [""]
        self.curve = keys is not None
        self.handshake_error: str | None = None
        self._ctx = context or zmq.Context.instance()
        self._sockets: dict[zmq.Socket, str] = {}
        self._monitors: dict[zmq.Socket, str] = {}
        self._poller = zmq.Poller()
        for addr in self.addresses:
            sock = self._ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 50)  # find a publisher that starts later soon
            for t in topics:
                sock.setsockopt(zmq.SUBSCRIBE, t.encode("utf-8"))
            if keys is not None:
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys
            monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self._sockets[sock], self._monitors[monitor] = addr, addr
            try:
                sock.connect(addr)
            except zmq.ZMQError as exc:
                self.close()
                raise ValueError(f"cannot connect to {addr!r}: {exc.strerror} "
                                 f"(expected an address such as {DEFAULT_ADDRESS})") from exc
            self._poller.register(sock, zmq.POLLIN)
            self._poller.register(monitor, zmq.POLLIN)
        self._ready: list[zmq.Socket] = []  # sockets with a message waiting, served in turn

    def _read_monitor(self, monitor: zmq.Socket) -> None:
        from zmq.utils.monitor import recv_monitor_message

        from streamad.adapters.security import describe_handshake_event

        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshake_error = None
            else:
                self.handshake_error = describe_handshake_event(event["event"], event["value"])

    def receive_raw(self, timeout: float | None = None) -> tuple[str, list[bytes]] | None:
        """(address, raw parts) of the next message, or None after ``timeout`` seconds without one.
        Publishers with messages waiting are served in turn, so a busy one cannot starve the others."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            while self._ready:
                sock = self._ready.pop(0)
                if sock.poll(0, zmq.POLLIN):
                    return self._sockets[sock], sock.recv_multipart()
            ms = None if deadline is None else max(0, int(round((deadline - time.monotonic()) * 1000)))
            ready = dict(self._poller.poll(ms))
            for sock in ready:
                if sock in self._monitors:
                    self._read_monitor(sock)
                elif sock in self._sockets:
                    self._ready.append(sock)
            if not self._ready and (not ready or (deadline is not None and time.monotonic() >= deadline)):
                return None

    def receive_parts(self, timeout: float | None = None) -> list[bytes] | None:
        """The raw parts of the next message, or None after ``timeout`` seconds without one."""
        got = self.receive_raw(timeout)
        return None if got is None else got[1]

    def receive_from(self, timeout: float | None = None) -> tuple[str, Message] | None:
        """(address, decoded message), or None after ``timeout`` seconds; raises :class:`SchemaError`
        (with ``address`` set on it) on a malformed message."""
        got = self.receive_raw(timeout)
        if got is None:
            return None
        address, parts = got
        try:
            return address, decode_message(parts)
        except SchemaError as exc:
            exc.address = address  # type: ignore[attr-defined]
            raise

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, decoded (raises :class:`SchemaError` on a malformed one); ``.type`` says
        ``"frame"``, ``"event"`` or ``"status"``."""
        got = self.receive_from(timeout)
        return None if got is None else got[1]

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.receive(None)
            if msg is not None:
                yield msg

    def close(self) -> None:
        for sock in self._sockets:
            if not sock.closed:
                sock.disable_monitor()
                sock.close(0)
        for monitor in self._monitors:
            if not monitor.closed:
                monitor.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
