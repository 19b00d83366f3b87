"""Greedy coreset subsampling (k-center greedy), as PatchCore (Roth et al. 2022, Algorithm 1) does it.

Starting from one random element, repeatedly add the element farthest from everything chosen so far.
For speed the distances are taken after a random Johnson-Lindenstrauss projection to
``projection_dim`` dimensions (Gaussian, entries of variance ``1/projection_dim``); with
``projection_dim=None`` (or not smaller than the input dimension) the original space is used, which is
the exact greedy rule.

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], np.float32)
    >>> greedy_coreset(x, 3, start=0).tolist()
    [0, 2, 3]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .knn import as_tensor


def coreset_size(total: int, fraction: float) -> int:
    """Number of coreset elements for ``total`` patches: ``ceil(fraction * total)``, at least 1."""
    return max(1, min(total, math.ceil(fraction * total - 1e-9)))


def jl_projection(x: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` (n, d) mapped by a random Gaussian matrix (d, dim) scaled to preserve distances on average."""
    if dim < 1:
        raise ValueError(f"projection dim must be >= 1, got {dim}")
    matrix = rng.standard_normal((x.shape[1], dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    return np.asarray(x, np.float32) @ matrix


def greedy_coreset(x: np.ndarray, n: int, rng: np.random.Generator | None = None,
                   projection_dim: int | None = None, start: int | None = None,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Indices (n,) of the greedy k-center coreset of ``x`` (N, d), in selection order.

    ``start``: the first element (default: drawn from ``rng``). ``n`` is capped at N. Ties go to the
    lowest index.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty (N, d) array, got shape {x.shape}")
    if n < 1:
        raise ValueError(f"coreset size must be >= 1, got {n}")
    rng = rng if rng is not None else np.random.default_rng(0)
    n = min(n, len(x))
    if projection_dim is not None and projection_dim < x.shape[1]:
        x = jl_projection(x, projection_dim, rng)
    if start is None:
        start = int(rng.integers(len(x)))
    if not 0 <= start < len(x):
        raise ValueError(f"start must index x (0..{len(x) - 1}), got {start}")
    t = as_tensor(x, device)
    sq_norm = (t * t).sum(1)
    columns = t.T.contiguous()  # (d, N): a row vector times this is several times faster than t @ c on CPU
    chosen = torch.empty(n, dtype=torch.long, device=t.device)
    chosen[0] = start
    min_sq = torch.full((len(t),), float("inf"), device=t.device)
    for i in range(1, n):
        c = t[chosen[i - 1]]
        sq = sq_norm - 2.0 * (c @ columns) + sq_norm[chosen[i - 1]]
        torch.minimum(min_sq, sq, out=min_sq)
        min_sq[chosen[i - 1]] = -1.0  # chosen elements are never picked again, even after rounding
        chosen[i] = torch.argmax(min_sq)
    return chosen.cpu().numpy()
