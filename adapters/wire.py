"""The wire format's one definition (schema 4; docs/live_io.md): versions, topics and every header field.

The publisher (:mod:`streamad.adapters.publisher`) writes exactly the fields listed here for the
current schema and the subscriber (:mod:`streamad.adapters.subscriber`) checks them against the same
tables, for every schema it reads; ``tests/test_wire_format.py`` holds the publisher to them.

    >>> sorted(set(FRAME_FIELDS[SCHEMA_VERSION]) - set(FRAME_FIELDS[3]))   # what schema 4 added
    ['calibration', 'calibration_frames']
    >>> check_fields({"seq": "7"}, FRAME_FIELDS[SCHEMA_VERSION])
    Traceback (most recent call last):
    ...
    streamad.adapters.wire.SchemaError: message header field 'seq' must be an int, got '7'
"""

from __future__ import annotations

from typing import Any, Callable

from streamad.config import finite_number

SCHEMA_VERSION = 4
READABLE_SCHEMAS = (1, 2, 3, SCHEMA_VERSION)
EVENT_SUFFIX = "/event"  # an event message's topic is the publisher's topic plus this
STATUS_PREFIX = "_status"  # a status message's topic is this, "/" and the camera's name
DEFAULT_ADDRESS = "tcp://127.0.0.1:5556"
DEFAULT_TOPIC = "streamad"
HEATMAP_DTYPE = "float32"
CALIBRATIONS = ("trusted", "screened", "quantile")  # the values of a frame header's "calibration"
# The status message's fields after schema, type, seq and camera (in this order).
STATUS_FIELDS = ("time", "state", "frames", "fps", "lag_s", "dropped", "bad_frames", "admissions_per_s",
                 "nominal_patches", "score", "threshold", "anomalous", "alarms", "reconnects", "failures")

Check = tuple[str, Callable[[Any], bool]]  # (what the field must be, in words; the test)


class SchemaError(ValueError):
    """A message that is not a streamad frame or event message (wrong version, garbage, inconsistent)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_is_number = finite_number  # a JSON integer of 400 digits is no number a header can carry


_OPTIONAL_NUMBER = ("a number or null", lambda v: v is None or _is_number(v))
_SHAPE = ("[h, w] with ints >= 0",
          lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v))

_FIELDS: dict[str, tuple[str, Any]] = {
    "seq": ("an int", _is_int),
    "index": ("an int", _is_int),
    "timestamp": ("a number or null", lambda v: v is None or _is_number(v)),
    "source": ("a string", lambda v: isinstance(v, str)),
    "score": ("a number or null", lambda v: v is None or _is_number(v)),
    "threshold": ("a number or null", lambda v: v is None or _is_number(v)),
    "anomalous": ("true or false", lambda v: isinstance(v, bool)),
    "ready": ("true or false", lambda v: isinstance(v, bool)),
    "drift": ("true or false", lambda v: isinstance(v, bool)),
    "admitted": ("true or false", lambda v: isinstance(v, bool)),
    "heatmap_shape": ("[h, w] with ints >= 0",
                      lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v)),
    "heatmap_dtype": (f'"{HEATMAP_DTYPE}"', lambda v: v == HEATMAP_DTYPE),
    "has_overlay": ("true or false", lambda v: isinstance(v, bool)),
}
_FRAME_FIELDS_2 = {**_FIELDS, "p_value": _OPTIONAL_NUMBER}
_CAMERA = ("a string", lambda v: isinstance(v, str))
_FRAME_FIELDS_3 = {**_FRAME_FIELDS_2, "camera": _CAMERA}
_FRAME_FIELDS_4 = {**_FRAME_FIELDS_3,
                   "calibration": ("a rule name or null", lambda v: v is None or v in CALIBRATIONS),
                   "calibration_frames": ("an int >= 0", lambda v: _is_int(v) and v >= 0)}
_OPTIONAL_INT = ("an int or null", lambda v: v is None or _is_int(v))
_STATUS_FIELDS: dict[str, tuple[str, Any]] = {
    "seq": ("an int", _is_int),
    "camera": _CAMERA,
    "state": ("a string", lambda v: isinstance(v, str)),
    **{k: ("an int", _is_int) for k in ("frames", "dropped", "bad_frames", "anomalous", "alarms", "reconnects",
                                        "failures")},
    **{k: _OPTIONAL_NUMBER for k in ("time", "fps", "lag_s", "admissions_per_s", "score", "threshold")},
    "nominal_patches": _OPTIONAL_INT,
}
_EVENT_FIELDS: dict[str, tuple[str, Any]] = {
    "seq": ("an int", _is_int),
    "source": ("a string", lambda v: isinstance(v, str)),
    **{k: ("an int", _is_int) for k in ("event", "start", "end", "frames", "peak_index")},
    **{k: _OPTIONAL_NUMBER for k in ("start_time", "end_time", "peak_score", "peak_p_value", "peak_threshold")},
    "heatmap_shape": _SHAPE,
    "heatmap_dtype": (f'"{HEATMAP_DTYPE}"', lambda v: v == HEATMAP_DTYPE),
}


# Every message type's header fields by schema (besides "schema" and "type"; schema 1 had no "type").
FRAME_FIELDS: dict[int, dict[str, Check]] = {1: _FIELDS, 2: _FRAME_FIELDS_2, 3: _FRAME_FIELDS_3, 4: _FRAME_FIELDS_4}
EVENT_FIELDS: dict[int, dict[str, Check]] = {2: _EVENT_FIELDS, 3: {**_EVENT_FIELDS, "camera": _CAMERA},
                                             4: {**_EVENT_FIELDS, "camera": _CAMERA}}
STATUS_HEADER_FIELDS: dict[int, dict[str, Check]] = {3: _STATUS_FIELDS, 4: _STATUS_FIELDS}


def check_fields(header: dict[str, Any], fields: dict[str, Check]) -> None:
    for name, (need, ok) in fields.items():
        if name not in header:
            raise SchemaError(f"message header lacks the field {name!r}")
        if not ok(header[name]):
            raise SchemaError(f"message header field {name!r} must be {need}, got {header[name]!r}")
