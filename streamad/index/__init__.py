"""The nominal index: nearest trusted patch for every query patch (docs/DESIGN.md section 4).

Every index implements one contract, :class:`~streamad.index.base.BaseIndex`: ``apply(added,
vectors, removed)`` (one change; a concurrent reader sees all of it or none), ``query(vectors, k)``
(true L2 distances and the caller's labels), ``len()``, ``dim``, ``labels()``, ``vectors()``, ``in``,
and a saved state (``state_dict`` / ``check_state`` / ``from_state``). The kinds, by
:class:`~streamad.config.IndexConfig` ``kind``:

- ``"ivf"``, :class:`~streamad.index.ivf.IVFIndex`: inverted lists, cheap to change and read as
  atomic snapshots (the streaming engine's default: a sliding window changes hundreds of patches per
  admitted frame);
- ``"hnsw"``, :class:`~streamad.index.hnsw.HNSWIndex`: an hnswlib HNSW graph (the batch models' index);
- ``"exact"``, :class:`~streamad.index.exact.ExactIndex`: brute force, the oracle every answer is
  measured against.

:func:`make_index` builds the one an ``IndexConfig`` names; :func:`index_from_state` rebuilds any
index from its saved state (by the state's ``kind``). :data:`INDEX_CLASSES` is the one list of kinds:
a new index is added there (and to ``streamad.config.INDEX_KINDS``), and ``tests/test_index_contract.py``
runs the conformance suite over it.

    >>> idx = make_index(2, IndexConfig(kind="ivf"))
    >>> type(idx).__name__, idx.kind
    ('IVFIndex', 'ivf')
    >>> idx.add([1, 2], [[0.0, 0.0], [3.0, 4.0]])
    >>> back = index_from_state(idx.state_dict())
    >>> type(back).__name__, back.query([[0.0, 1.0]])
    ('IVFIndex', (array([[1.]], dtype=float32), array([[1]])))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamad.config import INDEX_KINDS, IndexConfig
from streamad.index.base import BaseIndex
from streamad.index.exact import ExactIndex, exact_knn
from streamad.index.hnsw import HNSWIndex, deprecated_name
from streamad.index.ivf import IVFIndex
from streamad.state_schema import StatePart

__all__ = ["INDEX_CLASSES", "BaseIndex", "ExactIndex", "HNSWIndex", "IVFIndex", "check_index_state", "exact_knn",
           "index_class", "index_from_state", "index_state_labels", "make_index"]

#: Every kind of nominal index, by name (``IndexConfig.kind``, a saved state's ``"kind"``).
INDEX_CLASSES: dict[str, type[BaseIndex]] = {cls.kind: cls for cls in (ExactIndex, HNSWIndex, IVFIndex)}
if sorted(INDEX_CLASSES) != sorted(INDEX_KINDS):  # pragma: no cover - a developer's slip, caught on import
    raise ImportError(f"streamad.config.INDEX_KINDS {INDEX_KINDS} and the index classes {tuple(INDEX_CLASSES)} differ")

# A saved state without "kind" was written before the IVF index existed, when HNSW was the only kind.
_LEGACY_KIND = "hnsw"


def index_class(kind: str) -> type[BaseIndex]:
    """The class of the index ``kind`` names.

        >>> index_class("hnsw").__name__
        'HNSWIndex'
        >>> index_class("faiss")
        Traceback (most recent call last):
        ...
        ValueError: unknown nominal index kind 'faiss': one of ('exact', 'hnsw', 'ivf')
    """
    try:
        return INDEX_CLASSES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown nominal index kind {kind!r}: one of {tuple(sorted(INDEX_CLASSES))}") from None


def make_index(dim: int, config: IndexConfig, seed: int = 0) -> BaseIndex:
    """The index ``config.kind`` names, built from ``config`` for ``dim``-dimensional vectors.

        >>> type(make_index(4, IndexConfig(kind="exact"))).__name__
        'ExactIndex'
    """
    return index_class(config.kind).from_config(dim, config, seed=seed)


def _state_class(state: dict[str, Any], where: StatePart | None = None) -> type[BaseIndex]:
    kind = state.get("kind", _LEGACY_KIND)
    if not isinstance(kind, str) or kind not in INDEX_CLASSES:  # a corrupted state may hold any JSON here
        where = where or StatePart(".", "index")
        raise where.inconsistent(f"a nominal index of unknown kind {kind!r}, not one of {tuple(sorted(INDEX_CLASSES))}")
    return INDEX_CLASSES[kind]


def check_index_state(state: dict[str, Any], where: StatePart | None = None) -> type[BaseIndex]:
    """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a saved index
    state that :func:`index_from_state` cannot use; returns the class that will rebuild it.

        >>> check_index_state({"kind": "annoy"})
        Traceback (most recent call last):
        ...
        streamad.errors.StateError: .: inconsistent state (a nominal index of unknown kind 'annoy', ...
    """
    cls = _state_class(state, where)
    cls.check_state(state, where)
    return cls


def index_from_state(state: dict[str, Any]) -> BaseIndex:
    """The index a ``state_dict`` described, of the class its ``"kind"`` names (check it first:
    :func:`check_index_state`)."""
    return _state_class(state).from_state(state)


def index_state_labels(state: dict[str, Any]) -> np.ndarray:
    """The labels a checked saved index state holds, whatever its kind (without building the index)."""
    return _state_class(state).state_labels(state)


def __getattr__(name: str) -> Any:
    """``NominalIndex``: the former name of :class:`HNSWIndex` (deprecated, with a warning)."""
    return deprecated_name(__name__, name)
