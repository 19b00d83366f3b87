"""Write a saved state to disk atomically and read it back, checked (docs/persistence.md).

A state directory holds ``manifest.json`` (format and version, the configuration, every scalar, and
the file, shape, dtype, size and CRC-32 of every array) and one ``.npy`` file per array, written with
``np.save`` and read with ``np.load(..., allow_pickle=False)``: nothing is unpickled or evaluated.
A state is a dict of parts, each a dict of JSON scalars and numpy arrays (or None). What the parts
hold, and whether that is loadable, is said by the classes that own them (``state_dict()``,
``from_state()`` and ``check_state()`` on :class:`~streamad.core.incremental.IncrementalChannels`,
:class:`~streamad.index.base.BaseIndex`, :class:`~streamad.stream.decisions.ScoreDecisions` and
:class:`~streamad.stream.detector.StreamDetector`, whose ``save`` and ``load`` call this module); this
module only writes the files and reads them back.

Saving is atomic: the state is written into a temporary sibling directory, every file and the
directory are fsynced, then it replaces the target (the old state is renamed to ``.NAME.previous``,
the new one into place, the old one deleted). A crash at any point leaves a loadable state: the old
one, or the new one, or (between the two renames) ``.NAME.previous``, which the next load or save
puts back.

Reading refuses, with a :class:`StateError` naming the file or field, both values and what to do: a
missing or corrupt file (bad JSON, truncated or altered ``.npy``, shapes other than the manifest's),
another format version, a configuration other than the one given.

    >>> import tempfile, numpy as np
    >>> from streamad.config import StreamConfig, ChannelConfig
    >>> config = StreamConfig(window=4, channels=ChannelConfig(seeds=1, min_span=1))
    >>> parts = {"counter": {"n": 3, "values": np.arange(3.0)}, "graph": None}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_state(f"{tmp}/state", parts, config, summary={"n": 3})
    ...     saved = read_state(path)
    ...     read_state(path, config=StreamConfig(window=5, channels=config.channels))
    ...     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamad.errors.StateError: cannot resume from .../state: it was saved with StreamConfig.window=4, ...
    >>> saved.parts["counter"]["n"], saved.parts["counter"]["values"].tolist(), saved.parts["graph"]
    (3, [0.0, 1.0, 2.0], None)
    >>> saved.config == config, saved.manifest["summary"], sorted(saved.manifest["arrays"])
    (True, {'n': 3}, ['counter.values'])
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from streamad.config import StreamConfig
from streamad.errors import StateError
from streamad.state_schema import FIX, MANIFEST, array_file

__all__ = ["FORMAT_VERSION", "RUNTIME_FIELDS", "SavedState", "StateError", "check_compatible", "has_state",
           "move_aside", "read_manifest", "read_state", "write_state"]

FORMAT = "streamad-engine-state"
FORMAT_VERSION = 1
# Settings that may differ between the saved and the resuming configuration (they change no state).
RUNTIME_FIELDS = frozenset({"features.device", "features.batch_size", "index.threads", "learn_in_background",
                            "learner_duty", "learner_nice",
                            "threads.torch", "threads.blas", "threads.associate", "channels.device",
                            "index.device",
                            # the alarm rule and rate: a resumed engine keeps its model, and its decisions re-learn
                            # their calibration when the rule changes (docs/alarms.md)
                            "decisions.rule", "decisions.false_alarm_rate", "decisions.quantile",
                            "decisions.trust_patches"})


# ---------------------------------------------------------------------------------------------- saving
def write_state(directory: str | os.PathLike[str], parts: dict[str, dict[str, Any] | None], config: StreamConfig,
                summary: dict[str, Any]) -> Path:
    """Write ``parts`` (name: a dict of JSON scalars and numpy arrays, or None), ``config`` and
    ``summary`` (for people and tools) to ``directory`` atomically; returns its path.

    ``directory`` may be new, empty or a previous state (replaced only once the new one is complete);
    a non-empty directory that holds no state is refused. ``OSError`` (read-only, disk full) leaves
    the previous state as it was and no temporary directory behind.
    """
    target = Path(directory)
    _recover(target, cleanup=True)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise StateError(f"cannot save the state to {target}: it exists and is not a directory")
        if not (target / MANIFEST).is_file() and any(target.iterdir()):
            raise StateError(f"cannot save the state to {target}: the directory is not empty and holds no streamad "
                             f"state ({MANIFEST} is missing); refusing to replace it: choose a new or empty directory")
    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for part, state in parts.items():
        if not part or "." in part:
            raise ValueError(f"state part names must be non-empty and hold no '.', got {part!r}")
        scalars[part] = None if state is None else {}
        for key, value in (state or {}).items():
            if isinstance(value, np.ndarray):
                arrays[f"{part}.{key}"] = value
            else:
                scalars[part][key] = value
    from streamad.version import __version__

    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "streamad_version": __version__,
        "hnswlib_version": _hnswlib_version(), "saved_at": time.time(), "summary": summary,
        "config": dataclasses.asdict(config), "state": scalars, "arrays": {}}
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-{os.getpid()}-", dir=target.parent))
    try:
        for name, array in arrays.items():
            part, _, key = name.partition(".")
            manifest["arrays"][name] = _write_array(tmp / array_file(part, key), array)
        _write_file(tmp / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False, default=_plain).encode())
        _fsync_dir(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones for JSON (anything else is a bug: refuse it)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"cannot save a {type(value).__name__} in {MANIFEST}: {value!r}")


class _CrcWriter:
    """A file wrapper that counts and checksums what ``np.save`` writes through it."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.crc, self.size = fh, 0, 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.crc = zlib.crc32(view, self.crc)
        self.size += view.nbytes
        return self.fh.write(view)


