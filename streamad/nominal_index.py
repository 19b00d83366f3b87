"""Nearest-nominal-patch search: hnswlib HNSW with an exact fallback for small sets.

    >>> import numpy as np
    >>> idx = NominalIndex(dim=2)
    >>> idx.add(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
    >>> d, lab = idx.query(np.array([[3.0, 4.0], [0.0, 1.0]], np.float32))
    >>> d[:, 0].tolist(), lab[:, 0].tolist()            # true L2, caller's labels
    ([0.0, 1.0], [9, 7])
"""

from __future__ import annotations

import hnswlib
import numpy as np
import torch


class NominalIndex:
    """Labelled vectors; ``query`` returns true L2 distances and labels of the k nearest."""

    def __init__(self, dim: int, M: int = 16, ef_construction: int = 100, ef: int = 64,
                 exact_below: int = 2000, seed: int = 0, threads: int = 0) -> None:
        self.dim, self.M, self.ef_construction, self.ef = dim, M, ef_construction, ef
        self.exact_below, self.seed, self.threads = exact_below, seed, threads
        self._labels = np.zeros(0, np.int64)
        self._vectors = np.zeros((0, dim), np.float32)
        self._hnsw: hnswlib.Index | None = None

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = np.asarray(labels, np.int64)
        self._labels = np.concatenate([self._labels, labels])
        self._vectors = np.concatenate([self._vectors, vectors])
        self._hnsw = None

    def _build(self) -> hnswlib.Index:
        index = hnswlib.Index(space="l2", dim=self.dim)
        index.init_index(max_elements=max(1, len(self)), M=self.M, ef_construction=self.ef_construction,
                         random_seed=self.seed)
        if self.threads:
            index.set_num_threads(self.threads)
        index.add_items(self._vectors, self._labels)
        index.set_ef(self.ef)
        return index

    def query(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            raise ValueError("the nominal index is empty: nothing is known to be nominal yet")
        q = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(self) < self.exact_below:
            return _exact(self._vectors, self._labels, q, k)
        if self._hnsw is None:
            self._hnsw = self._build()
        labels, sq = self._hnsw.knn_query(q, k=k)
        return np.sqrt(np.maximum(sq, 0)), labels.astype(np.int64)


def _exact(gallery: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    g = torch.from_numpy(gallery)
    out_d, out_l = [], []
    for start in range(0, len(queries), 4096):
        q = torch.from_numpy(queries[start:start + 4096])
        d = torch.cdist(q, g)
        dist, idx = torch.topk(d, min(k, len(gallery)), dim=1, largest=False)
        out_d.append(dist.numpy())
        out_l.append(labels[idx.numpy()])
    return np.concatenate(out_d).astype(np.float32), np.concatenate(out_l)
