"""Exact nearest neighbours: the brute-force search (BLAS candidates, float64 re-ranking) and the
index built on it, the oracle every approximate answer is measured against (docs/DESIGN.md section 4)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from streamad.config import IndexConfig
from streamad.core.association import squared_distances
from streamad.index.base import BaseIndex, check_change, check_held, check_within, check_query
from streamad.index.slots import Slots, SlotViews
from streamad.state_schema import StatePart

# Extra candidates taken from the float32 expansion before the exact float64 re-ranking.
_RERANK_EXTRA = 8


def exact_knn(gallery: np.ndarray, queries: np.ndarray, k: int = 1,
              chunk: int = 1024, device: str = "numpy") -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest rows of ``gallery`` (n, d) for each query (m, d): (distances, row indices).

    Candidates come from the ``|q|^2 + |g|^2 - 2 q.g`` expansion in float32 (BLAS, in chunks of
    ``chunk`` queries); the best ``k + 8`` are re-ranked by distances recomputed directly in float64,
    so the result is exact but for near-ties below float32 resolution. Ties go to the lower row.
    ``device`` other than ``"numpy"`` runs the same two steps with torch on that device (``"cpu"``,
    ``"cuda"``): the GPU path for a nominal set that fits in its memory.

        >>> g = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], np.float32)
        >>> d, i = exact_knn(g, np.array([[0.9, 0.0]], np.float32), k=2)
        >>> i.tolist(), [round(float(v), 3) for v in d[0]]
        ([[1, 0]], [0.1, 0.9])
        >>> exact_knn(g, np.array([[0.9, 0.0]], np.float32), k=2, device="cpu")[1].tolist()
        [[1, 0]]
    """
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, m = len(gallery), len(queries)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for a gallery of {n} vectors, got {k}")
    if device != "numpy":
        return _exact_knn_torch(gallery, queries, k, chunk, device)
    kk = min(n, k + _RERANK_EXTRA)
    out_d = np.empty((m, k), np.float32)
    out_i = np.empty((m, k), np.int64)
    for start in range(0, m, chunk):
        q = queries[start:start + chunk]
        sq = squared_distances(q, gallery)
        cand = np.argpartition(sq, kk - 1, axis=1)[:, :kk] if kk < n else np.broadcast_to(np.arange(n), sq.shape)
        diff = gallery[cand].astype(np.float64) - q[:, None, :].astype(np.float64)
        dist = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
        order = np.lexsort((cand, dist), axis=1)[:, :k]  # by distance, then by row
        out_d[start:start + len(q)] = np.take_along_axis(dist, order, axis=1)
        out_i[start:start + len(q)] = np.take_along_axis(cand, order, axis=1)
    return out_d, out_i