def _write_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    with open(path, "wb") as fh:
        writer = _CrcWriter(fh)
        np.save(writer, array, allow_pickle=False)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())
    return {"file": path.name, "shape": list(array.shape), "dtype": array.dtype.str, "bytes": writer.size,
            "crc32": writer.crc}


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup(target: Path) -> Path:
    return target.with_name(f".{target.name}.previous")


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Old state aside, new one in, old one deleted (a failure in between puts the old one back)."""
    backup = _backup(target)
    moved = target.exists() or target.is_symlink()
    if moved:
        os.rename(target, backup)
    try:
        os.rename(tmp, target)
    except BaseException:
        if moved:
            os.rename(backup, target)
        raise
    _fsync_dir(target.parent)
    if moved and backup.is_symlink():
        backup.unlink()
    elif moved:
        shutil.rmtree(backup, ignore_errors=True)


def _recover(target: Path, cleanup: bool = False) -> None:
    """Finish a save that stopped between its two renames: put ``.NAME.previous`` back (or delete it)."""
    backup = _backup(target)
    if not backup.exists():
        return
    if not target.exists():
        os.rename(backup, target)
    elif cleanup:
        shutil.rmtree(backup, ignore_errors=True)


def _remove_stale_temps(target: Path) -> None:
    """Delete temporary directories that earlier saves left behind when their process died."""
    prefix = f".{target.name}.saving-"
    for entry in target.parent.iterdir():
        if entry.name.startswith(prefix):
            pid = entry.name[len(prefix):].split("-", 1)[0]
            if not (pid.isdigit() and _alive(int(pid))):
                shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers: this process is not saving there now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _hnswlib_version() -> str:
    try:
        from importlib.metadata import version

        return version("hnswlib")
    except Exception:  # noqa: BLE001 - informative only
        return "unknown"


# ---------------------------------------------------------------------------------------------- loading
def has_state(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds something to resume from (a state, maybe a broken one): it exists and,
    if a directory, is not empty. A new or empty directory means "start fresh"."""
    path = Path(directory)
    if not path.exists() and _backup(path).exists():
        return True
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def move_aside(directory: str | os.PathLike[str]) -> Path:
    """Rename an unusable state to ``NAME.bad-YYYYmmdd-HHMMSS`` (nothing is deleted); returns the new path."""
    path = Path(directory)
    _recover(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.bad-{stamp}-{n}")
    os.rename(path, aside)
    return aside


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed and checked ``manifest.json`` of a state directory (``StateError`` if unusable)."""
    path = Path(directory)
    _recover(path)
    if not path.exists():
        raise StateError(f"no saved state at {path}: the directory does not exist")
    if not path.is_dir():
        raise StateError(f"{path} is not a state directory (it is a file)")
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise StateError(f"{file} is missing: {path} holds no streamad state, or an incomplete one; {FIX}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"{file} is not valid JSON ({exc}): the state is corrupt; {FIX}") from None
    except OSError as exc:
        raise StateError(f"cannot read {file}: {exc.strerror or exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise StateError(f"{file} is not a streamad engine state (format {found!r}, expected {FORMAT!r}); {FIX}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise StateError(f"{path} holds a state in format_version {version!r}, but this streamad "
                         f"reads format_version {FORMAT_VERSION}: load it with the streamad version that wrote it, "
                         "or start a new state (streamad watch: --state-reset moves it aside)")
    for key, kind in (("config", dict), ("state", dict), ("arrays", dict)):
        if not isinstance(manifest.get(key), kind):
            raise StateError(f"{file}: field {key!r} is missing or not a {kind.__name__}; {FIX}")
    return manifest


class SavedState(NamedTuple):
    """What :func:`read_state` read: the state directory, its manifest, the configuration to resume with
    and the parts (the manifest's scalars and the arrays read from their files, part by part)."""

    path: Path
    manifest: dict[str, Any]
    config: StreamConfig
    parts: dict[str, dict[str, Any] | None]


def read_state(directory: str | os.PathLike[str], config: StreamConfig | None = None) -> SavedState:
    """The state :func:`write_state` wrote to ``directory``, every file read and verified (CRC-32, .npy
    format, shape and dtype as in the manifest). ``config``, if given, must match the saved one but for
    the run-time settings (:func:`check_compatible`) and is then the one returned; else the saved one.
    What the parts hold is for their owners to check (their ``check_state``)."""
    path = Path(directory)
    manifest = read_manifest(path)
    saved = _config_from_dict(manifest["config"], path / MANIFEST)
    if config is not None:
        check_compatible(saved, config, path)
    parts: dict[str, dict[str, Any] | None] = {}
    for part, state in manifest["state"].items():
        if state is not None and not isinstance(state, dict):
            raise StateError(f"{path / MANIFEST}: state part {part!r} is not a dict; {FIX}")
        parts[part] = None if state is None else dict(state)
    for name, meta in manifest["arrays"].items():
        part, _, key = name.partition(".")
        state = parts.get(part)
        if state is None or not key:
            raise StateError(f"{path / MANIFEST}: unexpected array {name!r}; {FIX}")
        state[key] = _read_array(path / array_file(part, key), meta)
    return SavedState(path, manifest, config or saved, parts)


def _config_from_dict(data: dict[str, Any], where: Path) -> StreamConfig:
    try:
        kwargs = dict(data)
        if isinstance(kwargs.get("index"), dict) and "kind" not in kwargs["index"]:
            kwargs["index"] = {**kwargs["index"], "kind": "hnsw"}  # saved before IVF existed: HNSW was the only kind
        if isinstance(kwargs.get("decisions"), dict) and "rule" not in kwargs["decisions"]:
            kwargs["decisions"] = {**kwargs["decisions"], "rule": "quantile"}  # saved before the trusted rule existed
        if isinstance(kwargs.get("decisions"), dict) and "window" in kwargs["decisions"]:
            decisions = dict(kwargs["decisions"])  # saved before DecisionConfig.window became calibration_size
            decisions.setdefault("calibration_size", decisions.pop("window"))
            kwargs["decisions"] = decisions
        for f in dataclasses.fields(StreamConfig):
            if isinstance(kwargs.get(f.name), dict) and callable(f.default_factory):  # type: ignore[misc]
                kind = type(f.default_factory())  # type: ignore[misc]
                kwargs[f.name] = kind(**kwargs[f.name])
        return StreamConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise StateError(f"{where}: the saved configuration is not valid for this streamad ({exc}); {FIX}") from None


def _flat(config: StreamConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = value

    walk("", json.loads(json.dumps(dataclasses.asdict(config))))  # tuples and lists compare equal
    return out


def check_compatible(saved: StreamConfig, given: StreamConfig, where: Path | str) -> None:
    """``StateError`` naming the first differing field (and how many others) unless ``given`` matches
    ``saved`` in everything but the run-time settings (``RUNTIME_FIELDS``)."""
    if not isinstance(given, StreamConfig):
        raise StateError(f"config must be a StreamConfig, got {type(given).__name__}")
    a, b = _flat(saved), _flat(given)
    diffs = [k for k in a if k not in RUNTIME_FIELDS and a[k] != b.get(k)]
    if diffs:
        k = diffs[0]
        more = f" (and {len(diffs) - 1} other field(s): {', '.join(diffs[1:4])})" if len(diffs) > 1 else ""
        raise StateError(f"cannot resume from {where}: it was saved with StreamConfig.{k}={a[k]!r}, but the "
                         f"configuration given has {k.rsplit('.', 1)[-1]}={b.get(k)!r}{more}. Resume with the saved "
                         "settings, or use another state directory (streamad watch: --state-reset moves this one aside)")


def _read_array(file: Path, meta: Any) -> np.ndarray:
    directory = file.parent
    if not (isinstance(meta, dict) and meta.get("file") == file.name and isinstance(meta.get("bytes"), int)
            and isinstance(meta.get("crc32"), int) and isinstance(meta.get("shape"), list)
            and isinstance(meta.get("dtype"), str)):
        raise StateError(f"{directory / MANIFEST}: the entry of {file.name} is malformed; {FIX}")
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{file} is missing: the state in {directory} is incomplete; {FIX}") from None
    except OSError as exc:
        raise StateError(f"cannot read {file}: {exc.strerror or exc}") from None
    if len(data) != meta["bytes"]:
        raise StateError(f"{file} is truncated or was altered: {len(data)} bytes, the manifest says {meta['bytes']}; "
                         f"{FIX}")
    if zlib.crc32(data) != meta["crc32"]:
        raise StateError(f"{file} is corrupt (its CRC-32 does not match the manifest's); {FIX}")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt file
        raise StateError(f"{file} is not a readable .npy array ({exc}); {FIX}") from None
    if not isinstance(array, np.ndarray) or list(array.shape) != meta["shape"] or array.dtype.str != meta["dtype"]:
        raise StateError(f"{file} holds a {array.dtype} array of shape {array.shape}, but the manifest says "
                         f"{meta['dtype']} {tuple(meta['shape'])}; {FIX}")
    return array
