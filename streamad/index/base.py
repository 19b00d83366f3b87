"""The contract every nominal index implements, and the input checks they share (docs/DESIGN.md section 4).

A nominal index holds vectors under the caller's integer labels and answers "which held vectors are
nearest to these, and how far": **true L2** distances (float32, never squared) and the caller's labels
(int64), nearest first. Changes come as one call, :meth:`BaseIndex.apply` (labels to remove and labels
with vectors to add); a query running on another thread meanwhile answers from the index as it was
before the change or as it is after it, never from a half-applied one. An index saves itself as a dict
of JSON scalars and numpy arrays (:meth:`~BaseIndex.state_dict`, its ``"kind"`` naming the class) and
comes back from it (:meth:`~BaseIndex.check_state`, then :meth:`~BaseIndex.from_state`).

``tests/test_index_contract.py`` runs one conformance suite over every kind against brute force.

    >>> from streamad.index import make_index
    >>> from streamad.config import IndexConfig
    >>> idx = make_index(2, IndexConfig(kind="exact"))
    >>> idx.apply(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([], np.int64))
    >>> idx.query(np.array([[3.0, 3.0]]), k=2)
    (array([[1.       , 4.2426405]], dtype=float32), array([[9, 7]]))
    >>> idx.apply(np.array([5]), np.array([[3.0, 3.0]]), np.array([9]))  # one change: 9 out, 5 in
    >>> sorted(idx.labels().tolist()), len(idx), 9 in idx
    ([5, 7], 2, False)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import numpy as np

from streamad.config import IndexConfig
from streamad.state_schema import StatePart

__all__ = ["BaseIndex", "check_change", "check_held", "check_labels", "check_query", "check_vectors"]

_NO_LABELS = np.zeros(0, np.int64)


class BaseIndex(ABC):
    """The nominal index contract: labelled vectors, one-change updates, true-L2 queries, a saved state.

    Subclasses set :attr:`kind` (the name :class:`~streamad.config.IndexConfig` and saved states use)
    and :attr:`dim`, and implement the abstract methods; :meth:`add`, :meth:`remove` and ``in`` follow.
    Only one thread may change an index at a time; any number may query it meanwhile.
    """

    #: The name of this kind of index (``IndexConfig.kind``, a saved state's ``"kind"``).
    kind: ClassVar[str]
    #: The dimension of the vectors held.
    dim: int

    # ------------------------------------------------------------------ building
    @classmethod
    @abstractmethod
    def from_config(cls, dim: int, config: IndexConfig, seed: int = 0) -> BaseIndex:
        """The index ``config`` describes, for ``dim``-dimensional vectors (``seed``: its randomness)."""

    # ------------------------------------------------------------------ views
    @abstractmethod
    def __len__(self) -> int:
        """The number of vectors held."""

    @abstractmethod
    def labels(self) -> np.ndarray:
        """The labels held, (len,) int64, in the order of :meth:`vectors` (an order of the index's choosing)."""

    @abstractmethod
    def vectors(self) -> np.ndarray:
        """The vectors held, (len, dim) float32, in the order of :meth:`labels` (read-only)."""

    def __contains__(self, label: object) -> bool:
        return bool((self.labels() == int(label)).any())  # type: ignore[call-overload]

    # ------------------------------------------------------------------ changes
    @abstractmethod
    def apply(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray, replace: bool = False) -> None:
        """Remove the labels ``removed``, then add ``vectors`` (n, dim) under ``added`` (n,), as ONE change:
        a concurrent reader sees all of it or none of it.

        A label of ``removed`` that is not held raises ``KeyError``; a label of ``added`` that is held
        (and not removed by this change) raises ``ValueError`` unless ``replace``, and then gets the new
        vector. Bad shapes, repeated labels and non-finite vectors raise ``ValueError``. Nothing changes
        when it raises."""

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert ``vectors`` (n, dim) under ``labels`` (n,); a label already held gets the new vector."""
        self.apply(labels, vectors, _NO_LABELS, replace=True)

    def remove(self, labels: np.ndarray) -> None:
        """Remove ``labels``; a label that is not held raises ``KeyError`` (nothing is removed then)."""
        self.apply(_NO_LABELS, np.zeros((0, self.dim), np.float32), labels)

    # ------------------------------------------------------------------ queries
    @abstractmethod
    def query(self, vectors: np.ndarray, k: int = 1,
              within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(true L2 distances (m, k) float32, labels (m, k) int64) of the ``k`` held vectors nearest to
        each of ``vectors`` (m, dim), nearest first. An empty index, a bad shape or ``k`` outside
        ``[1, len]`` raises ``ValueError``.

        ``within`` (m,) (k = 1 only): the caller needs a query's answer only where it is at most
        ``within``, so an index may search less. Where the answer is at most ``within`` it is the one the
        query without ``within`` gives, or a nearer held vector (an approximate index that searches less
        may rank better); elsewhere it is any held vector farther than ``within``, or ``inf`` with label
        -1. An index that ignores ``within`` keeps this contract."""

    # ------------------------------------------------------------------ state
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`from_state` needs, as JSON scalars and numpy arrays, with ``"kind"``."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> BaseIndex:
        """The index a :meth:`state_dict` described (answers exactly as the saved one did)."""

    @classmethod
    @abstractmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a state
        that :meth:`from_state` cannot use."""

    @classmethod
    @abstractmethod
    def state_labels(cls, state: dict[str, Any]) -> np.ndarray:
        """The labels a checked :meth:`state_dict` holds (without building the index)."""


def check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-d int64 array of distinct integers, else ``ValueError``.

        >>> check_labels([3, 1]).tolist()
        [3, 1]
        >>> check_labels([[3]])
        Traceback (most recent call last):
        ...
        ValueError: labels must be a 1-d array of integers, got shape (1, 1) dtype int64
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or (lab.size and lab.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-d array of integers, got shape {lab.shape} dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if len(np.unique(lab)) != len(lab):
        raise ValueError(f"{name} must be distinct within one call")
    return lab


def check_vectors(vectors: Any, n: int, dim: int) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (n, dim) array of finite values, else ``ValueError``.

        >>> check_vectors(np.zeros((2, 3)), 2, 4)
        Traceback (most recent call last):
        ...
        ValueError: vectors must have shape (2, 4) to match the labels and dim, got (2, 3)
    """
    v = np.asarray(vectors)
    if v.ndim != 2 or v.shape != (n, dim):
        raise ValueError(f"vectors must have shape ({n}, {dim}) to match the labels and dim, got {v.shape}")
    if v.dtype.kind not in "fiu":
        raise ValueError(f"vectors must be numbers, got dtype {v.dtype}")
    v = np.ascontiguousarray(v, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError("vectors contain NaN or infinite values")
    return v


def check_change(added: Any, vectors: Any, removed: Any, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arguments of :meth:`BaseIndex.apply`, checked: (added labels, vectors float32, removed labels).

        >>> a, v, r = check_change([1, 2], np.ones((2, 3)), [], 3)
        >>> a.tolist(), v.dtype, r.dtype
        ([1, 2], dtype('float32'), dtype('int64'))
    """
    added = check_labels(added, "labels to add")
    removed = check_labels(removed, "labels to remove")
    return added, check_vectors(vectors, len(added), dim), removed


def check_query(n: int, dim: int, vectors: Any, k: Any) -> np.ndarray:
    """The query ``vectors`` (m, dim) as float32 for an index of ``n`` vectors; ``ValueError`` for an empty
    index, a bad shape or a ``k`` outside ``[1, n]``.

        >>> check_query(0, 2, np.zeros((1, 2)), 1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: the nominal index is empty: nothing is known to be nominal yet, ...
    """
    if n == 0:
        raise ValueError("the nominal index is empty: nothing is known to be nominal yet, so there is no "
                         "distance to report (wait until the detector is ready)")
    q = np.asarray(vectors)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"query vectors must have shape (m, {dim}), got {q.shape}")
    if q.dtype.kind not in "fiu":
        raise ValueError(f"query vectors must be numbers, got dtype {q.dtype}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of vectors held), got {k!r}")
    return np.ascontiguousarray(q, dtype=np.float32)


def check_within(within: Any, m: int, k: int, name: str = "within") -> np.ndarray | None:
    """``within`` as (m,) float64 bounds (None stays None); ``ValueError`` unless
    one bound >= 0 (or inf) per query, with k = 1.

        >>> check_within([1.0, np.inf], 2, 1).tolist()
        [1.0, inf]
        >>> check_within([-1.0], 1, 1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: within must hold one bound >= 0 (or inf) per query (1), got -1.0 for query 0
    """
    if within is None:
        return None
    bound = np.asarray(within, dtype=np.float64)
    if k != 1:
        raise ValueError(f"{name} bounds the nearest neighbour only: use it with k=1, got k={k}")
    if bound.shape != (m,):
        raise ValueError(f"{name} must hold one bound >= 0 (or inf) per query ({m}), got shape {bound.shape}")
    bad = np.flatnonzero(~(bound >= 0))  # negative or NaN
    if len(bad):
        raise ValueError(f"{name} must hold one bound >= 0 (or inf) per query ({m}), got {bound[bad[0]]} "
                         f"for query {bad[0]}")
    return bound


def check_held(is_held: Callable[[np.ndarray], np.ndarray], added: np.ndarray, removed: np.ndarray,
               replace: bool) -> np.ndarray:
    """The labels of ``added`` that the index keeps through the change (held and not removed: to be
    replaced). ``is_held(labels)`` says which labels the index holds (a bool mask). ``KeyError`` for a
    removed label that is not held, ``ValueError`` for a held label to add unless ``replace``.

        >>> held = lambda x: np.isin(x, [1, 2, 3])
        >>> check_held(held, np.array([3, 4]), np.array([1]), replace=True).tolist()
        [3]
        >>> check_held(held, np.array([], np.int64), np.array([5]), replace=False)
        Traceback (most recent call last):
        ...
        KeyError: '1 label(s) are not in the index, e.g. 5'
    """
    if len(removed):
        missing = removed[~is_held(removed)]
        if len(missing):
            raise KeyError(f"{len(missing)} label(s) are not in the index, e.g. {int(missing[0])}")
    again = added[is_held(added) & ~np.isin(added, removed)] if len(added) else _NO_LABELS
    if len(again) and not replace:
        raise ValueError(f"{len(again)} label(s) to add are held already, e.g. {int(again[0])} (remove them in "
                         "the same change, or pass replace=True)")
    return again
