"""Exact nearest-neighbour search by chunked matrix multiplication (torch, float32).

Squared L2 distances come from ``|q|^2 + |g|^2 - 2 q.g`` one block of queries at a time, so memory
stays bounded whatever the sizes; the distances returned for the chosen neighbours are recomputed
directly, so they are true L2 distances, not the cancellation-prone expansion.

    >>> import numpy as np
    >>> g = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], np.float32)
    >>> d, i = nearest(np.array([[3.0, 3.0], [9.0, 0.0]], np.float32), g, k=2)
    >>> i.tolist(), np.round(d.astype(float), 3).tolist()
    ([[1, 0], [2, 1]], [[1.0, 4.243], [1.0, 7.211]])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Elements of one (queries x gallery) distance block: 2**25 float32 = 128 MiB.
BLOCK_ELEMENTS = 1 << 25


def as_tensor(x: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """A contiguous float32 2-D tensor on ``device`` (no copy when it already is one)."""
    if isinstance(x, np.ndarray) and not x.flags.writeable:  # e.g. a memory-mapped cache: torch wants to own it
        x = np.array(x, dtype=np.float32)
    t = torch.as_tensor(x).to(device=device, dtype=torch.float32)
    if t.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, d), got shape {tuple(t.shape)}")
    return t.contiguous()


def squared_distance_blocks(queries: torch.Tensor, gallery: torch.Tensor,
                            block_elements: int = BLOCK_ELEMENTS) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, sq)``: squared L2 distances (B, G) of ``queries[start:start+B]`` to ``gallery``.

    Clamped at 0; float32 expansion, so use it to rank, then recompute the distances that matter.
    """
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"dimension mismatch: queries have d={queries.shape[1]}, gallery d={gallery.shape[1]}")
    g_sq = (gallery * gallery).sum(1)
    rows = max(1, block_elements // max(1, gallery.shape[0]))
    for start in range(0, queries.shape[0], rows):
        q = queries[start:start + rows]
        sq = (q * q).sum(1, keepdim=True) + g_sq[None, :]
        sq.addmm_(q, gallery.T, alpha=-2.0)
        yield start, sq.clamp_(min=0.0)


def exact_distances(queries: torch.Tensor, gallery: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """True L2 distances (Q, k) between each query and the gallery rows ``index`` (Q, k) names."""
    return torch.linalg.vector_norm(gallery[index] - queries[:, None, :], dim=-1)


def nearest(queries: np.ndarray | torch.Tensor, gallery: np.ndarray | torch.Tensor, k: int = 1,
            device: str | torch.device = "cpu",
            block_elements: int = BLOCK_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest gallery rows of every query: (distances (Q, k) float32 ascending, indices (Q, k)).

    Exact up to float32 ties. ``k`` is capped at the gallery size.
    """
    q, g = as_tensor(queries, device), as_tensor(gallery, device)
    if g.shape[0] == 0:
        raise ValueError("the gallery is empty")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, g.shape[0])
    dist = np.empty((q.shape[0], k), np.float32)
    idx = np.empty((q.shape[0], k), np.int64)
    for start, sq in squared_distance_blocks(q, g, block_elements):
        if k == 1:
            i = sq.argmin(1, keepdim=True)
        else:
            i = sq.topk(k, dim=1, largest=False).indices
        d = exact_distances(q[start:start + len(sq)], g, i)
        d, order = d.sort(1)
        i = i.gather(1, order)
        dist[start:start + len(sq)] = d.cpu().numpy()
        idx[start:start + len(sq)] = i.cpu().numpy()
    return dist, idx
