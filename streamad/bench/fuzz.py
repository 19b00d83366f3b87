"""Fuzz streamad's input edges with hypothesis and count what every input did (docs/field.md, "Fuzzing").

Five targets, each fed generated and mutated inputs through the real code:

- ``decoder``: :func:`streamad.adapters.subscriber.decode_message` on random multipart frames and on
  real messages of the publisher's encoders, mutated (flipped and cut bytes, parts dropped or added,
  header fields replaced, other schemas, bad JSON, oversized heatmaps, bad shapes and dtypes);
- ``toml``: :func:`streamad.runtime.serve.config.load_config` on random text, mutated valid files and
  random values written as TOML;
- ``state``: :meth:`streamad.StreamDetector.load` on corruptions of a real saved state (bytes flipped,
  files cut or deleted, manifest fields edited, arrays rewritten with other shapes or dtypes and a
  manifest that agrees); a state that loads must then process frames and save without an error;
- ``web``: the page of ``streamad serve`` (:class:`~streamad.runtime.serve.web.WebPage`, with an access
  token) on 127.0.0.1, sent random methods, paths, queries, headers and raw bytes over a real socket;
- ``process``: :meth:`streamad.StreamDetector.process` with arrays of any shape and dtype, non-arrays
  and odd timestamps, on a warmed-up detector and on a fresh one.

Every input must end in the target's documented outcome (decoded or ``SchemaError``; a configuration or
``ConfigError``; a detector or ``StateError``; an HTTP answer of the page's statuses, 200 only with the
token; a result or ``ValueError``). Anything else is a *failure*: another exception (its traceback is
kept), no answer within the time limit (a hang), a detector whose state changed although its input
was refused, or a web request that the server's error handler saw. The command prints per target the
inputs tried, the outcomes and the failures::

    python -m streamad.bench.fuzz --inputs 2000            # every target; --targets decoder state ...

Needs hypothesis (``pip install -e ".[test]"``). ``tests/test_fuzz.py`` runs a short fuzz of each target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TARGETS", "FuzzHang", "Tally", "fuzz_target", "main", "state_fingerprint"]


class FuzzHang(BaseException):
    """An input that took longer than its target's time limit (a BaseException: no ``except Exception``
    of the code under test may swallow it)."""


class Unexpected(Exception):
    """An input that ended other than the target documents (a changed state, a wrong answer)."""


@dataclass
class Tally:
    """What one target did: inputs ``tried``, ``outcomes`` (label: count) and ``failures`` (each a short
    description of the input and its traceback), in ``seconds``."""

    target: str
    tried: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common(6))
        more = len(self.outcomes) - 6
        return (f"{self.target}: {self.tried} inputs in {self.seconds:.1f} s, {len(self.failures)} failures "
                f"(tracebacks, hangs, changed states); {top}" + (f", ... ({more} more kinds)" if more > 0 else ""))


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`FuzzHang` in the block after ``seconds`` (a timer signal: main thread only; elsewhere
    the block's time is checked when it ends)."""
    start = time.monotonic()
    if threading.current_thread() is not threading.main_thread():
        yield
        if time.monotonic() - start > seconds:
            raise FuzzHang(f"took {time.monotonic() - start:.1f} s, the limit is {seconds:g} s")
        return

    def ring(signum: int, frame: Any) -> None:
        raise FuzzHang(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _short(value: Any, limit: int = 240) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def state_fingerprint(detector: Any) -> str:
    """A digest of a ``StreamDetector``'s whole state (every part ``save`` writes): equal digests, equal
    states."""
    h = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, dict):
            h.update(b"{")
            for key in sorted(value, key=str):
                h.update(repr(key).encode())
                feed(value[key])
            h.update(b"}")
        elif isinstance(value, np.ndarray):
            h.update(f"array {value.dtype.str} {value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for item in value:
                feed(item)
            h.update(b"]")
        else:
            h.update(repr(value).encode())

    memory = None if detector.memory is None else detector.memory.state_dict()
    feed({"detector": detector.state_dict(), "channels": detector.channels.state_dict(),
          "index": None if detector.index is None else detector.index.state_dict(),
          "decisions": detector.decisions.state_dict(), "memory": memory})
    return h.hexdigest()


# -- shared strategies -------------------------------------------------------------------------------------

def _strategies() -> Any:
    from hypothesis import strategies as st

    return st


HUGE_INTS = (10 ** 400, -(10 ** 400), 2 ** 63, 2 ** 64 + 1, -(2 ** 63) - 1)


def json_values() -> Any:
    """Any JSON value, with huge integers, NaN and infinities among them."""
    st = _strategies()
    leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
              | st.sampled_from(HUGE_INTS) | st.sampled_from([0, 1, -1, 2, 3, 4, 0.5]))
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                     max_size=4), max_leaves=8)


def _flip(data: bytes, where: float, mask: int) -> bytes:
    if not data:
        return bytes([mask])
    i = min(len(data) - 1, int(where * len(data)))
    return data[:i] + bytes([data[i] ^ (mask or 1)]) + data[i + 1:]


# -- the targets ---------------------------------------------------------------------------------------------

