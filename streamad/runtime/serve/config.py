"""The ``streamad serve`` configuration file (TOML, read with the standard library's ``tomllib``).

::

    [serve]                       # optional: process-wide settings
    device = "cpu"                # the backbone's device for every camera (cpu, cuda, cuda:N, auto)
    batch_wait_ms = 5             # a batch waits at most this long for more cameras' frames
                                  # (default: 5 with a GPU backbone; on the CPU, where a batch saves nothing,
                                  # none: each camera's frames on its own thread)
    workers = 0                   # detection in N worker processes (0: on threads of this process)
    worker_timeout_s = 30         # a worker that answers no request for this long is killed and restarted

    [publisher]                   # optional: one ZeroMQ publisher for every camera (topic = camera name)
    address = "tcp://127.0.0.1:5556"

    [web]                         # optional: the live page (loopback unless told otherwise)
    address = "127.0.0.1:8080"

    [[cameras]]
    name = "line1"
    source = "demo"               # a camera index (0), a video file, a folder, a URL or "demo"
    preset = "fast"
    window = 64

Relative paths (sources, state folders, key files) are relative to the file's folder. Every unknown
key and bad value is refused with the file, the key and its line::

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "serve.toml")
    ...     _ = open(path, "w").write('[[cameras]]\\nname = "a"\\nsource = "demo"\\nwindoww = 5\\n')
    ...     try:
    ...         load_config(path)
    ...     except ConfigError as exc:
    ...         print(str(exc).replace(path, "serve.toml")[:96] + " ...)")
    serve.toml: cameras[0] (line 4): unknown key 'windoww' (known: name, source, preset, overrides, ...)
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamad.config import DECISION_RULES, EventConfig, StreamConfig, finite_number
from streamad.errors import UserError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LEARNING = ("background", "sync")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
DEFAULT_HTTP = "127.0.0.1:8080"


class ConfigError(UserError):
    """A configuration file that cannot be used; the message names the file, the key and the line."""


def _need(cls: str, name: str, ok: bool, value: Any, need: str) -> None:
    if not ok:
        raise ValueError(f"{cls}.{name} must be {need}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_is_num = finite_number  # TOML allows integers of any length; 10 ** 400 does not fit a float


def _opt(check: Any) -> Any:
    return lambda v: v is None or check(v)


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its ``name`` (the ZeroMQ topic, the page's tile; letters, digits, ``_ . -``),
    ``source`` (as ``streamad watch SOURCE``), detector ``preset`` and ``overrides`` (nested
    ``StreamConfig`` fields), ``window``, admission policy (``admit_every``, ``admit_interval_s``),
    ``learning`` (background or sync), the long-term ``memory`` (patches beyond the window; 0 turns it
    off), alarms (``false_alarm_rate``, ``rule``, ``event_gap``, ``event_min_frames``), an optional ``state`` folder (saved every ``save_every`` frames, 0: on exit
    only; ``state_reset`` moves an unusable one aside), ``max_frames`` and ``max_retries``."""

    name: str
    source: str
    preset: str = "default"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    window: int | None = None
    admit_every: int | None = None
    admit_interval_s: float | None = None
    learning: str = "background"
    memory: int | None = None
    false_alarm_rate: float | None = None
    rule: str | None = None
    event_gap: int | None = None
    event_min_frames: int | None = None
    state: str | None = None
    save_every: int = 500
    state_reset: bool = False
    max_frames: int | None = None
    max_retries: int | None = None

    def __post_init__(self) -> None:
        c = "CameraConfig"
        _need(c, "name", isinstance(self.name, str) and bool(NAME_PATTERN.match(self.name)), self.name,
              "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        _need(c, "source", isinstance(self.source, str) and self.source.strip() != "", self.source,
              "a camera index, a file, a folder, a URL or 'demo'")
        _need(c, "preset", isinstance(self.preset, str), self.preset, "a preset name")
        _need(c, "overrides", isinstance(self.overrides, Mapping), self.overrides, "a table of StreamConfig fields")
        _need(c, "window", _opt(_is_int)(self.window), self.window, "an int")
        _need(c, "admit_every", _opt(_is_int)(self.admit_every), self.admit_every, "an int")
        _need(c, "admit_interval_s", _opt(_is_num)(self.admit_interval_s), self.admit_interval_s, "a number")
        _need(c, "learning", self.learning in LEARNING, self.learning, f"one of {', '.join(LEARNING)}")
        _need(c, "memory", _opt(lambda v: _is_int(v) and v >= 0)(self.memory), self.memory,
              "an int >= 0 (patches; 0: no long-term memory)")
        _need(c, "false_alarm_rate", _opt(_is_num)(self.false_alarm_rate), self.false_alarm_rate, "a number")
        _need(c, "rule", _opt(lambda v: v in DECISION_RULES)(self.rule), self.rule,
              "one of " + ", ".join(DECISION_RULES))
        _need(c, "event_gap", _opt(_is_int)(self.event_gap), self.event_gap, "an int")
        _need(c, "event_min_frames", _opt(_is_int)(self.event_min_frames), self.event_min_frames, "an int")
        _need(c, "state", _opt(lambda v: isinstance(v, str) and v != "")(self.state), self.state, "a folder")
        _need(c, "save_every", _is_int(self.save_every) and self.save_every >= 0, self.save_every,
              "an int >= 0 (0: only on exit)")
        _need(c, "state_reset", isinstance(self.state_reset, bool), self.state_reset, "true or false")
        _need(c, "max_frames", _opt(lambda v: _is_int(v) and v >= 1)(self.max_frames), self.max_frames, "an int >= 1")
        _need(c, "max_retries", _opt(lambda v: _is_int(v) and v >= 0)(self.max_retries), self.max_retries,
              "an int >= 0")

    def stream_config(self, device: str | None = None, threads: Mapping[str, int] | None = None) -> StreamConfig:
        """The ``StreamConfig`` of this camera (preset, then its settings, then ``overrides``); a bad value
        raises ``ValueError`` naming the field."""
        from streamad.stream.settings import stream_config_of

        own = {key: getattr(self, key) for key in ("window", "admit_every", "admit_interval_s", "learning", "rule",
                                                   "false_alarm_rate", "memory")}
        own.update(device=device, torch_threads=(threads or {}).get("torch"), blas_threads=(threads or {}).get("blas"))
        return stream_config_of(own, preset=self.preset, overrides=_tuples(self.overrides))

    def event_config(self) -> EventConfig:
        given = {k: v for k, v in (("max_gap", self.event_gap), ("min_frames", self.event_min_frames)) if v is not None}
        return EventConfig(**given)


