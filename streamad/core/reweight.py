"""PatchCore's image score reweighting (Roth et al. 2022, eq. 7) against any nominal set.

The most anomalous test patch ``m_t`` has score ``s* = |m_t - m*|`` to its nearest nominal patch ``m*``;
with ``N_b(m*)`` the ``b`` nearest nominal patches of ``m*`` (``m*`` included), the image score is
``(1 - exp(s*) / sum_{m in N_b} exp|m_t - m|) * s*``: a patch far from a dense part of the nominal set
keeps more of its score than one beside a region where normal looks vary a lot.

    >>> import numpy as np
    >>> q = np.zeros((1, 2), np.float32)
    >>> nb = np.array([[[1.0, 0.0], [1.0, 0.0]]], np.float32)      # two neighbours at distance 1
    >>> reweighted_scores(q, np.array([1.0]), nb).round(3).tolist()  # weight 1 - e / (2 e) = 0.5
    [0.5]
"""

from __future__ import annotations

import numpy as np


def reweighted_scores(queries: np.ndarray, s_star: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Eq. 7 for M images: ``queries`` (M, d) their most anomalous patches, ``s_star`` (M,) those patches'
    scores, ``neighbours`` (M, b, d) the nominal neighbourhoods ``N_b(m*)``; returns (M,) float32."""
    q = np.asarray(queries, np.float64)
    nb = np.asarray(neighbours, np.float64)
    if nb.ndim != 3 or q.shape != (nb.shape[0], nb.shape[2]):
        raise ValueError(f"queries (M, d) and neighbours (M, b, d) do not match: {q.shape} vs {nb.shape}")
    s = np.asarray(s_star, np.float64).reshape(-1)
    dist = np.linalg.norm(nb - q[:, None, :], axis=-1)                     # (M, b)
    top = dist.max(axis=1, keepdims=True)
    log_den = top[:, 0] + np.log(np.exp(dist - top).sum(axis=1))          # logsumexp
    return ((1.0 - np.exp(s - log_den)) * s).astype(np.float32)