class Target:
    """One thing to fuzz: ``open`` (make what it needs under ``workdir``), ``strategy`` (hypothesis),
    ``check`` (one input: the outcome's label, or raise), ``close``."""

    name = ""
    limit_s = 10.0  # time limit of one input

    def open(self, workdir: Path) -> None:
        self.workdir = workdir

    def strategy(self) -> Any:
        raise NotImplementedError

    def check(self, value: Any) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DecoderTarget(Target):
    """``decode_message``: every input decodes, or raises ``SchemaError``."""

    name = "decoder"
    limit_s = 5.0

    def __init__(self, decode: Callable[[list[bytes]], Any] | None = None) -> None:
        self.decode = decode

    def open(self, workdir: Path) -> None:
        super().open(workdir)
        from streamad.adapters.publisher import encode_event, encode_jpeg, encode_message, encode_status
        from streamad.adapters.subscriber import decode_message
        from streamad.results import AlarmEvent, FrameResult

        self.decode = self.decode or decode_message
        heat = np.linspace(0, 3, 24, dtype=np.float32).reshape(4, 6)
        ready = FrameResult(index=7, ready=True, score=2.5, threshold=2.0, anomalous=True, heatmap=heat,
                            patch_scores=None, drift=False, admitted=True, timestamp=1.5, p_value=0.01)
        waiting = FrameResult(index=0, ready=False, score=None, threshold=None, anomalous=False, heatmap=None,
                              patch_scores=None, drift=False, admitted=False, timestamp=0.5)
        jpeg = encode_jpeg(np.full((8, 8, 3), 90, np.uint8))
        event = AlarmEvent(2, 118, 121, 3, 11.8, 12.1, 119, 37.7, 0.001, 12.5, heat)
        status = {"time": 5.0, "state": "running", "frames": 10, "fps": 9.5, "lag_s": 0.01, "dropped": 0,
                  "bad_frames": 1, "admissions_per_s": 1.0, "nominal_patches": 40, "score": 1.0, "threshold": 2.0,
                  "anomalous": 0, "alarms": 1, "reconnects": 0, "failures": 0}
        self.valid = [encode_message(ready, source="demo", seq=3, overlay_jpeg=jpeg),
                      encode_message(ready, source="demo", seq=4, topic="line3"),
                      encode_message(waiting, source="cam", seq=0),
                      encode_event(event, source="demo", seq=1),
                      encode_status(status, camera="line3", seq=9)]
        for parts in self.valid:  # the mutations start from messages that decode
            self.decode(parts)

    def strategy(self) -> Any:
        st = _strategies()
        ops = ("flip", "truncate", "drop", "duplicate", "append", "field", "delete_field", "schema", "header_text",
               "heatmap", "oversize")

        @st.composite
        def mutated(draw: Any) -> list[bytes]:
            parts = list(draw(st.sampled_from(self.valid)))
            for _ in range(draw(st.integers(1, 3))):
                op = draw(st.sampled_from(ops))
                i = draw(st.integers(0, max(0, len(parts) - 1)))
                if op == "flip" and parts:
                    parts[i] = _flip(parts[i], draw(st.floats(0, 1)), draw(st.integers(0, 255)))
                elif op == "truncate" and parts:
                    parts[i] = parts[i][:draw(st.integers(0, len(parts[i])))]
                elif op == "drop" and parts:
                    del parts[i]
                elif op == "duplicate" and parts:
                    parts.insert(i, parts[i])
                elif op == "append":
                    parts.append(draw(st.binary(max_size=64)))
                elif op in ("field", "delete_field", "schema", "heatmap") and len(parts) > 1:
                    try:
                        header = json.loads(parts[1])
                    except (ValueError, RecursionError):  # an earlier step broke the header: leave it so
                        continue
                    if not isinstance(header, dict):
                        continue
                    if op == "field":
                        keys = st.sampled_from(sorted(header)) if header else st.nothing()  # deleted: a new key
                        key = draw(keys | st.text(max_size=8))
                        header[key] = draw(json_values())
                    elif op == "delete_field" and header:
                        header.pop(draw(st.sampled_from(sorted(header))))
                    elif op == "schema":
                        header["schema"] = draw(st.sampled_from([-1, 0, 1, 2, 3, 4, 99, "3", 3.0, 2.5, True, None,
                                                                 [3], {"v": 3}, 10 ** 400]))
                    else:
                        header["heatmap_shape"] = draw(st.lists(st.integers(-2, 70000) | st.sampled_from(HUGE_INTS),
                                                                max_size=3) | json_values())
                        header["heatmap_dtype"] = draw(st.sampled_from(["float32", "float64", "<f4", "uint8", ""]))
                    parts[1] = json.dumps(header).encode()
                elif op == "header_text" and len(parts) > 1:
                    parts[1] = draw(st.sampled_from([b"", b"{", b"null", b"[]", b"\xff\xfe", b"{}", b"3",
                                                     b"[" * 100_000, b'{"schema": 3' + b"0" * 5000 + b"}",
                                                     b'{"schema": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"])
                                    | st.binary(max_size=40))
                elif op == "oversize" and len(parts) > 2:
                    h, w = draw(st.integers(0, 2000)), draw(st.integers(0, 2000))
                    try:
                        header = json.loads(parts[1])
                        header["heatmap_shape"] = [h, w]
                        parts[1] = json.dumps(header).encode()
                    except (ValueError, TypeError, RecursionError):
                        pass
                    parts[2] = bytes(4 * h * w + draw(st.sampled_from([0, 0, 1, -1, 4])) if h * w else 0)
            return parts

        random_parts = st.lists(st.binary(max_size=64) | st.sampled_from([b"{}", b'{"schema": 3}', b"streamad"]),
                                max_size=6)
        return st.one_of(mutated(), mutated(), random_parts)

    def check(self, value: list[bytes]) -> str:
        from streamad.adapters.subscriber import SchemaError

        try:
            message = self.decode(value)
        except SchemaError as exc:
            if not str(exc):
                raise Unexpected("a SchemaError without a message") from exc
            return "SchemaError"
        heat = getattr(message, "heatmap", None)
        if heat is not None and (heat.dtype != np.float32 or heat.ndim != 2):
            raise Unexpected(f"decoded a heatmap of dtype {heat.dtype} and shape {heat.shape}")
        return f"decoded {message.type}"


VALID_TOML = """\
[serve]
device = "cpu"
batch_wait_ms = 5
workers = 0
status_every = 1.0

[publisher]
address = "tcp://127.0.0.1:5556"
hwm = 8

[web]
address = "127.0.0.1:8080"
history_s = 300

[[cameras]]
name = "line1"
source = "demo"
preset = "fast"
window = 16
admit_every = 2
false_alarm_rate = 0.01
rule = "trusted"
state = "states/line1"
save_every = 100

[cameras.overrides]
channels = { seeds = 2, min_span = 2 }
decisions = { warmup = 3 }

[[cameras]]
name = "line2"
source = "0"
learning = "sync"
event_gap = 2
max_frames = 100
"""

TOML_KEYS = ("device", "batch_wait_ms", "workers", "status_every", "torch_threads", "blas_threads", "address",
             "enabled", "bind_any", "overlay_jpeg", "hwm", "curve_server_key", "curve_clients", "token_file",
             "history_s", "name", "source", "preset", "overrides", "window", "admit_every", "admit_interval_s",
             "learning", "false_alarm_rate", "rule", "event_gap", "event_min_frames", "state", "save_every",
             "state_reset", "max_frames", "max_retries", "worker_timeout_s", "channels", "decisions", "seeds")
TOML_LITERALS = ("1", "0", "-1", "3.5", "-0.0", "1e400", "inf", "nan", "-inf", "true", "false", '""', '"demo"',
                 '"fast"', '"cpu"', '"cuda:x"', '"a b"', "'lit'", '"""multi\nline"""', "[]", "[1, 2]", '["a", 1]',
                 "{}", "{ a = 1 }", "{ seeds = 0 }", "{ window = -3 }", "1979-05-27T07:32:00Z", "07:32:00",
                 "1" + "0" * 400, "0x7fffffffffffffffff", "[" * 2000 + "]" * 2000, '"' + "x" * 3000 + '"',
                 '"\\ud800"', "1_000", "+5", "0o17", "0b101")
TOML_HEADERS = ("[serve]", "[publisher]", "[web]", "[[cameras]]", "[cameras.overrides]", "[x]", "[serve.sub]",
                "[[serve]]", "[cameras]", "[[web]]", "[ cameras . overrides . channels ]")


def _toml_value(value: Any) -> str:
    """A Python value as a TOML literal (the writer the structured inputs need; None has no TOML form and
    becomes an empty string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if value in (float("inf"),
                                                                                     float("-inf")) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return '""'


class TomlTarget(Target):
    """``load_config``: every file gives a ``ServeConfig`` or a ``ConfigError`` that names the file."""

    name = "toml"
    limit_s = 5.0

    def __init__(self, load: Callable[[str], Any] | None = None) -> None:
        self.load = load

    def open(self, workdir: Path) -> None:
        super().open(workdir)
        from streamad.runtime.serve.config import load_config

        self.load = self.load or load_config
        self.path = workdir / "serve.toml"
        self.path.write_text(VALID_TOML)
        self.load(str(self.path))  # the mutations start from a file that loads

    def strategy(self) -> Any:
        st = _strategies()
        lines = VALID_TOML.splitlines()

        @st.composite
        def mutated(draw: Any) -> str:
            out = list(lines)
            for _ in range(draw(st.integers(1, 4))):
                op = draw(st.sampled_from(("delete", "duplicate", "insert", "value", "header", "flip", "cut")))
                i = draw(st.integers(0, max(0, len(out) - 1)))
                odd = st.sampled_from(TOML_LITERALS)
                literal = st.one_of(odd, odd, json_values().map(_toml_value))
                if op == "delete" and out:
                    del out[i]
                elif op == "duplicate" and out:
                    out.insert(i, out[i])
                elif op == "insert":
                    key = draw(st.sampled_from(TOML_KEYS) | st.text("abcdefgh_.-\"' ", min_size=1, max_size=8))
                    out.insert(i, f"{key} = {draw(literal)}")
                elif op == "value" and out and "=" in out[i]:
                    out[i] = out[i].split("=", 1)[0] + "= " + draw(literal)
                elif op == "header":
                    out.insert(i, draw(st.sampled_from(TOML_HEADERS)))
                elif op == "flip" and out:
                    text = out[i]
                    j = draw(st.integers(0, len(text)))
                    out[i] = text[:j] + draw(st.characters()) + text[j + 1:]
                elif op == "cut":
                    text = "\n".join(out)
                    out = text[:draw(st.integers(0, len(text)))].split("\n")
            return "\n".join(out) + "\n"

        tables = {"serve": ("device", "batch_wait_ms", "workers", "status_every", "torch_threads", "worker_timeout_s"),
                  "publisher": ("address", "enabled", "bind_any", "hwm", "curve_server_key", "curve_clients"),
                  "web": ("address", "token_file", "history_s")}
        camera_keys = TOML_KEYS[15:32]
        odd_numbers = st.sampled_from(HUGE_INTS + (float("inf"), float("nan"), -1, 0, 1e308, 0.5, 2, 64))

        @st.composite
        def structured(draw: Any) -> str:
            out = []
            for table, keys in tables.items():
                if draw(st.booleans()):
                    chosen = draw(st.dictionaries(st.sampled_from(keys), odd_numbers | json_values(), max_size=3))
                    out.append(f"[{table}]")
                    out += [f"{k} = {_toml_value(v)}" for k, v in chosen.items()]
            for _ in range(draw(st.integers(0, 3))):
                cam = {"name": draw(st.sampled_from(["a", "b", "line-1", ""]) | st.text(max_size=6)),
                       "source": draw(st.sampled_from(["demo", "0", "x.mp4", "rtsp://h/s"]) | json_values())}
                cam.update(draw(st.dictionaries(st.sampled_from(camera_keys), odd_numbers | json_values(), max_size=4)))
                if draw(st.booleans()):  # overrides reach the StreamConfig's own checks
                    cam["overrides"] = {draw(st.sampled_from(["channels", "decisions", "index", "features", "window",
                                                              "memory", "x"])): draw(st.dictionaries(
                                                                  st.sampled_from(["seeds", "min_span", "warmup",
                                                                                   "false_alarm_rate", "nprobe", "grid",
                                                                                   "k_sigma", "enabled", "y"]),
                                                                  odd_numbers | json_values(), max_size=2)
                                                                  | odd_numbers)}
                out.append("[[cameras]]")
                out += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in cam.items()]
            return "\n".join(out) + "\n"

        return st.one_of(mutated(), mutated(), structured(), st.text(max_size=200))

    def check(self, value: str) -> str:
        from streamad.runtime.serve.config import ConfigError

        self.path.write_text(value, encoding="utf-8", errors="surrogatepass")
        try:
            self.load(str(self.path))
        except ConfigError as exc:
            if str(self.path) not in str(exc):
                raise Unexpected(f"a ConfigError that does not name the file: {exc}") from exc
            return "ConfigError"
        return "loaded"


SMALL_STREAM = {"window": 8, "seeds": 2, "min_span": 2, "warmup": 3}


def small_detector(grid: tuple[int, int] = (4, 4)) -> Any:
    """A fast ``StreamDetector`` (8-frame window, 2 seeds, stand-in extractor)."""
    from streamad.config import ChannelConfig, DecisionConfig, StreamConfig
    from streamad.stream.detector import StreamDetector
    from streamad.testing.standin import BlockMeans

    config = StreamConfig(window=SMALL_STREAM["window"],
                          channels=ChannelConfig(seeds=SMALL_STREAM["seeds"], min_span=SMALL_STREAM["min_span"]),
                          decisions=DecisionConfig(warmup=SMALL_STREAM["warmup"]))
    return StreamDetector(config, extractor=BlockMeans(grid=grid))


def demo_frames(n: int, seed: int = 0, size: int = 32) -> list[np.ndarray]:
    """``n`` textured RGB frames, every seventh with a bright square."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 160, (size, size, 3)).astype(np.int16)
    frames = []
    for i in range(n):
        img = np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)
        if i % 7 == 6:
            img[8:16, 8:16] = 255
        frames.append(img)
    return frames


class StateTarget(Target):
    """``StreamDetector.load`` on corruptions of a real saved state: ``StateError``, or a detector that
    processes frames and saves again without an error."""

    name = "state"

    def __init__(self, load: Callable[..., Any] | None = None) -> None:
        self.load = load

    def open(self, workdir: Path) -> None:
        super().open(workdir)
        from streamad.stream.detector import StreamDetector

        self.load = self.load or StreamDetector.load
        det = small_detector()
        for i, frame in enumerate(demo_frames(30)):
            det.process(frame, timestamp=float(i))
        self.original = workdir / "original"
        det.save(self.original)
        self.files = sorted(p.name for p in self.original.iterdir())
        self.arrays = sorted(json.loads((self.original / "manifest.json").read_text())["arrays"])
        self.extractor = det.extractor
        self.probe = demo_frames(10, seed=1)
        self.fingerprint = state_fingerprint(self.load(self.original, extractor=self.extractor))
        self.case = workdir / "case"

    def strategy(self) -> Any:
        st = _strategies()
        n_files, n_arrays = len(self.files), len(self.arrays)
        op = st.one_of(
            st.tuples(st.just("flip"), st.integers(0, n_files - 1), st.floats(0, 1), st.integers(1, 255)),
            st.tuples(st.just("truncate"), st.integers(0, n_files - 1), st.floats(0, 1)),
            st.tuples(st.just("delete"), st.integers(0, n_files - 1)),
            st.tuples(st.just("edit"), st.integers(0, 10 ** 6), json_values()),
            st.tuples(st.just("drop_key"), st.integers(0, 10 ** 6)),
            st.tuples(st.just("reshape"), st.integers(0, n_arrays - 1), st.integers(-3, 3), st.integers(0, 2)),
            st.tuples(st.just("retype"), st.integers(0, n_arrays - 1),
                      st.sampled_from(["<i8", "<i4", "<f4", "<f8", "|b1", "|u1", "<u2", "<f2", "<c8"])),
            st.tuples(st.just("empty"), st.integers(0, n_arrays - 1)),
        )
        return st.lists(op, min_size=1, max_size=3)

    def _paths(self, manifest: Any) -> list[tuple[Any, ...]]:
        """Every (container path, key) of the manifest's JSON tree, in a fixed order."""
        out: list[tuple[Any, ...]] = []

        def walk(node: Any, path: tuple[Any, ...]) -> None:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for k, v in items:
                out.append(path + (k,))
                walk(v, path + (k,))

        walk(manifest, ())
        return out

    def _rewrite_array(self, manifest: dict[str, Any], name: str, array: np.ndarray) -> None:
        """Write ``array`` as ``name`` with a manifest entry that agrees (size, CRC-32, shape, dtype)."""
        import io

        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        data = buf.getvalue()
        meta = manifest["arrays"][name]
        (self.case / meta["file"]).write_bytes(data)
        meta.update(bytes=len(data), crc32=zlib.crc32(data), shape=list(array.shape), dtype=array.dtype.str)

    def _corrupt(self, ops: list[tuple[Any, ...]]) -> None:
        shutil.rmtree(self.case, ignore_errors=True)
        shutil.copytree(self.original, self.case)
        mpath = self.case / "manifest.json"
        for op in ops:
            kind = op[0]
            if kind in ("flip", "truncate", "delete"):
                path = self.case / self.files[op[1]]
                if not path.exists():
                    continue
                if kind == "delete":
                    path.unlink()
                    continue
                data = path.read_bytes()
                path.write_bytes(_flip(data, op[2], op[3]) if kind == "flip" else data[:int(op[2] * len(data))])
                continue
            try:
                manifest = json.loads(mpath.read_text())
                arrays = manifest["arrays"]
            except (ValueError, OSError, KeyError, TypeError, RecursionError):
                continue  # an earlier step broke the manifest: this one has nothing to edit
            if kind in ("edit", "drop_key"):
                paths = self._paths(manifest)
                *parents, key = paths[op[1] % len(paths)]
                node = manifest
                for p in parents:
                    node = node[p]
                if kind == "edit":
                    node[key] = op[2]
                elif isinstance(node, dict):
                    del node[key]
                else:
                    node.pop(key)
            else:
                if not isinstance(arrays, dict):
                    continue
                name = self.arrays[op[1]]
                meta = arrays.get(name)
                if not isinstance(meta, dict) or not (self.case / str(meta.get("file"))).exists():
                    continue
                try:
                    array = np.load(self.case / meta["file"], allow_pickle=False)
                except Exception:  # noqa: BLE001 - an earlier flip broke it: leave it so
                    continue
                if kind == "reshape":
                    axis = min(op[3], max(0, array.ndim - 1))
                    if array.ndim == 0:
                        array = array.reshape(1)
                    n = max(0, array.shape[axis] + op[2])
                    shape = list(array.shape)
                    shape[axis] = n
                    grown = np.zeros(shape, array.dtype)
                    keep = tuple(slice(0, min(a, b)) for a, b in zip(array.shape, shape))
                    grown[keep] = array[keep]
                    array = grown
                elif kind == "retype":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        array = array.astype(np.dtype(op[2]))
                else:
                    array = array.reshape(-1)[:0]
                self._rewrite_array(manifest, name, array)
            mpath.write_text(json.dumps(manifest))

    def check(self, value: list[tuple[Any, ...]]) -> str:
        from streamad.errors import StateError

        self._corrupt(value)
        try:
            det = self.load(self.case, extractor=self.extractor)
        except StateError as exc:
            if not str(exc):
                raise Unexpected("a StateError without a message") from exc
            return "StateError"
        same = state_fingerprint(det) == self.fingerprint
        try:  # a state that loads must work: process frames (a full window's turn) and save again
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i, frame in enumerate(self.probe):
                    det.process(frame, timestamp=1000.0 + i)
            det.save(self.workdir / "resaved")
            self.load(self.workdir / "resaved", extractor=self.extractor)
        except Exception as exc:
            raise Unexpected(f"the corrupted state loaded, then failed: {type(exc).__name__}: {exc}") from exc
        return "loaded, unchanged" if same else "loaded, edited (works)"


WEB_TOKEN = "fuzz-token-0123456789abcdef"
WEB_STATUSES = {200, 400, 403, 404, 405, 414, 431, 501, 505}


class WebTarget(Target):
    """The page of ``streamad serve`` on 127.0.0.1 with a token: every request gets one of the page's
    statuses (200 only with the token, for GET or HEAD of a route), the server's error handler sees
    nothing, and the page keeps answering."""

    name = "web"
    limit_s = 15.0

    def open(self, workdir: Path) -> None:
        super().open(workdir)
        from streamad.runtime.serve.status import StatusSnapshot
        from streamad.runtime.serve.web import WebPage
        from streamad.adapters.sources import Frame
        from streamad.results import FrameResult

        heat = np.linspace(0, 3, 32 * 32, dtype=np.float32).reshape(32, 32)
        result = FrameResult(index=5, ready=True, score=2.0, threshold=2.5, anomalous=False, heatmap=heat,
                             patch_scores=None, drift=False, admitted=True, timestamp=1.0)
        latest = {"cam": (Frame(demo_frames(1)[0], 1.0, 5, "demo"), result)}
        snapshot = StatusSnapshot(camera="cam", time=10.0, state="running", frames=6, fps=5.0, lag_s=0.01, dropped=0,
                                  bad_frames=0, admissions_per_s=1.0, nominal_patches=40, score=2.0, threshold=2.5,
                                  anomalous=0, alarms=0, reconnects=0, failures=0, last_index=5,
                                  history=((9.0, 1.0, 2.5), (10.0, float("nan"), None)))
        self.page = WebPage("127.0.0.1:0", lambda: [snapshot], latest, token=WEB_TOKEN)
        self.errors: list[str] = []

        def record(request: Any, client_address: Any) -> None:  # the server's handler of handler exceptions
            self.errors.append(traceback.format_exc())

        self.page.server.handle_error = record  # type: ignore[method-assign]
        host, port = self.page.address.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.count = 0

    def close(self) -> None:
        self.page.close()

    def strategy(self) -> Any:
        st = _strategies()
        text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=40)
        methods = st.sampled_from(["GET", "GET", "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                   "OPTIONS",
                                   "TRACE", "CONNECT", "get", "", "G\x00T"])
        methods = st.one_of(methods, methods, methods, methods, text)  # mostly real methods
        routes = st.sampled_from(["/", "/index.html", "/status.json", "/frame/cam.jpg", "/frame/nope.jpg",
                                  "/frame/.jpg", "/frame/../../etc/passwd.jpg", "//status.json", "/../", "*",
                                  "http://127.0.0.1/status.json", "/frame/cam.jpg/", "/%2e%2e/%2fetc",
                                  "/frame/%00.jpg", "/" + "a" * 70_000, ""])
        word = st.text(st.characters(codec="latin-1", exclude_characters="\r\n \t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"),
                       max_size=30)  # no whitespace: one word of the request line
        path = st.one_of(routes, routes, routes, routes.flatmap(lambda r: word.map(lambda t: r + t)), word, text)
        token_query = st.sampled_from(["", "", f"token={WEB_TOKEN}", f"token={WEB_TOKEN}&token=x",
                                       f"token=x&token={WEB_TOKEN}", "token=", "token=%ff%fe", f"token={WEB_TOKEN}x",
                                       f"TOKEN={WEB_TOKEN}", "token", "&&==", "i=5"]) | word
        header_names = st.sampled_from(["Authorization", "Host", "Content-Length", "Transfer-Encoding", "Connection",
                                        "Expect", "Range", "Cookie", "X-" + "a" * 100]) | text
        header_values = st.sampled_from([f"Bearer {WEB_TOKEN}", "Bearer", "Bearer ", "bearer " + WEB_TOKEN,
                                         "Basic Zm9vOmJhcg==", "-1", "99999999999999999999", "chunked", "close",
                                         "keep-alive", "100-continue", "bytes=0-1", "x" * 70_000]) | text
        headers = st.lists(st.tuples(header_names, header_values), max_size=6) | st.just(
            [("X-Many", "1")] * 120)
        versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/2.0", "HTTP/0.9",
                                    "HTTP/1.1x",
                                    "HTTP/a.b", "", "FTP/1.0"])

        @st.composite
        def request(draw: Any) -> bytes:
            method, route, query = draw(methods), draw(path), draw(token_query)
            target = route + ("?" + query if query else "")
            lines = [f"{method} {target} {draw(versions)}".rstrip()]
            lines += [f"{k}: {v}" for k, v in draw(headers)]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        raw = st.binary(max_size=200).map(lambda b: b + b"\r\n\r\n")
        auth = f"?token={WEB_TOKEN}"
        known = st.sampled_from([f"{m} {r} HTTP/1.1\r\nHost: x\r\n{h}\r\n".encode() for m in ("GET", "HEAD", "POST")
                                 for r in ("/", f"/{auth}", f"/status.json{auth}", f"/frame/cam.jpg{auth}&i=5",
                                           f"/frame/none.jpg{auth}", f"/nothing{auth}", "/status.json")
                                 for h in ("", f"Authorization: Bearer {WEB_TOKEN}\r\n")])
        return st.one_of(request(), request(), request(), known, raw)

    def _ask(self, data: bytes, timeout: float = 10.0) -> bytes:
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # broken pipe, reset, not connected: the server answered (an error) and closed
                pass
            chunks = []
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except ConnectionResetError:
                pass
            except socket.timeout as exc:
                raise FuzzHang(f"the page sent no complete answer within {timeout:g} s") from exc
        return b"".join(chunks)

    def check(self, value: bytes) -> str:
        errors = len(self.errors)
        answer = self._ask(value)
        if len(self.errors) > errors:
            raise Unexpected(f"the server's handler raised: {self.errors[-1].strip().splitlines()[-1]}")
        self.count += 1
        if self.count % 25 == 0:
            self.alive()
        if not answer:
            return "closed without an answer"
        status = self._status(answer)
        http09 = status is None  # http.server answers a request line without a version (HTTP/0.9) with a bare body
        if http09:
            status = self._status09(answer)
        if status not in WEB_STATUSES:
            raise Unexpected(f"answered status {status}: {answer[:120]!r}")
        if status == 200:
            line = value.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            target = rest.rsplit(" ", 1)[0] if " " in rest else rest
            query = target.partition("?")[2]
            from urllib.parse import parse_qs

            given = parse_qs(query).get("token", [""])[0] == WEB_TOKEN
            bearer = f"Bearer {WEB_TOKEN}".encode() in value
            if not (given or bearer):
                raise Unexpected(f"answered 200 to a request without the token: {line[:120]!r}")
            if method not in ("GET", "HEAD"):
                raise Unexpected(f"answered 200 to {method!r}")
        return f"HTTP/0.9 {status}" if http09 else f"HTTP {status}"

    @staticmethod
    def _status09(answer: bytes) -> int | None:
        """The status of an HTTP/0.9 answer (no status line): an error page's code, the page's own 403, 404
        and 405 bodies, else 200."""
        import re

        found = re.search(rb"Error code: (\d+)", answer[:2000])
        if found:
            return int(found.group(1))
        for code in (403, 404, 405):
            if answer.startswith(f"{code}:".encode()):
                return code
        return 404 if answer == b"no frame yet\n" else 200

    @staticmethod
    def _status(answer: bytes) -> int | None:
        while True:
            head, _, rest = answer.partition(b"\r\n")
            parts = head.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                return None
            status = int(parts[1])
            if status != 100:
                return status
            answer = rest.partition(b"\r\n\r\n")[2] if not rest.startswith(b"\r\n") else rest[2:]

    def alive(self) -> None:
        """The page still serves its status to a good request."""
        answer = self._ask(f"GET /status.json?token={WEB_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        if self._status(answer) != 200:
            raise Unexpected(f"the page stopped answering: {answer[:120]!r}")


class _BadArray:
    """An object whose conversion to an array raises."""

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise RuntimeError("no array here")


class _BadFloat:
    """A timestamp whose conversion to float raises something unusual."""

    def __float__(self) -> float:
        raise ArithmeticError("no float here")


EXOTIC_DTYPES = ("datetime64[s]", "timedelta64[s]", "U3", "S3", "V4", "O", [("a", "u1"), ("b", "f4")])
NUMBER_DTYPES = ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8", "g", "?", "c8", "c16", ">u2",
                 ">f4")