def _tuples(value: Any) -> Any:
    """TOML arrays as tuples (the configs' pairs such as ``grid``), tables as dicts, recursively."""
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


@dataclass(frozen=True)
class ServeConfig:
    """A whole ``streamad serve``: its ``cameras`` and the process-wide settings.

    ``device`` is the backbone's for every camera; a batch waits at most ``batch_wait_ms`` for more
    frames (None: :func:`auto_batch_wait_ms` of the backbones' devices: no batches on the CPU); ``workers`` worker processes
    hold the cameras' detectors (0: threads of the serve process, :mod:`streamad.runtime.serve.workers`),
    and one that answers no request for ``worker_timeout_s``
    seconds is killed and restarted; ``status_every`` seconds between status messages (0:
    none); ``torch_threads`` / ``blas_threads`` (0: automatic). ``publish`` is the ZeroMQ address
    (None: no publisher) with ``bind_any``, ``overlay_jpeg``, ``hwm`` and CURVE keys; ``http`` the
    page's address (None: no page), ``http_token_file`` the access token (required off loopback),
    ``history_s`` the page's score chart span.
    """

    cameras: tuple[CameraConfig, ...]
    device: str | None = None
    batch_wait_ms: float | None = None
    workers: int = 0
    worker_timeout_s: float = 30.0
    status_every: float = 1.0
    torch_threads: int = 0
    blas_threads: int = 0
    publish: str | None = DEFAULT_PUBLISH
    bind_any: bool = False
    overlay_jpeg: bool = False
    hwm: int = 8
    curve_server_key: str | None = None
    curve_clients: str | None = None
    http: str | None = None
    http_token_file: str | None = None
    history_s: float = 300.0

    def __post_init__(self) -> None:
        c = "ServeConfig"
        _need(c, "cameras", len(self.cameras) >= 1, len(self.cameras), "at least one [[cameras]] table")
        names = [cam.name for cam in self.cameras]
        dup = sorted({n for n in names if names.count(n) > 1})
        _need(c, "cameras", not dup, dup, "cameras with distinct names")
        _need(c, "device", _opt(lambda v: v in ("cpu", "cuda", "auto") or str(v).startswith("cuda:"))(self.device),
              self.device, "'cpu', 'cuda', 'cuda:N' or 'auto'")
        _need(c, "batch_wait_ms", _opt(lambda v: _is_num(v) and 0 <= v <= 1000)(self.batch_wait_ms),
              self.batch_wait_ms, "a number of milliseconds in [0, 1000]")
        _need(c, "workers", _is_int(self.workers) and 0 <= self.workers <= 256, self.workers,
              "an int in [0, 256] (0: detection on threads of the serve process)")
        _need(c, "worker_timeout_s", _is_num(self.worker_timeout_s) and 1 <= self.worker_timeout_s <= 3600,
              self.worker_timeout_s, "a number of seconds in [1, 3600] (a hung worker is killed after it)")
        _need(c, "status_every", _is_num(self.status_every) and self.status_every >= 0, self.status_every,
              "a number of seconds >= 0 (0: no status messages)")
        for name in ("torch_threads", "blas_threads"):
            _need(c, name, _is_int(getattr(self, name)) and getattr(self, name) >= 0, getattr(self, name),
                  "an int >= 0 (0: automatic)")
        _need(c, "publish", _opt(lambda v: isinstance(v, str) and "://" in v)(self.publish), self.publish,
              f"a ZeroMQ address such as {DEFAULT_PUBLISH}")
        _need(c, "bind_any", isinstance(self.bind_any, bool), self.bind_any, "true or false")
        _need(c, "overlay_jpeg", isinstance(self.overlay_jpeg, bool), self.overlay_jpeg, "true or false")
        _need(c, "hwm", _is_int(self.hwm) and self.hwm >= 1, self.hwm, "an int >= 1 (messages per subscriber)")
        _need(c, "curve", (self.curve_server_key is None) == (self.curve_clients is None),
              (self.curve_server_key, self.curve_clients), "both curve_server_key and curve_clients, or neither")
        _need(c, "http", _opt(lambda v: isinstance(v, str) and ":" in v)(self.http), self.http,
              f"HOST:PORT such as {DEFAULT_HTTP}")
        _need(c, "history_s", _is_num(self.history_s) and 10 <= self.history_s <= 86400, self.history_s,
              "a number of seconds in [10, 86400]")


