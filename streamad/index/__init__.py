"""The nominal index: nearest trusted patch for every query patch (docs/DESIGN.md section 4).

:class:`~streamad.index.hnsw.NominalIndex` (hnswlib HNSW with stable labels, exact search for small
sets) and :class:`~streamad.index.exact.ExactIndex` (brute force, the test oracle) share one small API:
``add(labels, vectors)``, ``remove(labels)``, ``query(vectors, k)``, ``labels()``, ``len()``.
"""

from streamad.index.exact import ExactIndex, exact_knn
from streamad.index.hnsw import NominalIndex

__all__ = ["ExactIndex", "NominalIndex", "exact_knn"]
