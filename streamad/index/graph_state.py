"""Save and restore an hnswlib graph exactly: its state as JSON scalars and numpy arrays, with the level
generator fast-forwarded so that a restored graph grows as the never-stopped one would (docs/persistence.md).
"""

from __future__ import annotations

import warnings
from typing import Any

import hnswlib
import numpy as np

from streamad.errors import StateError
from streamad.state_schema import FIX, StatePart

# The scalars of a saved graph (streamad.state_schema kinds) that the checks below rely on.
GRAPH_SCALARS = {"space": "str", "dim": "int", "cur_element_count": "int", "max_elements": "int",
                 "size_data_per_element": "int", "size_links_per_element": "int", "seed": "int"}


def fast_forward_seed(seed: int, n: int) -> int:
    """The seed that starts hnswlib's level generator (``std::minstd_rand0``, two draws per new element)
    where it is after ``n`` elements were added to a graph made with ``seed``.

        >>> fast_forward_seed(0, 0), fast_forward_seed(0, 1)     # seed 0 is 1 for minstd; 16807 ** 2
        (1, 282475249)
    """
    m = 2 ** 31 - 1
    return (seed % m or 1) * pow(16807, 2 * n, m) % m


_RESUMES_EXACTLY: bool | None = None


def _probe(n: int = 200, seed: int = 12345) -> bool:
    """Whether a graph restored with the fast-forwarded seed draws the levels the original would."""
    x = np.random.default_rng(0).random((2 * n, 2)).astype(np.float32)
    a = hnswlib.Index(space="l2", dim=2)
    a.init_index(max_elements=2 * n, M=4, ef_construction=8, random_seed=seed)
    a.add_items(x[:n], np.arange(n), num_threads=1)
    state = dict(a.__getstate__()[0])
    state["seed"] = fast_forward_seed(seed, n)
    b = hnswlib.Index.__new__(hnswlib.Index)
    b.__setstate__((state,))
    a.add_items(x[n:], np.arange(n, 2 * n), num_threads=1)
    b.add_items(x[n:], np.arange(n, 2 * n), num_threads=1)
    return bool(np.array_equal(a.__getstate__()[0]["element_levels"], b.__getstate__()[0]["element_levels"]))


def levels_resume_exactly() -> bool:
    """Checked once per process (:func:`_probe`): if False, a one-time warning says a restored graph may
    differ from the never-stopped one, and states are saved with the plain seed."""
    global _RESUMES_EXACTLY
    if _RESUMES_EXACTLY is None:
        try:
            _RESUMES_EXACTLY = _probe()
        except Exception:  # noqa: BLE001 - a failed probe means "not exact"
            _RESUMES_EXACTLY = False
        if not _RESUMES_EXACTLY:
            warnings.warn("hnswlib's level generator cannot be fast-forwarded with this build: after a restart, "
                          "new HNSW graph elements get other levels than in a never-stopped engine, so HNSW answers "
                          "may differ within its recall", RuntimeWarning, stacklevel=3)
    return _RESUMES_EXACTLY


def graph_state(index: hnswlib.Index, seed: int) -> dict[str, Any]:
    """``index.__getstate__()``'s dict (JSON scalars and numpy arrays) with the level generator's seed
    fast-forwarded past the graph's elements, so a restored graph grows exactly as this one would.
    ``seed`` is the seed the graph was created with (whatever the restores since)."""
    state = dict(index.__getstate__()[0])
    n = int(state["cur_element_count"])
    state["seed"] = fast_forward_seed(seed, n) if levels_resume_exactly() else int(seed)
    return state


def graph_from_state(state: dict[str, Any]) -> hnswlib.Index:
    """The graph :func:`graph_state` described (``__setstate__`` on a fresh, uninitialised ``Index``)."""
    index = hnswlib.Index.__new__(hnswlib.Index)
    try:
        index.__setstate__((dict(state),))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise StateError(f"hnswlib cannot restore the saved HNSW graph ({exc}): it may come from another hnswlib "
                         f"version; {FIX}") from None
    return index


def check_graph_state(state: dict[str, Any], dim: int, capacity: int, where: StatePart,
                      prefix: str = "hnsw.") -> None:
    """Refuse (:class:`~streamad.errors.StateError`) a :func:`graph_state` (its keys under ``prefix`` in
    ``state``) that does not fit an index of ``dim`` and ``capacity``: its scalars, and the sizes of the
    arrays hnswlib will read (a wrong size would crash it, not raise)."""
    where.scalars(state, {prefix + k: kind for k, kind in GRAPH_SCALARS.items()})
    cur, top, gdim = (state[prefix + k] for k in ("cur_element_count", "max_elements", "dim"))
    if gdim != dim or state[prefix + "space"] != "l2" or not 0 <= cur <= top or cur > capacity:
        raise StateError(f"{where.directory}: the HNSW graph does not fit the index (dim {gdim} vs {dim}, "
                         f"{cur} of {top} elements, capacity {capacity}); {FIX}")
    where.array(state, prefix + "label_lookup_external", (cur,), np.uint64)
    where.array(state, prefix + "label_lookup_internal", (cur,), np.uint32)
    levels = where.array(state, prefix + "element_levels", (top,), np.int32)
    where.array(state, prefix + "data_level0", (cur * state[prefix + "size_data_per_element"],), np.int8)
    links = int(np.maximum(levels[:cur], 0).sum()) * state[prefix + "size_links_per_element"]
    where.array(state, prefix + "link_lists", (links,), np.int8)