class ProcessTarget(Target):
    """``StreamDetector.process``: a result, or ``ValueError`` with the detector's state unchanged."""

    name = "process"

    def __init__(self, process: Callable[..., Any] | None = None) -> None:
        self.process = process  # (detector, frame, timestamp) -> FrameResult; default: detector.process

    def open(self, workdir: Path) -> None:
        super().open(workdir)
        self.warm = small_detector()
        for i, frame in enumerate(demo_frames(16)):
            self.warm.process(frame, timestamp=float(i))
        self.clock = 100.0

    def strategy(self) -> Any:
        from hypothesis.extra import numpy as hnp

        st = _strategies()
        side = st.integers(0, 70) | st.sampled_from([7, 8, 9, 16384, 16385])
        shapes = (hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)
                  | st.tuples(side, st.integers(0, 70)) | st.tuples(st.integers(0, 70), st.integers(0, 70),
                                                                     st.integers(0, 6))
                  | st.tuples(st.just(1), st.integers(8, 40), st.integers(8, 40), st.just(3)))

        def small(shape: tuple[int, ...]) -> tuple[int, ...]:
            return shape if int(np.prod(shape, dtype=np.int64)) <= 400_000 else tuple(min(s, 40) for s in shape)

        @st.composite
        def numeric(draw: Any) -> np.ndarray:
            dtype = np.dtype(draw(st.sampled_from(NUMBER_DTYPES)))
            shape = small(draw(shapes))
            if draw(st.booleans()):  # values the frame rules accept for the dtype
                hi = 1 if dtype.kind in "fc" else 255 if dtype.kind != "i" else min(255, int(np.iinfo(dtype).max))
                lo = 0
                elements = (st.floats(lo, hi, width=16 if dtype.itemsize <= 2 else 32) if dtype.kind in "fc"
                            else st.integers(lo, hi) if dtype.kind in "ui" else st.booleans())
                array = draw(hnp.arrays(dtype, shape, elements=elements))
            else:
                array = draw(hnp.arrays(dtype, shape))
            if draw(st.integers(0, 4)) == 0 and array.ndim >= 2:
                array = array[::-1]  # not contiguous
            return array

        @st.composite
        def exotic(draw: Any) -> np.ndarray:
            dtype = np.dtype(draw(st.sampled_from(EXOTIC_DTYPES)))
            return np.zeros(small(draw(shapes)), dtype)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            matrix = np.matrix(np.zeros((16, 16), np.uint8))
        others = st.sampled_from([None, 0, 1.5, "frame", b"bytes", [], [[1, 2], [3]], {"a": 1}, (), _BadArray(),
                                  matrix, memoryview(bytes(16 * 16 * 3)),
                                  np.ma.masked_array(np.zeros((16, 16, 3), np.uint8)), float("nan"), object()])
        nested = st.lists(st.lists(st.integers(-2, 300), min_size=8, max_size=12), min_size=8, max_size=12)
        frames = st.one_of(numeric(), numeric(), numeric(), exotic(), others, nested)
        timestamps = st.one_of(st.none(), st.none(), st.floats(), st.integers(), st.sampled_from(HUGE_INTS),
                               st.text(max_size=5), st.sampled_from([np.float32(3.0), np.array([1.0, 2.0]),
                                                                     np.array(5.0), object(), _BadFloat(), True,
                                                                     "1e999", complex(1, 0)]))
        return st.tuples(frames, timestamps, st.booleans())

    def check(self, value: tuple[Any, Any, bool]) -> str:
        frame, timestamp, fresh = value
        det = small_detector() if fresh else self.warm
        before = state_fingerprint(det)
        call = self.process or (lambda d, f, t: d.process(f, t))
        if timestamp is None and not fresh:  # keep the warm detector's clock moving forward
            self.clock += 1.0
            timestamp = self.clock
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = call(det, frame, timestamp)
        except ValueError as exc:
            if state_fingerprint(det) != before:
                raise Unexpected(f"the detector's state changed although the input was refused ({exc})") from exc
            if not str(exc):
                raise Unexpected("a ValueError without a message") from exc
            return "ValueError"
        if result.heatmap is not None and result.heatmap.shape != tuple(det.frame_size):
            raise Unexpected(f"heatmap {result.heatmap.shape} for frames of size {det.frame_size}")
        return "processed" + (" (fresh detector)" if fresh else "")


