"""Save and restore an hnswlib graph exactly: its state as JSON scalars and numpy arrays, with the level
generator fast-forwarded so that a restored graph grows as the never-stopped one would (docs/persistence.md).
"""

from __future__ import annotations

import warnings
from typing import Any

import hnswlib
import numpy as np

from streamad.errors import StateError

_FIX = "restore it from a backup, or start fresh (streamad watch: --state-reset moves it aside)"


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
                         f"version; {_FIX}") from None
    return index
