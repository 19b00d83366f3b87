"""Save and load the streaming engine's full state (docs/persistence.md).

A state directory holds ``manifest.json`` (format and version, the configuration, every scalar, and
the file, shape, dtype, size and CRC-32 of every array) and one ``.npy`` file per array, written with
``np.save`` and read with ``np.load(..., allow_pickle=False)``: nothing is unpickled or evaluated.
The classes that own the state say what it is (``state_dict()`` / ``from_state()`` on
:class:`~streamad.stream.detector.StreamDetector`, :class:`~streamad.core.incremental.IncrementalChannels`,
:class:`~streamad.index.hnsw.NominalIndex` and :class:`~streamad.stream.decisions.ScoreDecisions`); this
module writes it, reads it back and checks it.

Saving is atomic: the state is written into a temporary sibling directory, every file and the
directory are fsynced, then it replaces the target (the old state is renamed to ``.NAME.previous``,
the new one into place, the old one deleted). A crash at any point leaves a loadable state: the old
one, or the new one, or (between the two renames) ``.NAME.previous``, which the next load or save
puts back.

Loading refuses, with a :class:`StateError` naming the file or field, both values and what to do: a
missing or corrupt file (bad JSON, truncated or altered ``.npy``, wrong shapes), another format
version, a configuration other than the one given, a descriptor grid or dimension other than the
extractor's.

    >>> import tempfile, numpy as np
    >>> from streamad.config import StreamConfig, ChannelConfig
    >>> from streamad.stream.detector import StreamDetector
    >>> class Toy:
    ...     grid, image_size = (1, 2), (32, 32)
    >>> det = StreamDetector(StreamConfig(window=4, channels=ChannelConfig(seeds=1, min_span=1)), extractor=Toy())
    >>> for i in range(3):
    ...     _ = det.process_descriptors(np.full((2, 3), i, np.float32), timestamp=float(i))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_state(det, f"{tmp}/state")
    ...     back = load_state(path, extractor=Toy())
    ...     load_state(path, extractor=Toy(), config=StreamConfig(window=5, channels=det.config.channels))
    ...     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamad.errors.StateError: cannot resume from .../state: it was saved with StreamConfig.window=4, ...
    >>> back.frames_seen, back.nominal_count == det.nominal_count
    (3, True)
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hnswlib
import numpy as np

from streamad.config import StreamConfig
from streamad.errors import StateError

if TYPE_CHECKING:
    from streamad.stream.detector import Extractor, StreamDetector

__all__ = ["FORMAT_VERSION", "StateError", "has_state", "load_state", "move_aside", "read_manifest", "save_state"]

FORMAT = "streamad-engine-state"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Settings that may differ between the saved and the resuming configuration (they change no state).
RUNTIME_FIELDS = frozenset({"features.device", "features.batch_size", "index.threads"})
_FIX = "restore it from a backup, or start fresh (streamad watch: --state-reset moves it aside)"




# ---------------------------------------------------------------------------------------------- saving
def save_state(detector: StreamDetector, directory: str | os.PathLike[str]) -> Path:
    """Write ``detector``'s full state to ``directory`` atomically; returns its path.

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
    parts = {"detector": detector.state_dict(), "channels": detector.channels.state_dict(),
             "index": None if detector.index is None else detector.index.state_dict(),
             "decisions": detector.decisions.state_dict()}
    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for part, state in parts.items():
        scalars[part] = None if state is None else {}
        for key, value in (state or {}).items():
            if isinstance(value, np.ndarray):
                arrays[f"{part}.{key}"] = value
            else:
                scalars[part][key] = value
    from streamad.version import __version__

    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "streamad_version": __version__,
        "hnswlib_version": _hnswlib_version(), "saved_at": time.time(),
        "summary": {"frames_seen": detector.frames_seen, "window_frames": len(detector.channels),
                    "window": detector.config.window, "nominal_patches": detector.nominal_count,
                    "graph": bool(detector.index is not None and detector.index.uses_graph)},
        "config": dataclasses.asdict(detector.config), "state": scalars, "arrays": {}}
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-{os.getpid()}-", dir=target.parent))
    try:
        for name, array in arrays.items():
            manifest["arrays"][name] = _write_array(tmp / f"{name}.npy", array)
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
        raise StateError(f"{file} is missing: {path} holds no streamad state, or an incomplete one; {_FIX}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"{file} is not valid JSON ({exc}): the state is corrupt; {_FIX}") from None
    except OSError as exc:
        raise StateError(f"cannot read {file}: {exc.strerror or exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise StateError(f"{file} is not a streamad engine state (format {found!r}, expected {FORMAT!r}); {_FIX}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise StateError(f"{path} holds a state in format_version {version!r}, but this streamad "
                         f"reads format_version {FORMAT_VERSION}: load it with the streamad version that wrote it, "
                         "or start a new state (streamad watch: --state-reset moves it aside)")
    for key, kind in (("config", dict), ("state", dict), ("arrays", dict)):
        if not isinstance(manifest.get(key), kind):
            raise StateError(f"{file}: field {key!r} is missing or not a {kind.__name__}; {_FIX}")
    return manifest


def load_state(directory: str | os.PathLike[str], extractor: Extractor | None = None,
               config: StreamConfig | None = None, cls: type[StreamDetector] | None = None) -> StreamDetector:
    """The detector saved in ``directory`` (see :meth:`StreamDetector.load`)."""
    if cls is None:
        from streamad.stream.detector import StreamDetector as cls  # type: ignore[no-redef]
    path = Path(directory)
    manifest = read_manifest(path)
    saved = _config_from_dict(manifest["config"], path / MANIFEST)
    if config is not None:
        check_compatible(saved, config, path)
    config = config or saved
    parts = _parts(manifest, path)
    _check(parts, config, path)
    if parts["index"] is not None:
        parts["index"]["threads"] = config.index.threads  # a run-time setting: the one given wins
    grid = tuple(parts["detector"]["grid"])
    want = tuple(int(v) for v in (extractor.grid if extractor is not None else config.features.grid))
    if want != grid:
        raise StateError(f"cannot resume from {path}: it was saved with a {grid[0]}x{grid[1]} descriptor grid, but "
                         f"the extractor gives {want[0]}x{want[1]}: use the extractor (features) it was saved with")
    dim = int(parts["index"]["dim"]) if parts["index"] is not None else None
    ext_dim = getattr(extractor, "dim", None)
    if dim is not None and isinstance(ext_dim, (int, np.integer)) and int(ext_dim) != dim:
        raise StateError(f"cannot resume from {path}: it holds {dim}-d descriptors, but the extractor gives "
                         f"{int(ext_dim)}-d ones: use the extractor (features) it was saved with")
    return cls.from_state(parts, config, extractor)


def _config_from_dict(data: dict[str, Any], where: Path) -> StreamConfig:
    try:
        kwargs = dict(data)
        for f in dataclasses.fields(StreamConfig):
            if isinstance(kwargs.get(f.name), dict) and callable(f.default_factory):  # type: ignore[misc]
                kwargs[f.name] = f.default_factory(**kwargs[f.name])  # type: ignore[misc]
        return StreamConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise StateError(f"{where}: the saved configuration is not valid for this streamad ({exc}); {_FIX}") from None


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


# Scalars each part must hold: "int", "int?" (or None), "num?", "bool", "dict", "str", "num".
_SCALARS: dict[str, dict[str, str]] = {
    "detector": {"frames_seen": "int", "next_frame_id": "int", "since_admission": "int?",
                 "last_admission_time": "num?", "frame_size": "pair?"},
    "channels": {"batched_trim": "bool", "admissions": "int", "last_promotion": "int?", "head": "int",
                 "last_id": "int", "allocated": "bool", "stats": "dict"},
    "index": {"dim": "int", "M": "int", "ef_construction": "int", "ef": "int", "exact_below": "int", "seed": "int",
              "threads": "int", "insert_threads": "int", "capacity": "int", "used": "int", "graph": "bool"},
    "decisions": {"count": "int", "drifts": "int"},
}
_HNSW_SCALARS = {"space": "str", "dim": "int", "cur_element_count": "int", "max_elements": "int",
                 "size_data_per_element": "int", "size_links_per_element": "int", "seed": "int"}
_KINDS = {"int": (int,), "int?": (int, type(None)), "num?": (int, float, type(None)), "num": (int, float),
          "bool": (bool,), "dict": (dict,), "str": (str,)}


def _parts(manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    """The manifest's scalars merged with the arrays read from their files, part by part."""
    scalars, arrays = manifest["state"], manifest["arrays"]
    parts: dict[str, Any] = {}
    for part, schema in _SCALARS.items():
        if part not in scalars:
            raise StateError(f"{path / MANIFEST}: state part {part!r} is missing; {_FIX}")
        if scalars[part] is None and part == "index":
            parts[part] = None
            continue
        state = scalars[part]
        if not isinstance(state, dict):
            raise StateError(f"{path / MANIFEST}: state part {part!r} is not a dict; {_FIX}")
        if part == "detector":
            schema = {**schema, "grid": "grid"}
        elif part == "index" and state.get("graph") is True:
            schema = {**schema, **{f"hnsw.{k}": v for k, v in _HNSW_SCALARS.items()}}
        for key, kind in schema.items():
            value = state.get(key, ...)
            if kind in ("grid", "pair?"):
                ok = (kind == "pair?" and value is None) or (isinstance(value, list) and len(value) == 2
                                                             and all(type(v) is int and v >= 1 for v in value))
            else:
                ok = isinstance(value, _KINDS[kind]) and (kind == "bool" or type(value) is not bool)
            if not ok:
                raise StateError(f"{path / MANIFEST}: {part}.{key} is {'missing' if value is ... else repr(value)}, "
                                 f"expected {kind}; {_FIX}")
        parts[part] = dict(state)
    for name, meta in arrays.items():
        part, _, key = name.partition(".")
        if parts.get(part) is None or not key:
            raise StateError(f"{path / MANIFEST}: unexpected array {name!r}; {_FIX}")
        parts[part][key] = _read_array(path, name, meta)
    return parts


def _read_array(directory: Path, name: str, meta: Any) -> np.ndarray:
    file = directory / f"{name}.npy"
    if not (isinstance(meta, dict) and meta.get("file") == file.name and isinstance(meta.get("bytes"), int)
            and isinstance(meta.get("crc32"), int) and isinstance(meta.get("shape"), list)
            and isinstance(meta.get("dtype"), str)):
        raise StateError(f"{directory / MANIFEST}: the entry of {file.name} is malformed; {_FIX}")
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{file} is missing: the state in {directory} is incomplete; {_FIX}") from None
    except OSError as exc:
        raise StateError(f"cannot read {file}: {exc.strerror or exc}") from None
    if len(data) != meta["bytes"]:
        raise StateError(f"{file} is truncated or was altered: {len(data)} bytes, the manifest says {meta['bytes']}; "
                         f"{_FIX}")
    if zlib.crc32(data) != meta["crc32"]:
        raise StateError(f"{file} is corrupt (its CRC-32 does not match the manifest's); {_FIX}")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt file
        raise StateError(f"{file} is not a readable .npy array ({exc}); {_FIX}") from None
    if not isinstance(array, np.ndarray) or list(array.shape) != meta["shape"] or array.dtype.str != meta["dtype"]:
        raise StateError(f"{file} holds a {array.dtype} array of shape {array.shape}, but the manifest says "
                         f"{meta['dtype']} {tuple(meta['shape'])}; {_FIX}")
    return array


def _need(path: Path, part: dict[str, Any], pname: str, key: str, shape: tuple[int, ...],
          *dtypes: Any) -> np.ndarray:
    """The array ``part[key]``, which must have ``shape`` (-1: any length) and one of ``dtypes``."""
    file = path / f"{pname}.{key}.npy"
    array = part.get(key)
    if not isinstance(array, np.ndarray):
        raise StateError(f"{file} is missing from the manifest: the state is incomplete; {_FIX}")
    ok_shape = array.ndim == len(shape) and all(w in (-1, s) for w, s in zip(shape, array.shape))
    if not ok_shape or array.dtype not in [np.dtype(d) for d in dtypes]:
        want = "(" + ", ".join("n" if w == -1 else str(w) for w in shape) + ")"
        raise StateError(f"{file} has shape {array.shape} and dtype {array.dtype}, but this state needs shape {want} "
                         f"and dtype {' or '.join(str(np.dtype(d)) for d in dtypes)}; {_FIX}")
    return array


def _check(parts: dict[str, Any], config: StreamConfig, path: Path) -> None:
    """Shapes and bookkeeping of every array against the configuration and each other."""
    i8, i4, f8, b1 = np.int64, np.int32, np.float64, np.bool_

    def bad(what: str) -> StateError:
        return StateError(f"{path}: inconsistent state ({what}); {_FIX}")

    gh, gw = parts["detector"]["grid"]
    w, p = config.window, gh * gw
    ch = parts["channels"]
    dim = None
    if ch["allocated"]:
        x = _need(path, ch, "channels", "x", (w, p, -1), np.float32, np.float64)
        dim = x.shape[2]
        dcap = len(_need(path, ch, "channels", "seed_frame", (-1,), i8))
        if dcap < config.channels.seeds:
            raise bad(f"{dcap} seed slots for {config.channels.seeds} seeds")
        for key, shape, dtype in (("frame", (w,), i8), ("seed_j", (w,), i8), ("pair_patch", (dcap, w, p), i8),
                                  ("pair_dist", (dcap, w, p), f8), ("members", (dcap, p, w), i4),
                                  ("assign_j", (w, p), i8), ("assign_a", (w, p), i8), ("nominal", (w, p), b1),
                                  ("published", (w, p), b1), ("dirty", (dcap, p), b1),
                                  ("pending_removed", (-1,), i8)):
            _need(path, ch, "channels", key, shape, dtype)
        ids = _need(path, ch, "channels", "ids", (-1,), i8)
        _need(path, ch, "channels", "eligible", (len(ids),), b1)
        slots = (ch["head"] + np.arange(len(ids))) % w
        if len(ids) > w or not 0 <= ch["head"] < w or not np.array_equal(ch["frame"][slots], ids):
            raise bad("the window's frame ids do not match its ring buffer")
    idx = parts["index"]
    if idx is not None:
        if dim is not None and idx["dim"] != dim:
            raise bad(f"the window holds {dim}-d descriptors, the nominal index {idx['dim']}-d ones")
        used, cap, d = idx["used"], idx["capacity"], idx["dim"]
        if not 0 <= used <= cap or d < 1:
            raise bad(f"index slots used {used}, capacity {cap}, dim {d}")
        _need(path, idx, "index", "vectors", (used, d), np.float32)
        labels = _need(path, idx, "index", "label_of_slot", (used,), i8)
        live = _need(path, idx, "index", "live", (used,), b1)
        free = _need(path, idx, "index", "free", (-1,), i8)
        keys = _need(path, idx, "index", "slot_of_labels", (-1,), i8)
        vals = _need(path, idx, "index", "slot_of_slots", (len(keys),), i8)
        if (len(keys) != live.sum() or ((vals < 0) | (vals >= used)).any() or not live[vals].all()
                or not np.array_equal(labels[vals], keys) or ((free < 0) | (free >= used)).any() or live[free].any()):
            raise bad("the nominal index's slot bookkeeping does not agree with itself")
        if idx["graph"]:
            _check_graph(path, idx, d, cap)
    dec = parts["decisions"]
    history = _need(path, dec, "decisions", "history", (-1,), f8)
    if len(history) > dec["count"] or not np.isfinite(history).all():
        raise bad(f"{len(history)} saved scores for a count of {dec['count']}")


def _check_graph(path: Path, idx: dict[str, Any], dim: int, capacity: int) -> None:
    """The HNSW arrays must have the sizes hnswlib will read (a wrong size would crash it, not raise)."""
    cur, top = idx["hnsw.cur_element_count"], idx["hnsw.max_elements"]
    if idx["hnsw.dim"] != dim or idx["hnsw.space"] != "l2" or not 0 <= cur <= top or cur > capacity:
        raise StateError(f"{path}: the HNSW graph does not fit the index (dim {idx['hnsw.dim']} vs {dim}, "
                         f"{cur} of {top} elements, capacity {capacity}); {_FIX}")
    _need(path, idx, "index", "hnsw.label_lookup_external", (cur,), np.uint64)
    _need(path, idx, "index", "hnsw.label_lookup_internal", (cur,), np.uint32)
    levels = _need(path, idx, "index", "hnsw.element_levels", (top,), np.int32)
    _need(path, idx, "index", "hnsw.data_level0", (cur * idx["hnsw.size_data_per_element"],), np.int8)
    links = int(np.maximum(levels[:cur], 0).sum()) * idx["hnsw.size_links_per_element"]
    _need(path, idx, "index", "hnsw.link_lists", (links,), np.int8)