TARGETS: dict[str, Callable[[], Target]] = {"decoder": DecoderTarget, "toml": TomlTarget, "state": StateTarget,
                                             "web": WebTarget, "process": ProcessTarget}


def fuzz_target(target: Target, inputs: int, seed: int = 0, workdir: str | os.PathLike[str] | None = None,
                keep: int = 5) -> Tally:
    """Feed ``inputs`` generated inputs (hypothesis, seeded: the same inputs every run) to ``target``;
    the :class:`Tally` counts outcomes and keeps the first ``keep`` failures with their tracebacks."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    tally = Tally(target.name)
    seen: set[str] = set()
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix=f"streamad-fuzz-{target.name}-")) if own else Path(workdir)
    t0 = time.monotonic()
    target.open(root)
    try:
        @hypothesis_seed(seed)
        @settings(max_examples=inputs, deadline=None, database=None, phases=[Phase.generate], derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(target.strategy())
        def one(value: Any) -> None:
            tally.tried += 1
            try:
                with time_limit(target.limit_s):
                    label = target.check(value)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - every other ending is a failure, counted and kept
                tally.outcomes["FAILURE"] += 1
                kind = "hang" if isinstance(exc, FuzzHang) else type(exc).__name__
                frames = traceback.extract_tb(exc.__traceback__)
                where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
                signature = f"{kind} at {where}"
                if signature not in seen and len(tally.failures) < keep:  # one of each kind
                    seen.add(signature)
                    tally.failures.append(f"input {_short(value)}\n{kind}: {exc}\n" + "".join(
                        traceback.format_exception(exc)[-6:]))
            else:
                tally.outcomes[label] += 1

        one()
    finally:
        target.close()
        tally.seconds = time.monotonic() - t0
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return tally


def main(argv: list[str] | None = None) -> int:
    """``python -m streamad.bench.fuzz [--inputs N] [--targets NAME ...] [--seed S] [--json FILE]``: exit
    status 1 when any input failed."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=2000, help="inputs per target (default 2000)")
    p.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.inputs < 1:
        p.error("--inputs must be >= 1")
    tallies = []
    for name in args.targets:
        tally = fuzz_target(TARGETS[name](), args.inputs, seed=args.seed)
        tallies.append(tally)
        print(tally.line(), flush=True)
        for failure in tally.failures:
            print("  " + failure.replace("\n", "\n  "), flush=True)
    total = sum(t.tried for t in tallies)
    failures = sum(t.outcomes["FAILURE"] for t in tallies)
    print(f"total: {total} inputs, {failures} failures")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"target": t.target, "inputs": t.tried, "failures": t.outcomes["FAILURE"],
                        "outcomes": dict(t.outcomes), "seconds": round(t.seconds, 1)} for t in tallies], fh, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
