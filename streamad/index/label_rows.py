"""Each held label's row, for the IVF index's writer: a compiled hash map (numba's typed dictionary) whose bulk
operations run without the interpreter lock.

The IVF index finds the row of every label a change removes, and rewrites the map whole after each fresh
layout. With a Python ``dict`` the rewrite was one C call that held the interpreter lock throughout (11 /
21 / 70 ms for 45,000 / 60,000 / 200,000 labels), the top holder of the lock among the learners of a
four-camera ``serve`` on threads (py-spy ``--gil``: ``IVFIndex.apply`` and ``_publish``). Here every
operation takes arrays and loops in compiled code with the lock released, so the cameras' scorers run
meanwhile. Only the index's writer uses it (readers go through the published version's labels).

    >>> import numpy as np
    >>> m = LabelRows(np.array([10, 20, 30]), np.array([0, 1, 2]))
    >>> m.contains(np.array([20, 40])).tolist(), m.rows(np.array([30, 10])).tolist()
    ([True, False], [2, 0])
    >>> m.remove(np.array([20])); m.put(np.array([40]), np.array([1])); len(m), m.rows(np.array([40])).tolist()
    (3, [1])
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.typed import Dict

__all__ = ["LabelRows", "warm"]


@numba.njit(nogil=True, cache=True)
def _build(labels: np.ndarray, rows: np.ndarray) -> Dict:  # pragma: no cover - compiled
    d = Dict.empty(key_type=types.int64, value_type=types.int64)
    for i in range(len(labels)):
        d[labels[i]] = rows[i]
    return d


@numba.njit(nogil=True, cache=True)
def _contains(d: Dict, labels: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(len(labels), np.bool_)
    for i in range(len(labels)):
        out[i] = labels[i] in d
    return out


@numba.njit(nogil=True, cache=True)
def _rows(d: Dict, labels: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(len(labels), np.int64)
    for i in range(len(labels)):
        out[i] = d.get(labels[i], -1)
    return out


@numba.njit(nogil=True, cache=True)
def _remove(d: Dict, labels: np.ndarray) -> int:  # pragma: no cover - compiled
    missing = 0
    for i in range(len(labels)):
        if labels[i] in d:
            del d[labels[i]]
        else:
            missing += 1
    return missing


@numba.njit(nogil=True, cache=True)
def _put(d: Dict, labels: np.ndarray, rows: np.ndarray) -> None:  # pragma: no cover - compiled
    for i in range(len(labels)):
        d[labels[i]] = rows[i]


def _int64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, np.int64).reshape(-1)


class LabelRows:
    """Label -> row, int64 both (see the module docstring). ``labels`` and ``rows`` of the same length build
    it (none: empty; a repeated label keeps its last row). Not thread-safe: one writer."""

    def __init__(self, labels: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        labels = _int64(np.zeros(0) if labels is None else labels)
        rows = _int64(np.zeros(0) if rows is None else rows)
        if len(labels) != len(rows):
            raise ValueError(f"LabelRows needs one row per label, got {len(labels)} labels and {len(rows)} rows")
        self._map = _build(labels, rows)

    def __len__(self) -> int:
        return len(self._map)

    def contains(self, labels: np.ndarray) -> np.ndarray:
        """A bool mask: which of ``labels`` are held."""
        return _contains(self._map, _int64(labels))

    def rows(self, labels: np.ndarray) -> np.ndarray:
        """The rows of ``labels`` (int64); ``KeyError`` naming one that is not held."""
        labels = _int64(labels)
        out = _rows(self._map, labels)
        if (out < 0).any():
            raise KeyError(f"label {int(labels[np.argmax(out < 0)])} is not held")
        return out

    def remove(self, labels: np.ndarray) -> None:
        """Forget ``labels`` (``KeyError`` if one is not held; the others are forgotten all the same)."""
        missing = _remove(self._map, _int64(labels))
        if missing:
            raise KeyError(f"{missing} label(s) to remove are not held")

    def put(self, labels: np.ndarray, rows: np.ndarray) -> None:
        """Set each label's row (a held label gets the new row)."""
        labels, rows = _int64(labels), _int64(rows)
        if len(labels) != len(rows):
            raise ValueError(f"LabelRows.put needs one row per label, got {len(labels)} labels and {len(rows)} rows")
        _put(self._map, labels, rows)


def warm() -> None:
    """Load (or compile) the map's kernels now rather than at the first change."""
    m = LabelRows(np.arange(3), np.arange(3))
    m.contains(np.arange(2))
    m.rows(np.arange(2))
    m.remove(np.arange(1))
    m.put(np.arange(1), np.arange(1))