#: The batch wait where a camera's backbone runs on a GPU, where a batch is meant to cost little more than one
#: frame (the former default everywhere; not measured on a GPU yet).
GPU_BATCH_WAIT_MS = 5.0


def auto_batch_wait_ms(devices: Iterable[str]) -> float | None:
    """``[serve] batch_wait_ms`` when the file leaves it out: :data:`GPU_BATCH_WAIT_MS` when any backbone runs
    on a GPU (``devices``: the backbones' torch devices, such as ``"cpu"`` or ``"cuda:0"``), else None: no
    batches at all, each camera runs its frames through the backbone on its own thread. On the CPU a batch
    costs the sum of its frames, so waiting for one only leaves cores idle, and the one batching thread is a
    single share of the cores for every camera's backbone work (docs/DESIGN.md, section 4, has the figures).

        >>> auto_batch_wait_ms(["cpu", "cpu"]), auto_batch_wait_ms(["cpu", "cuda:0"])
        (None, 5.0)
    """
    return GPU_BATCH_WAIT_MS if any(str(d).startswith("cuda") for d in devices) else None


# -- reading the file ----------------------------------------------------------------------------------

SECTIONS: dict[str, dict[str, str]] = {  # table -> {key in the file: ServeConfig field}
    "serve": {"device": "device", "batch_wait_ms": "batch_wait_ms", "workers": "workers",
              "worker_timeout_s": "worker_timeout_s",
              "status_every": "status_every", "torch_threads": "torch_threads", "blas_threads": "blas_threads"},
    "publisher": {"address": "publish", "enabled": "", "bind_any": "bind_any", "overlay_jpeg": "overlay_jpeg",
                  "hwm": "hwm", "curve_server_key": "curve_server_key", "curve_clients": "curve_clients"},
    "web": {"address": "http", "token_file": "http_token_file", "history_s": "history_s"},
}
PATH_KEYS = {"curve_server_key", "curve_clients", "http_token_file"}
CAMERA_KEYS = tuple(f.name for f in dataclasses.fields(CameraConfig))


def _line_of(text: str, table: str, index: int | None, key: str | None) -> int | None:
    """The line (1-based) of ``key`` in ``[table]`` (the ``index``-th ``[[table]]``), or of the table's
    header when ``key`` is None; None when it cannot be found (keys written inline, dotted...)."""
    current, count, header_line = None, -1, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", line) or re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if m:
            name = m.group(1)
            if line.startswith("[[") and name == table:
                count += 1
            current = name if (index is None or count == index) else None
            if current == table and (index is None or name == table):
                header_line = number
            continue
        if key is not None and current is not None and current.split(".")[0] == table:
            if re.match(rf"^\"?{re.escape(key)}\"?\s*[=.]", line):
                return number
    return header_line if key is None else None


def _where(path: str, text: str, table: str, index: int | None, key: str | None) -> str:
    label = table if index is None else f"{table}[{index}]"
    line = _line_of(text, table, index, key) or _line_of(text, table, index, None)
    return f"{path}: {label}" + (f" (line {line})" if line else "")


def _resolve(base: str, value: Any) -> Any:
    if isinstance(value, str) and value and not os.path.isabs(value) and "://" not in value:
        return os.path.normpath(os.path.join(base, value))
    return value


