"""Exact nearest neighbours: the brute-force search (BLAS candidates, float64 re-ranking) and the
index built on it, the oracle every approximate answer is measured against (docs/DESIGN.md section 4)."""

from __future__ import annotations

import numpy as np

from streamad.core.association import squared_distances
from streamad.index.slots import Slots, check_query

# Extra candidates taken from the float32 expansion before the exact float64 re-ranking.
_RERANK_EXTRA = 8


def exact_knn(gallery: np.ndarray, queries: np.ndarray, k: int = 1,
              chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest rows of ``gallery`` (n, d) for each query (m, d): (distances, row indices).

    Candidates come from the ``|q|^2 + |g|^2 - 2 q.g`` expansion in float32 (BLAS, in chunks of
    ``chunk`` queries); the best ``k + 8`` are re-ranked by distances recomputed directly in float64,
    so the result is exact but for near-ties below float32 resolution. Ties go to the lower row.

        >>> g = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], np.float32)
        >>> d, i = exact_knn(g, np.array([[0.9, 0.0]], np.float32), k=2)
        >>> i.tolist(), [round(float(v), 3) for v in d[0]]
        ([[1, 0]], [0.1, 0.9])
    """
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, m = len(gallery), len(queries)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for a gallery of {n} vectors, got {k}")
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


class ExactIndex:
    """Brute-force nearest neighbours with the same interface as :class:`NominalIndex` (the oracle).

        >>> idx = ExactIndex(dim=1)
        >>> idx.add([3, 4], np.array([[0.0], [2.0]]))
        >>> idx.query(np.array([[1.5]]))
        (array([[0.5]], dtype=float32), array([[4]]))
    """

    def __init__(self, dim: int, chunk: int = 1024) -> None:
        self._slots = Slots(dim)
        self.dim = self._slots.dim
        self.chunk = chunk

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, label: int) -> bool:
        return int(label) in self._slots.slot_of

    def labels(self) -> np.ndarray:
        """The labels held, in slot order."""
        return self._slots.label_of_slot[self._slots.live_slots()]

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert ``vectors`` (n, dim) under ``labels`` (n,); a label already held gets the new vector."""
        labels, vectors = self._slots.check(labels, vectors)
        if len(labels):
            self._slots.assign(labels, vectors)

    def remove(self, labels: np.ndarray) -> None:
        """Remove ``labels``; a label that is not held raises ``KeyError`` (nothing is removed then)."""
        labels, _ = self._slots.check(labels, None)
        if len(labels):
            self._slots.release(labels)

    def query(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float32 true L2, labels (m, k) int64) of the k nearest, nearest first."""
        q = check_query(len(self), self.dim, vectors, k)
        live = self._slots.live_slots()
        dist, rows = exact_knn(self._slots.vectors[live], q, k, self.chunk)
        return dist, self._slots.label_of_slot[live[rows]]
