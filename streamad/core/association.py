"""Mutual nearest-neighbour association between the patches of two frames.

The one primitive both the batch oracle and the streaming engine use, so that both see
bit-identical distances for the same inputs.

    >>> import numpy as np
    >>> seed = np.array([[0.0, 0.0], [10.0, 0.0]])
    >>> frame = np.array([[9.0, 0.0], [0.5, 0.0], [0.6, 0.0]])
    >>> pairs = mutual_pairs(seed, frame)
    >>> pairs.seed_patch.tolist()   # frame patch 0 <-> seed patch 1, 1 <-> 0, patch 2 has none
    [1, 0, -1]
    >>> pairs.distance.round(2).tolist()
    [1.0, 0.5, inf]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_PAIR = -1


@dataclass(frozen=True)
class MutualPairs:
    """For every patch ``b`` of a frame: its mutual partner in the seed (or ``NO_PAIR``) and the distance."""

    seed_patch: np.ndarray  # (P,) int64
    distance: np.ndarray  # (P,) float64, inf where there is no pair


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` (M, d) and ``b`` (N, d), shape (M, N).

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` in the inputs' precision (float32 stays float32, anything
    else becomes float64) and clipped at zero.
    """
    dtype = np.float32 if (np.asarray(a).dtype == np.float32 and np.asarray(b).dtype == np.float32) else np.float64
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    sq = a @ b.T
    sq *= -2.0
    sq += np.einsum("ij,ij->i", a, a)[:, None]
    sq += np.einsum("ij,ij->i", b, b)[None, :]
    np.maximum(sq, 0.0, out=sq)
    return sq


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (the square root of ``squared_distances``)."""
    return np.sqrt(squared_distances(a, b))


def mutual_pairs_from_squared(sq: np.ndarray) -> MutualPairs:
    """Mutual nearest neighbours from a (seed patches x frame patches) squared-distance matrix.

    Frame patch ``b`` pairs with seed patch ``a`` when ``a`` is ``b``'s nearest seed patch and ``b`` is
    ``a``'s nearest frame patch. Ties go to the lowest index (``argmin``). Distances come back as
    true L2 (square roots of the selected entries only).
    """
    dist = sq
    nearest_seed = np.argmin(dist, axis=0)  # for each frame patch b
    nearest_frame = np.argmin(dist, axis=1)  # for each seed patch a
    b = np.arange(dist.shape[1])
    mutual = nearest_frame[nearest_seed] == b
    seed_patch = np.where(mutual, nearest_seed, NO_PAIR).astype(np.int64)
    distance = np.where(mutual, np.sqrt(dist[nearest_seed, b].astype(np.float64)), np.inf)
    return MutualPairs(seed_patch=seed_patch, distance=distance)


def mutual_pairs(seed: np.ndarray, frame: np.ndarray) -> MutualPairs:
    """Mutual nearest-neighbour pairs between a seed frame's patches and another frame's patches."""
    return mutual_pairs_from_squared(squared_distances(seed, frame))
