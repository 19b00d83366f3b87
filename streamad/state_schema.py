"""Checks of a saved state's content, shared by the classes that own the state (docs/persistence.md).

A saved state is made of parts (``detector``, ``channels``, ``index``, ``decisions``), each a dict of
JSON scalars and numpy arrays that its owner's ``state_dict()`` gave and its ``from_state()`` reads.
Each owner also says what a loadable part looks like (a ``check_state`` classmethod next to
``from_state``) with the helpers here; :mod:`streamad.stream.persistence` only writes and reads the
files. :class:`StatePart` says where a part lives, for the messages: every refusal is a
:class:`~streamad.errors.StateError` naming the file or field, what was found, what was expected and
what to do.

    >>> import numpy as np
    >>> where = StatePart("line3.state", "decisions")
    >>> where.scalars({"count": 3, "drifts": None}, {"count": "int", "drifts": "int"})
    Traceback (most recent call last):
    ...
    streamad.errors.StateError: line3.state/manifest.json: decisions.drifts is None, expected int; restore it ...
    >>> where.array({"history": np.zeros(3)}, "history", (-1,), np.float64).shape
    (3,)
    >>> where.array({"history": np.zeros(3, np.float32)}, "history", (-1,), np.float64)
    Traceback (most recent call last):
    ...
    streamad.errors.StateError: line3.state/decisions.history.npy has shape (3,) and dtype float32, but this state ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from streamad.errors import StateError

__all__ = ["FIX", "KINDS", "MANIFEST", "StatePart", "array_file"]

# What to do about a state that cannot be loaded (the end of most StateError messages).
FIX = "restore it from a backup, or start fresh (streamad watch: --state-reset moves it aside)"
# The file names of a state directory: the manifest (every scalar) and one .npy file per array.
MANIFEST = "manifest.json"


def array_file(part: str, key: str) -> str:
    """The file that holds array ``key`` of state part ``part``: ``part.key.npy``."""
    return f"{part}.{key}.npy"


# Scalar kinds: the Python types a JSON value of that kind may have (bool is never an int or a number).
KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,), "int?": (int, type(None)), "num": (int, float), "num?": (int, float, type(None)),
    "bool": (bool,), "dict": (dict,), "str": (str,)}
# Two more: "grid", a list of two ints >= 1; "pair?", the same or None.
_PAIRS = ("grid", "pair?")


def _is_kind(value: Any, kind: str) -> bool:
    if kind in _PAIRS:
        return (kind == "pair?" and value is None) or (isinstance(value, list) and len(value) == 2
                                                       and all(type(v) is int and v >= 1 for v in value))
    if not isinstance(value, KINDS[kind]) or (kind != "bool" and type(value) is bool):
        return False
    # a saved count or index fits a 64-bit integer (a larger one in a JSON manifest is corruption)
    return type(value) is not int or -2 ** 63 <= value < 2 ** 63


class StatePart:
    """Part ``name`` of the state saved in ``directory``: checks its scalars and arrays, and names the
    manifest field or ``.npy`` file in the :class:`~streamad.errors.StateError` it raises."""

    def __init__(self, directory: str | os.PathLike[str], name: str) -> None:
        self.directory, self.name = Path(directory), name

    def __repr__(self) -> str:
        return f"StatePart({str(self.directory)!r}, {self.name!r})"

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST

    def file(self, key: str) -> Path:
        return self.directory / array_file(self.name, key)

    def scalars(self, state: dict[str, Any], schema: dict[str, str]) -> None:
        """Every ``key: kind`` of ``schema`` (a kind of :data:`KINDS`, ``"grid"`` or ``"pair?"``) is in ``state``."""
        for key, kind in schema.items():
            value = state.get(key, ...)
            if not _is_kind(value, kind):
                raise StateError(f"{self.manifest}: {self.name}.{key} is "
                                 f"{'missing' if value is ... else repr(value)}, expected {kind}; {FIX}")

    def array(self, state: dict[str, Any], key: str, shape: tuple[int, ...], *dtypes: Any) -> np.ndarray:
        """The array ``state[key]``, which must have ``shape`` (-1: any length) and one of ``dtypes``."""
        array = state.get(key)
        if not isinstance(array, np.ndarray):
            raise StateError(f"{self.file(key)} is missing from the manifest: the state is incomplete; {FIX}")
        ok_shape = array.ndim == len(shape) and all(w in (-1, s) for w, s in zip(shape, array.shape))
        if not ok_shape or array.dtype not in [np.dtype(d) for d in dtypes]:
            want = "(" + ", ".join("n" if w == -1 else str(w) for w in shape) + ")"
            raise StateError(f"{self.file(key)} has shape {array.shape} and dtype {array.dtype}, but this state needs "
                             f"shape {want} and dtype {' or '.join(str(np.dtype(d)) for d in dtypes)}; {FIX}")
        return array

    def inconsistent(self, what: str) -> StateError:
        """The error for a state whose parts do not agree with each other or themselves."""
        return StateError(f"{self.directory}: inconsistent state ({what}); {FIX}")

    def require(self, parts: dict[str, Any], optional: bool = False) -> Any:
        """``parts[name]``, which must be a dict (or None if ``optional``)."""
        if self.name not in parts:
            raise StateError(f"{self.manifest}: state part {self.name!r} is missing; {FIX}")
        if not isinstance(parts[self.name], dict) and not (optional and parts[self.name] is None):
            raise StateError(f"{self.manifest}: state part {self.name!r} is not a dict; {FIX}")
        return parts[self.name]
