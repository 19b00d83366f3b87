"""ZeroMQ publisher and subscriber over real sockets on 127.0.0.1, the wire format's validation, the
non-blocking guarantee (no subscriber, a stalled subscriber) and ``streamad listen``."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import zmq

from streamad import cli
from streamad.adapters.publisher import (
    SCHEMA_VERSION,
    PublishError,
    Publisher,
    encode_message,
    is_loopback,
)
from streamad.adapters.subscriber import SchemaError, Subscriber, decode_message
from streamad.results import FrameResult

ANY_PORT = "tcp://127.0.0.1:*"


def result(index: int, *, ready: bool = True, score: float | None = 1.0, heatmap: np.ndarray | None = None,
           threshold: float | None = 2.0, anomalous: bool = False, drift: bool = False) -> FrameResult:
    if not ready:
        score = threshold = heatmap = None
    return FrameResult(index=index, ready=ready, score=score, threshold=threshold, anomalous=anomalous,
                       heatmap=heatmap, patch_scores=None, drift=drift, admitted=index % 2 == 0,
                       timestamp=100.0 + index / 10)


def connect(pub: Publisher, sub: Subscriber, timeout: float = 5.0) -> int:
    """Publish warm-up messages (index -1) until ``sub`` receives one: ZeroMQ drops what is sent
    before a subscription reaches the publisher. Returns the number of warm-ups published."""
    end = time.monotonic() + timeout
    n = 0
    while time.monotonic() < end:
        pub.publish(result(-1, ready=False))
        n += 1
        msg = sub.receive(timeout=0.02)
        if msg is not None:
            return n
    raise AssertionError("subscriber never connected")


def test_pub_sub_pair_delivers_and_decodes_every_frame() -> None:
    rng = np.random.default_rng(0)
    sent = []
    for i in range(30):
        if i < 5:
            sent.append(result(i, ready=False))
        else:
            hm = rng.random((12 + i % 3, 16), dtype=np.float32) * 3
            sent.append(result(i, score=float(hm.max()), heatmap=hm, anomalous=hm.max() > 2.9, drift=i == 20))
    with Publisher(ANY_PORT, hwm=1000) as pub, Subscriber(pub.address) as sub:
        warmups = connect(pub, sub)
        for r in sent:
            assert pub.publish(r, source="cam")
        got = []
        while len(got) < len(sent):
            msg = sub.receive(timeout=5.0)
            assert msg is not None, f"only {len(got)} of {len(sent)} frames arrived"
            if msg.index >= 0:
                got.append(msg)
        assert pub.sent == warmups + len(sent) and pub.dropped == 0
    assert [m.seq for m in got] == list(range(warmups, warmups + 30))   # nothing lost, in order
    for m, r in zip(got, sent):
        assert (m.index, m.ready, m.anomalous, m.drift, m.admitted) == (r.index, r.ready, r.anomalous, r.drift,
                                                                          r.admitted)
        assert m.timestamp == r.timestamp and m.source == "cam" and m.topic == "streamad" and m.schema == SCHEMA_VERSION
        assert m.camera == "streamad"
        assert m.score == r.score and m.threshold == r.threshold
        assert m.overlay is None and m.overlay_image() is None
        if r.heatmap is None:
            assert m.heatmap is None
        else:
            assert m.heatmap.dtype == np.float32
            np.testing.assert_array_equal(m.heatmap, r.heatmap)


def test_overlay_jpeg_travels_with_the_message() -> None:
    frame = np.zeros((40, 50, 3), np.uint8)
    frame[:, :25] = (200, 30, 30)
    hm = np.zeros((10, 10), np.float32)
    with Publisher(ANY_PORT, overlay_jpeg=True, hwm=100) as pub, Subscriber(pub.address) as sub:
        connect(pub, sub)
        pub.publish(result(3, heatmap=hm, score=0.0), frame, "demo")
        msg = sub.receive(timeout=5.0)
        while msg is not None and msg.index < 0:
            msg = sub.receive(timeout=5.0)
    assert msg is not None and msg.index == 3 and msg.overlay is not None
    image = msg.overlay_image()
    assert image.shape == (40, 50, 3)
    assert image[20, 45].mean() < 120 and image[20, 5, 0] > 100    # the frame's halves survive in the overlay


def encode(r: FrameResult, **kw) -> list[bytes]:
    return encode_message(r, source="s", **kw)


def test_wire_format_is_exact() -> None:
    hm = np.arange(6, dtype=np.float64).reshape(2, 3)  # any float heatmap is sent as float32
    parts = encode(replace(result(9, score=5.0, heatmap=hm, anomalous=True), p_value=0.25), seq=4)
    assert len(parts) == 3 and parts[0] == b"streamad"
    header = json.loads(parts[1].decode("utf-8"))
    assert header == {"schema": SCHEMA_VERSION, "type": "frame", "seq": 4, "camera": "streamad", "index": 9, "timestamp": 100.9,
                      "source": "s", "score": 5.0, "threshold": 2.0, "p_value": 0.25, "anomalous": True,
                      "ready": True, "drift": False,
                      "admitted": False, "calibration": None, "calibration_frames": 0,
                      "heatmap_shape": [2, 3], "heatmap_dtype": "float32", "has_overlay": False}
    assert parts[2] == hm.astype("<f4").tobytes()
    warm = encode(result(1, ready=False))
    assert json.loads(warm[1])["score"] is None and warm[2] == b"" and json.loads(warm[1])["heatmap_shape"] == [0, 0]
    with_overlay = encode(result(1), overlay_jpeg=b"\xff\xd8jpeg")
    assert len(with_overlay) == 4 and json.loads(with_overlay[1])["has_overlay"] is True
    nan = encode(result(2, score=float("nan")))
    assert json.loads(nan[1])["score"] is None   # strict JSON: non-finite becomes null


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p[:1], "expected 2 to 4 message parts"),
    (lambda p: p[:2], "a frame message has 3 or 4 parts"),
    (lambda p: [p[0], b"\xff\xfe not utf-8", p[2]], "not UTF-8 JSON"),
    (lambda p: [p[0], b"[1, 2]", p[2]], "no 'schema' field"),
    (lambda p: [p[0], b"{not json", p[2]], "not UTF-8 JSON"),
    (lambda p: [p[0], p[1].replace(b'"schema":4', b'"schema":5'), p[2]], "schema 5, this streamad reads schemas 1, 2, 3 and 4"),
    (lambda p: [p[0], p[1].replace(b'"calibration":null', b'"calibration":"guess"'), p[2]], "'calibration' must be a rule"),
    (lambda p: [p[0], p[1].replace(b'"calibration_frames":0', b'"calibration_frames":-1'), p[2]], "'calibration_frames' must be an int"),
    (lambda p: [p[0], p[1].replace(b',"calibration_frames":0', b""), p[2]], "lacks the field 'calibration_frames'"),
    (lambda p: [p[0], p[1].replace(b'"camera":"streamad",', b""), p[2]], "lacks the field 'camera'"),
    (lambda p: [p[0], p[1].replace(b'"type":"frame"', b'"type":"alarm"'), p[2]], "'type' must be"),
    (lambda p: [p[0], p[1].replace(b'"type":"frame",', b""), p[2]], "lacks the field 'type'"),
    (lambda p: [p[0], p[1].replace(b'"p_value":null', b'"p_value":"low"'), p[2]], "'p_value' must be a number"),
    (lambda p: [p[0], p[1].replace(b'"index":9', b'"index":"9"'), p[2]], "field 'index' must be an int"),
    (lambda p: [p[0], p[1].replace(b'"ready":true', b'"ready":1'), p[2]], "field 'ready' must be true or false"),
    (lambda p: [p[0], p[1].replace(b'"float32"', b'"float64"'), p[2]], "heatmap_dtype"),
    (lambda p: [p[0], p[1].replace(b',"drift":false', b""), p[2]], "lacks the field 'drift'"),
    (lambda p: [p[0], p[1], p[2][:-4]], "heatmap part has 20 bytes"),
    (lambda p: [p[0], p[1], p[2], b"jpeg"], "has_overlay is False but the message has overlay"),
])
def test_decoder_rejects_bad_messages_with_a_clear_error(mutate, message) -> None:
    parts = encode(result(9, heatmap=np.zeros((2, 3), np.float32)))
    decode_message(parts)  # the unmodified message is fine
    with pytest.raises(SchemaError, match=message):
        decode_message(mutate(parts))


def p99_ms(times: list[float]) -> float:
    return float(np.percentile(np.array(times) * 1000, 99))


def test_publisher_without_subscriber_never_blocks() -> None:
    hm = np.ones((64, 64), np.float32)
    times = []
    with Publisher(ANY_PORT, hwm=2) as pub:
        for i in range(500):
            t = time.perf_counter()
            pub.publish(result(i, heatmap=hm))
            times.append(time.perf_counter() - t)
    assert p99_ms(times) < 5.0, f"p99 publish time {p99_ms(times):.2f} ms"


def test_stalled_subscriber_does_not_block_the_publisher() -> None:
    hm = np.ones((128, 128), np.float32)  # 64 KiB per message: the TCP buffers fill up quickly
    ctx = zmq.Context.instance()
    with Publisher(ANY_PORT, hwm=2) as pub:
        stalled = ctx.socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.RCVBUF, 4096)
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(pub.address)
        try:
            end = time.monotonic() + 5.0
            while not stalled.poll(10):           # connected and subscribed: it gets messages
                pub.publish(result(-1, ready=False))
                assert time.monotonic() < end, "subscriber never connected"
            times = []
            n = 2000
            for i in range(n):
                t = time.perf_counter()
                pub.publish(result(i, heatmap=hm))
                times.append(time.perf_counter() - t)
            assert p99_ms(times) < 5.0, f"p99 publish time {p99_ms(times):.2f} ms"
            assert max(times) < 0.25
            received = 0                           # now drain: most messages were dropped, not queued
            while stalled.poll(200):
                stalled.recv_multipart()
                received += 1
            assert received < n // 2, f"{received} of {n} messages were queued for a stalled subscriber"
        finally:
            stalled.close(0)


def test_binding_beyond_loopback_needs_permission() -> None:
    assert is_loopback("tcp://127.0.0.1:5556") and is_loopback("tcp://[::1]:5556") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://*:5556") and not is_loopback("tcp://eth0:5556")
    with pytest.raises(PublishError, match="--bind-any"):
        Publisher("tcp://*:5556")
    with pytest.raises(PublishError, match="--bind-any"):
        Publisher("tcp://0.0.0.0:5556")
    with pytest.raises(PublishError, match="bad publish address"):
        Publisher("127.0.0.1:5556")


def test_address_in_use_is_a_clear_error() -> None:
    with Publisher(ANY_PORT) as first:
        with pytest.raises(PublishError, match=f"cannot bind {first.address}.*another"):
            Publisher(first.address)


# -- streamad listen -----------------------------------------------------------------------------------


class Background:
    """Publish ``make(i)`` every few milliseconds on a thread until stopped."""

    def __init__(self, send) -> None:
        self.send = send
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.send(i)
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def test_listen_prints_one_line_per_frame_and_exits_after_count(capsys) -> None:
    hm = np.zeros((4, 4), np.float32)
    with Publisher(ANY_PORT, hwm=100) as pub:
        def send(i: int) -> None:
            pub.publish(result(i, ready=i % 2 == 1, score=1.5, heatmap=hm, anomalous=i % 4 == 1), source="cam")
        with Background(send):
            code = cli.main(["listen", pub.address, "--count", "6", "--timeout", "5"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 6
    for line in out:
        index = int(line.split()[1])
        if index % 2:
            flag = "yes" if index % 4 == 1 else "no"
            assert line == f"frame {index}  score 1.5000  threshold 2.0000  anomalous {flag}  drift no"
        else:
            assert line == f"frame {index}  warming up  anomalous no  drift no"


def test_listen_json_lines(capsys) -> None:
    with Publisher(ANY_PORT, hwm=100) as pub:
        with Background(lambda i: pub.publish(result(i, heatmap=np.zeros((3, 5), np.float32)), source="x")):
            assert cli.main(["listen", pub.address, "--count", "2", "--json"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[0]["source"] == "x" and lines[0]["heatmap_shape"] == [3, 5]
    assert lines[1]["seq"] == lines[0]["seq"] + 1


def test_listen_times_out_with_a_hint(capsys) -> None:
    with Publisher(ANY_PORT) as pub:
        address = pub.address  # bound but silent
        t = time.monotonic()
        code = cli.main(["listen", address, "--count", "1", "--timeout", "0.3"])
    assert code == 1 and time.monotonic() - t < 3
    assert "no message from" in capsys.readouterr().err


def test_listen_skips_a_foreign_publisher_and_goes_on_with_the_others(capsys) -> None:
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(ANY_PORT)
    address = raw.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        with Publisher(ANY_PORT) as pub, Background(lambda i: (raw.send_multipart([b"streamad", b'{"schema": 7}', b""]),
                                                          pub.publish(result(i)))):
            code = cli.main(["listen", address, pub.address, "--count", "20", "--timeout", "5"])
    finally:
        raw.close(0)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len([line for line in captured.out.splitlines() if line.startswith("frame ")]) == 20
    assert captured.err.count(f"skipping malformed messages from {address}") == 1 and "schema 7" in captured.err
    assert f"malformed message(s) from {address}" in captured.err and pub.address not in captured.err


def test_frame_messages_carry_which_calibration_judged_them_and_older_schemas_still_read() -> None:
    judged = replace(result(9, heatmap=np.zeros((2, 3), np.float32)), calibration="screened", calibration_frames=120)
    m = decode_message(encode(judged))
    assert (m.schema, m.calibration, m.calibration_frames) == (4, "screened", 120)
    warm = decode_message(encode(result(1, ready=False)))
    assert (warm.calibration, warm.calibration_frames) == (None, 0)  # no threshold yet: not "normal"
    parts = encode(judged)  # a schema-3 publisher's message: no calibration fields
    header = json.loads(parts[1])
    header["schema"] = 3
    del header["calibration"], header["calibration_frames"]
    old = decode_message([parts[0], json.dumps(header).encode(), parts[2]])
    assert (old.schema, old.calibration, old.calibration_frames, old.score) == (3, None, 0, m.score)
