"""Exact nearest neighbours: the brute-force search (BLAS candidates, float64 re-ranking) and the
index built on it, the oracle every approximate answer is measured against (docs/DESIGN.md section 4)."""

from __future__ import annotations

import numpy as np

from streamad.core.association import squared_distances
from streamad.index.slots import Slots, check_query

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