class ExactIndex(SlotViews, BaseIndex):
    """Brute-force nearest neighbours (``kind="exact"``): the oracle every approximate answer is measured against.

    ``device`` other than ``"numpy"`` searches with torch on that device (:func:`exact_knn`). A change
    and a query exclude each other (a lock), so a concurrent query sees the index before or after a change.

        >>> idx = ExactIndex(dim=1)
        >>> idx.add([3, 4], np.array([[0.0], [2.0]]))
        >>> idx.query(np.array([[1.5]]))
        (array([[0.5]], dtype=float32), array([[4]]))
    """

    kind: ClassVar[str] = "exact"

    def __init__(self, dim: int, chunk: int = 1024, device: str = "numpy") -> None:
        if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"ExactIndex.chunk must be an int >= 1, got {chunk!r}")
        self._slots = Slots(dim)
        self.dim = self._slots.dim
        self.chunk, self.device = int(chunk), str(device)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, dim: int, config: IndexConfig, seed: int = 0) -> ExactIndex:
        """The exact index an :class:`~streamad.config.IndexConfig` describes (its ``device``; no randomness)."""
        return cls(dim, device=config.device)

    def __len__(self) -> int:
        return len(self._slots)

    def apply(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray, replace: bool = False) -> None:
        """Remove ``removed``, then add ``vectors`` under ``added``: one change (see :meth:`BaseIndex.apply`)."""
        added, vectors, removed = check_change(added, vectors, removed, self.dim)
        with self._lock:
            check_held(self._slots.is_held, added, removed, replace)
            if len(removed):
                self._slots.release(removed)
            if len(added):
                self._slots.assign(added, vectors)

    def query(self, vectors: np.ndarray, k: int = 1,
              within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float32 true L2, labels (m, k) int64) of the k nearest, nearest first
        (``within`` is checked and otherwise ignored: every answer is the nearest)."""
        with self._lock:
            q = check_query(len(self), self.dim, vectors, k)
            check_within(within, len(q), int(k))
            live = self._slots.live_slots()
            dist, rows = exact_knn(self._slots.vectors[live], q, int(k), self.chunk, self.device)
            return dist, self._slots.label_of_slot[live[rows]]

    # ------------------------------------------------------------------ state
    STATE_SCALARS = {"kind": "str", "chunk": "int", "device": "str", **Slots.STATE_SCALARS}

    def state_dict(self) -> dict[str, Any]:
        """``kind``, ``chunk``, ``device`` and the slots (:meth:`Slots.state_dict`): JSON scalars and arrays.

            >>> idx = ExactIndex(dim=2); idx.add([7, 9], np.array([[0.0, 0.0], [3.0, 4.0]])); idx.remove([7])
            >>> state = idx.state_dict(); ExactIndex.check_state(state); ExactIndex.state_labels(state).tolist()
            [9]
            >>> ExactIndex.from_state(state).query(np.zeros((1, 2)))[0].tolist()
            [[5.0]]
        """
        with self._lock:
            return {"kind": self.kind, "chunk": self.chunk, "device": self.device, **self._slots.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ExactIndex:
        """The index ``state_dict`` described."""
        idx = cls(int(state["dim"]), chunk=int(state["chunk"]), device=str(state["device"]))
        idx._slots = Slots.from_state(state)
        return idx

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`) a ``state_dict`` :meth:`from_state` cannot use."""
        where = where or StatePart(".", "index")
        where.scalars(state, cls.STATE_SCALARS)
        if state["kind"] != cls.kind or state["chunk"] < 1:
            raise where.inconsistent(f"exact index of kind {state['kind']!r}, chunk {state['chunk']}")
        Slots.check_state(state, where)

    @classmethod
    def state_labels(cls, state: dict[str, Any]) -> np.ndarray:
        """The labels the state holds."""
        return np.asarray(state["slot_of_labels"], np.int64)


def _exact_knn_torch(gallery: np.ndarray, queries: np.ndarray, k: int, chunk: int,
                     device: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_knn` with torch tensors on ``device`` (float32 candidates, float64 re-ranking)."""
    import torch

    n = len(gallery)
    kk = min(n, k + _RERANK_EXTRA)
    out_d = np.empty((len(queries), k), np.float32)
    out_i = np.empty((len(queries), k), np.int64)
    with torch.no_grad():
        g = torch.as_tensor(gallery, device=device)
        g_sq = (g * g).sum(1)
        for start in range(0, len(queries), chunk):
            q = torch.as_tensor(queries[start:start + chunk], device=device)
            sq = torch.addmm(g_sq[None, :], q, g.T, alpha=-2.0)  # |g|^2 - 2 q.g (|q|^2: the same per row)
            cand = torch.topk(sq, kk, dim=1, largest=False).indices
            diff = g[cand].double() - q[:, None, :].double()
            dist = diff.pow(2).sum(-1).sqrt()
            order = torch.argsort(dist + 0.0, dim=1, stable=True)  # by distance; ties: the candidate order
            cand_sorted = torch.gather(cand, 1, order)
            dist_sorted = torch.gather(dist, 1, order)
            # ties go to the lower row, as in numpy: sort equal distances by row
            rows = cand_sorted.cpu().numpy()
            dists = dist_sorted.cpu().numpy()
            pick = np.lexsort((rows, dists), axis=1)[:, :k]
            out_d[start:start + len(q)] = np.take_along_axis(dists, pick, axis=1)
            out_i[start:start + len(q)] = np.take_along_axis(rows, pick, axis=1)
    return out_d, out_i
