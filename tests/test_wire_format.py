"""The wire format has one definition (``streamad.adapters.wire``): the publisher writes exactly the fields
its tables list for the current schema, for every message type, and the subscriber reads them back."""

from __future__ import annotations

import json

import numpy as np

from streamad.adapters import wire
from streamad.adapters.publisher import encode_event, encode_message, encode_status
from streamad.adapters.subscriber import decode_message
from streamad.results import AlarmEvent, FrameResult


def _result(**changes: object) -> FrameResult:
    fields = dict(index=3, ready=True, score=2.5, threshold=2.0, anomalous=True, heatmap=np.zeros((4, 5), np.float32),
                  patch_scores=None, drift=False, admitted=True, timestamp=1.0, p_value=0.01)
    return FrameResult(**{**fields, **changes})  # type: ignore[arg-type]


def _header(parts: list[bytes]) -> dict:
    return json.loads(parts[1].decode("utf-8"))


def _written(parts: list[bytes]) -> set[str]:
    return set(_header(parts)) - {"schema", "type"}


def test_the_publisher_writes_exactly_the_tables_fields_for_every_message_type() -> None:
    result = _result(calibration="screened", calibration_frames=120)
    frame = encode_message(result, source="demo", seq=7)
    event = encode_event(AlarmEvent(number=1, start=3, end=4, frames=2, start_time=0.0, end_time=1.0, peak_index=3,
                                    peak_score=2.5, peak_p_value=0.01, peak_threshold=2.0,
                                    peak_heatmap=np.zeros((4, 5), np.float32)), source="demo")
    status = encode_status({"frames": 3, "state": "running", "dropped": 0, "bad_frames": 0, "anomalous": 1,
                            "alarms": 1, "reconnects": 0, "failures": 0}, camera="cam")
    v = wire.SCHEMA_VERSION
    assert _written(frame) == set(wire.FRAME_FIELDS[v])
    assert _written(event) == set(wire.EVENT_FIELDS[v])
    assert _written(status) == set(wire.STATUS_HEADER_FIELDS[v]) == {"seq", "camera", *wire.STATUS_FIELDS}
    assert all(_header(p)["schema"] == v for p in (frame, event, status))
    back = decode_message(frame)
    assert (back.calibration, back.calibration_frames, back.seq) == ("screened", 120, 7)


def test_a_field_missing_from_a_header_is_named() -> None:
    parts = encode_message(_result(), seq=1)
    header = _header(parts)
    del header["calibration_frames"]
    parts[1] = json.dumps(header).encode()
    try:
        decode_message(parts)
    except wire.SchemaError as exc:
        assert "calibration_frames" in str(exc)
    else:
        raise AssertionError("a header without calibration_frames was accepted")


def test_every_schema_read_has_its_tables() -> None:
    assert set(wire.FRAME_FIELDS) == set(wire.READABLE_SCHEMAS)
    assert set(wire.EVENT_FIELDS) == {s for s in wire.READABLE_SCHEMAS if s >= 2}
    assert set(wire.STATUS_HEADER_FIELDS) == {s for s in wire.READABLE_SCHEMAS if s >= 3}