def _source(base: str, value: Any) -> Any:
    """A camera's source: an index stays, ``demo`` and URLs stay, a relative path joins the file's folder."""
    if _is_int(value):
        return str(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.match(r"^demo(:\d+)?(@\d+(\.\d+)?)?$", text.lower()) or text.isdigit() or "://" in text or text.startswith("/dev/"):
        return text
    return _resolve(base, text)


def _message(exc: Exception) -> str:
    return re.sub(r"^(CameraConfig|ServeConfig)\.(\w+) ", r"key '\2' ", str(exc))


def parse_config(data: Mapping[str, Any], text: str = "", path: str = "serve.toml",
                 base: str = ".") -> ServeConfig:
    """The :class:`ServeConfig` of parsed TOML ``data`` (``text``: the file, for line numbers; ``base``:
    the folder relative paths start from). Raises :class:`ConfigError` naming file, key and line."""
    known = set(SECTIONS) | {"cameras"}
    for key in data:
        if key not in known:
            line = _line_of(text, key, None, None) or _line_of(text, "", None, key)
            raise ConfigError(f"{path}: unknown key or table {key!r}" + (f" (line {line})" if line else "")
                              + f" (known: {', '.join(sorted(known))})")
    settings: dict[str, Any] = {}
    for table, keys in SECTIONS.items():
        section = data.get(table, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: {table!r} must be a table ([{table}])")
        for key, value in section.items():
            if key not in keys:
                raise ConfigError(f"{_where(path, text, table, None, key)}: unknown key {key!r} "
                                  f"(known: {', '.join(keys)})")
            if key == "enabled":
                if not isinstance(value, bool):
                    raise ConfigError(f"{_where(path, text, table, None, key)}: key 'enabled' must be true or "
                                      f"false, got {value!r}")
                if not value:
                    settings["publish"] = None
                continue
            settings[keys[key]] = _resolve(base, value) if key in PATH_KEYS or keys[key] in PATH_KEYS else value
    if "publish" in settings and data.get("publisher", {}).get("enabled") is False:
        settings["publish"] = None
    cams = data.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise ConfigError(f"{path}: no cameras: add at least one [[cameras]] table with a name and a source")
    cameras = []
    for i, cam in enumerate(cams):
        if not isinstance(cam, Mapping):
            raise ConfigError(f"{path}: cameras[{i}] must be a table ([[cameras]])")
        for key in cam:
            if key not in CAMERA_KEYS:
                raise ConfigError(f"{_where(path, text, 'cameras', i, key)}: unknown key {key!r} "
                                  f"(known: {', '.join(CAMERA_KEYS)})")
        for key in ("name", "source"):
            if key not in cam:
                raise ConfigError(f"{_where(path, text, 'cameras', i, None)}: missing key {key!r}")
        values = dict(cam)
        values["source"] = _source(base, values["source"])
        if isinstance(values.get("state"), str):
            values["state"] = _resolve(base, values["state"])
        try:
            camera = CameraConfig(**values)
            camera.stream_config(settings.get("device"))  # preset and overrides checked now, not at run time
            camera.event_config()
        except ValueError as exc:
            key = _bad_key(str(exc))
            named = "" if key is None or re.search(rf"\b{key}\b", _message(exc)) else f"key '{key}': "
            raise ConfigError(f"{_where(path, text, 'cameras', i, key)}: {named}{_message(exc)}") from exc
        cameras.append(camera)
    try:
        return ServeConfig(cameras=tuple(cameras), **settings)
    except ValueError as exc:
        key = _bad_key(str(exc))
        table = next((t for t, keys in SECTIONS.items() for k, f in keys.items() if f == key), "serve")
        file_key = next((k for k, f in SECTIONS.get(table, {}).items() if f == key), key)
        msg = _message(exc).replace(f"key '{key}'", f"key '{file_key}'")
        raise ConfigError(f"{_where(path, text, table, None, file_key)}: {msg}") from exc


def _bad_key(message: str) -> str | None:
    """The field a config ``ValueError`` names (``CameraConfig.window must ...``, ``StreamConfig.window``,
    ``FeatureConfig.grid``, ``no field 'x'``)."""
    if message.startswith("unknown preset"):
        return "preset"
    m = re.match(r"^(?:CameraConfig|ServeConfig|StreamConfig)\.(\w+)", message)
    if m:
        return m.group(1)
    m = re.match(r"^\w+Config\.(\w+)", message) or re.search(r"no field '(\w+)'", message)
    return "overrides" if m else None


def load_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read and check the TOML file at ``path`` (:class:`ConfigError` naming file, key and line)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror or exc}") from exc
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{path}: arrays or tables nested too deeply for the TOML reader: a streamad "
                          "configuration nests at most three levels") from None
    return parse_config(data, text, path, os.path.dirname(os.path.abspath(path)))
