"""The HNSW nominal index: an hnswlib graph under the caller's labels (docs/DESIGN.md section 4).

:class:`HNSWIndex` (``kind="hnsw"``, the batch models' index) answers exactly while it holds fewer
than ``exact_below`` vectors and through an HNSW graph above that, with **true L2** distances
(hnswlib's ``l2`` space gives squared ones; we take the square root). Removed vectors are marked
deleted in the graph and their slots reused by later additions, so the graph never grows past the
largest number of vectors held at once (capacity grows geometrically on demand). Querying an empty
index raises ``ValueError`` (a distance of ``inf`` would silently turn into an alarm or a NaN downstream).

``NominalIndex``, this class's former name, still imports (with a ``DeprecationWarning``).

    >>> import numpy as np
    >>> idx = HNSWIndex(dim=2)
    >>> idx.add(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
    >>> d, lab = idx.query(np.array([[3.0, 4.0], [0.0, 1.0]], np.float32))
    >>> d[:, 0].tolist(), lab[:, 0].tolist()            # true L2, caller's labels
    ([0.0, 1.0], [9, 7])
    >>> idx.remove([9]); idx.query(np.array([[3.0, 4.0]], np.float32))[0].tolist()
    [[5.0]]
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, ClassVar

import hnswlib
import numpy as np

from streamad.config import IndexConfig
from streamad.index.base import BaseIndex, check_change, check_held, check_within, check_query
from streamad.index.exact import ExactIndex, exact_knn
from streamad.index.graph_state import check_graph_state, graph_from_state, graph_state
from streamad.index.slots import Slots, SlotViews
from streamad.state_schema import StatePart

__all__ = ["ExactIndex", "HNSWIndex", "exact_knn"]


class HNSWIndex(SlotViews, BaseIndex):
    """HNSW over labelled vectors with exact search below ``exact_below`` vectors.

    ``M``, ``ef_construction`` and ``ef`` (query breadth, raised to ``k`` when smaller) are hnswlib's
    parameters; ``seed`` seeds the graph's level generator. The graph is built when the index first
    holds ``exact_below`` vectors and is kept up to date from then on. Insertions run on
    ``insert_threads`` threads (default 1: the same sequence of calls gives the same graph; more, or 0
    for all cores, is faster but not reproducible); queries use ``threads`` threads (0: all cores).
    The graph's element labels are internal slots; the caller's labels are mapped in and out, so a
    removed label can be added again at any time. hnswlib changes its graph in place, so a change and a
    query exclude each other (a lock): a concurrent query sees the index before or after a change.
    """

    kind: ClassVar[str] = "hnsw"

    def __init__(self, dim: int, M: int = 16, ef_construction: int = 100, ef: int = 64,
                 exact_below: int = 2000, seed: int = 0, threads: int = 0, initial_capacity: int = 1024,
                 insert_threads: int = 1) -> None:
        for name, value, low in (("M", M, 2), ("ef_construction", ef_construction, 1), ("ef", ef, 1),
                                 ("exact_below", exact_below, 0), ("threads", threads, 0),
                                 ("insert_threads", insert_threads, 0),
                                 ("initial_capacity", initial_capacity, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"HNSWIndex.{name} must be an int >= {low}, got {value!r}")
        self._slots = Slots(dim, initial_capacity)
        self.dim = self._slots.dim
        self.M, self.ef_construction, self.ef = int(M), int(ef_construction), int(ef)
        self.exact_below, self.seed, self.threads = int(exact_below), int(seed), int(threads)
        self.insert_threads = int(insert_threads)
        self._hnsw: hnswlib.Index | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, dim: int, config: IndexConfig, seed: int = 0) -> HNSWIndex:
        """The index an :class:`~streamad.config.IndexConfig` describes (batch and stream build theirs here)."""
        return cls(dim=dim, M=config.M, ef_construction=config.ef_construction, ef=config.ef,
                   exact_below=config.exact_below, seed=seed, threads=config.threads,
                   insert_threads=config.insert_threads)

    def __len__(self) -> int:
        return len(self._slots)

    def state_dict(self) -> dict[str, Any]:
        """``kind``, parameters, slots (:meth:`Slots.state_dict`, free list in order) and, once built, the
        graph (``hnsw.*``; see :func:`streamad.index.graph_state.graph_state`): JSON scalars and numpy arrays.

            >>> idx = HNSWIndex(dim=2, exact_below=0)
            >>> idx.add(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)); idx.remove([7])
            >>> back = HNSWIndex.from_state(idx.state_dict())
            >>> back.uses_graph, back.labels().tolist(), back.query(np.zeros((1, 2), np.float32))[0].tolist()
            (True, [9], [[5.0]])
        """
        with self._lock:
            slots = self._slots.state_dict()
            # the order of format version 1 (docs/persistence.md); "kind" came later (absent: HNSW)
            state: dict[str, Any] = {
                "dim": slots.pop("dim"), "M": self.M, "ef_construction": self.ef_construction, "ef": self.ef,
                "exact_below": self.exact_below, "seed": self.seed, "threads": self.threads,
                "insert_threads": self.insert_threads, "capacity": slots.pop("capacity"), "used": slots.pop("used"),
                "graph": self._hnsw is not None, "kind": self.kind, **slots}
            if self._hnsw is not None:
                state.update({f"hnsw.{k}": v for k, v in graph_state(self._hnsw, self.seed).items()})
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HNSWIndex:
        """The index ``state_dict`` described (the graph restored, not rebuilt)."""
        idx = cls(dim=state["dim"], M=state["M"], ef_construction=state["ef_construction"], ef=state["ef"],
                  exact_below=state["exact_below"], seed=state["seed"], threads=state["threads"],
                  initial_capacity=state["capacity"], insert_threads=state["insert_threads"])
        idx._slots = Slots.from_state(state)
        if state["graph"]:
            idx._hnsw = graph_from_state({k[5:]: v for k, v in state.items() if k.startswith("hnsw.")})
            idx._hnsw.set_ef(idx.ef)
        return idx

    # The scalars of ``state_dict`` and their kinds (streamad.state_schema); ``check_state`` checks the rest.
    # ("kind" is checked apart: states saved before it existed lack it, and were HNSW.)
    STATE_SCALARS = {"M": "int", "ef_construction": "int", "ef": "int", "exact_below": "int", "seed": "int",
                     "threads": "int", "insert_threads": "int", "graph": "bool", **Slots.STATE_SCALARS}

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a
        ``state_dict`` that :meth:`from_state` cannot use: scalar kinds, array shapes and dtypes, slot
        bookkeeping that disagrees with itself, a graph that does not fit the slots.

            >>> idx = HNSWIndex(dim=2)
            >>> idx.add(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
            >>> state = idx.state_dict(); HNSWIndex.check_state(state)
            >>> state["slot_of_labels"] = np.array([7, 8]); HNSWIndex.check_state(state)
            Traceback (most recent call last):
            ...
            streamad.errors.StateError: .: inconsistent state (the nominal index's slot bookkeeping does not agree ...
        """
        where = where or StatePart(".", "index")
        if state.get("kind", cls.kind) != cls.kind:
            raise where.inconsistent(f"HNSW index of kind {state.get('kind')!r}")
        where.scalars(state, cls.STATE_SCALARS)
        Slots.check_state(state, where)
        if state["graph"]:
            check_graph_state(state, state["dim"], state["capacity"], where, prefix="hnsw.")

    @classmethod
    def state_labels(cls, state: dict[str, Any]) -> np.ndarray:
        """The labels the state holds."""
        return np.asarray(state["slot_of_labels"], np.int64)

    @property
    def uses_graph(self) -> bool:
        """Whether queries currently go through the HNSW graph (else exact search)."""
        return self._hnsw is not None and len(self) >= self.exact_below

    @property
    def capacity(self) -> int:
        """Slots allocated (graph elements included deleted ones): never more than needed at once, x2."""
        return self._slots.capacity

    @property
    def graph_elements(self) -> int:
        """Elements in the HNSW graph, deleted ones included (0 before the graph is built)."""
        return 0 if self._hnsw is None else int(self._hnsw.get_current_count())

    def apply(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray, replace: bool = False) -> None:
        """Remove ``removed`` (marked deleted in the graph, their slots reused later), then add ``vectors``
        under ``added``: one change (see :meth:`BaseIndex.apply`)."""
        added, vectors, removed = check_change(added, vectors, removed, self.dim)
        with self._lock:
            check_held(self._slots.is_held, added, removed, replace)
            if len(removed):
                slots = self._slots.release(removed)
                if self._hnsw is not None:
                    for s in slots.tolist():
                        self._hnsw.mark_deleted(s)
            if not len(added):
                return
            slots, _ = self._slots.assign(added, vectors)
            if self._hnsw is None:
                if len(self) >= self.exact_below:
                    self._build()
                return
            self._ensure_graph_capacity()
            # A reused slot is a deleted graph element: add_items un-deletes it and replaces its vector.
            self._hnsw.add_items(vectors, slots, num_threads=self.insert_threads or -1)

    def query(self, vectors: np.ndarray, k: int = 1,
              within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float32 true L2, labels (m, k) int64) of the k nearest, nearest first
        (``within`` is checked and otherwise ignored: every answer is the nearest)."""
        with self._lock:
            q = check_query(len(self), self.dim, vectors, k)
            check_within(within, len(q), int(k))
            if not self.uses_graph:
                live = self._slots.live_slots()
                dist, rows = exact_knn(self._slots.vectors[live], q, int(k))
                return dist, self._slots.label_of_slot[live[rows]]
            assert self._hnsw is not None
            self._hnsw.set_ef(max(self.ef, int(k)))
            try:
                slots, sq = self._hnsw.knn_query(q, k=int(k), num_threads=self.threads or -1)
            except RuntimeError:  # the graph search found fewer than k (k near len, many deleted): exact search
                live = self._slots.live_slots()
                dist, rows = exact_knn(self._slots.vectors[live], q, int(k))
                return dist, self._slots.label_of_slot[live[rows]]
            return (np.sqrt(np.maximum(sq, 0.0)).astype(np.float32),
                    self._slots.label_of_slot[slots.astype(np.int64)])

    def _ensure_graph_capacity(self) -> None:
        assert self._hnsw is not None
        if self._slots.used > self._hnsw.get_max_elements():
            self._hnsw.resize_index(self._slots.capacity)

    def _build(self) -> None:
        index = hnswlib.Index(space="l2", dim=self.dim)
        index.init_index(max_elements=self._slots.capacity, M=self.M, ef_construction=self.ef_construction,
                         random_seed=self.seed)
        used = self._slots.used
        index.add_items(self._slots.vectors[:used], np.arange(used), num_threads=self.insert_threads or -1)
        dead = np.flatnonzero(~self._slots.live[:used])
        for s in dead.tolist():
            index.mark_deleted(s)
        index.set_ef(self.ef)
        self._hnsw = index


def deprecated_name(module: str, name: str) -> Any:
    """A module ``__getattr__``'s answer: ``NominalIndex``, the former name of :class:`HNSWIndex` ("nominal
    index" is the concept), with a ``DeprecationWarning`` naming the new one; an AttributeError otherwise."""
    if name == "NominalIndex":
        warnings.warn(f"{module}.NominalIndex is deprecated: the HNSW index is now called HNSWIndex "
                      "(from streamad.index import HNSWIndex)", DeprecationWarning, stacklevel=3)
        return HNSWIndex
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return deprecated_name(__name__, name)
