"""The nominal index: nearest trusted patch for every query patch (docs/DESIGN.md section 4).

Three indexes share one small API: ``add(labels, vectors)``, ``remove(labels)``, ``query(vectors, k)``
(true L2 distances and the caller's labels), ``labels()``, ``vectors()``, ``len()``, ``in``:

- :class:`~streamad.index.exact.ExactIndex`: brute force, the oracle every answer is measured against;
- :class:`~streamad.index.hnsw.NominalIndex`: an hnswlib HNSW graph (the batch models' index);
- :class:`~streamad.index.ivf.IVFIndex`: inverted lists, cheap to change and read as atomic snapshots
  (the streaming engine's index: a sliding window changes hundreds of patches per admitted frame).

:func:`make_index` builds the one an :class:`~streamad.config.IndexConfig` names.
"""

from __future__ import annotations

from streamad.config import IndexConfig
from streamad.index.exact import ExactIndex, exact_knn
from streamad.index.hnsw import NominalIndex
from streamad.index.ivf import IVFIndex

__all__ = ["ExactIndex", "IVFIndex", "NominalIndex", "exact_knn", "make_index"]


def make_index(dim: int, config: IndexConfig, seed: int = 0) -> NominalIndex | IVFIndex:
    """The index ``config.kind`` names (``"hnsw"`` or ``"ivf"``), built from ``config``.

        >>> type(make_index(4, IndexConfig(kind="ivf"))).__name__
        'IVFIndex'
    """
    if config.kind == "ivf":
        return IVFIndex.from_config(dim, config, seed=seed)
    return NominalIndex.from_config(dim, config, seed=seed)
