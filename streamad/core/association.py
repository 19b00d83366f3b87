"""Mutual nearest-neighbour association between the patches of two frames.

The one primitive both the batch oracle and the streaming engine use, so that both see
bit-identical distances for the same inputs. :func:`mutual_pairs_stack` associates many pairs of
frames at once, with numpy (the oracle's arithmetic, bit-identical to :func:`mutual_pairs`) or on a
torch device (``"cpu"``, ``"cuda"``: the same math on tensors, one batched matrix product; equal to
numpy's up to float32 rounding, so ties may break differently). With numpy, the pairs of a stack are
shared among :func:`set_workers` threads (the product and the compiled pass release the interpreter
lock; every pair is computed as alone, so the answers are the same bit for bit whatever the count).

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

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from streamad.core.mutual_kernel import mutual_from_products

NO_PAIR = -1


@dataclass(frozen=True)
class MutualPairs:
    """For every patch ``b`` of a frame: its mutual partner in the seed (or ``NO_PAIR``) and the distance."""

    seed_patch: np.ndarray  # (P,) int64
    distance: np.ndarray  # (P,) float64, inf where there is no pair


def _common_float(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays in one precision: float32 if both are float32, else float64."""
    a, b = np.asarray(a), np.asarray(b)
    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` (M, d) and ``b`` (N, d), shape (M, N).

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` in the inputs' precision (float32 stays float32, anything
    else becomes float64) and clipped at zero.
    """
    a, b = _common_float(a, b)
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
    """Mutual nearest-neighbour pairs between a seed frame's patches and another frame's patches.

    Bit-identical to ``mutual_pairs_from_squared(squared_distances(seed, frame))``: the same product and
    norms, the rest in one compiled pass (:mod:`streamad.core.mutual_kernel`) instead of six over the
    squared-distance matrix; a NaN in the distances takes the numpy path, whose ``argmin`` rules ties."""
    a, b = _common_float(seed, frame)
    if not len(a) or not len(b):  # a frame without patches: nobody has a partner
        return MutualPairs(seed_patch=np.full(len(b), NO_PAIR, np.int64), distance=np.full(len(b), np.inf))
    patch, distance, nan = mutual_from_products(a @ b.T, np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b))
    if nan:
        return mutual_pairs_from_squared(squared_distances(a, b))
    return MutualPairs(seed_patch=patch, distance=distance)


DEVICES = ("numpy", "cpu", "cuda")


def check_device(device: str) -> str:
    """``device`` if it names a backend: ``"numpy"``, or a torch device (``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""
    if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
        raise ValueError(f"device must be 'numpy', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def mutual_pairs_stack(seeds: np.ndarray, frames: np.ndarray, device: str = "numpy") -> tuple[np.ndarray, np.ndarray]:
    """Mutual pairs of ``seeds[i]`` with ``frames[i]`` for every ``i``: (seed_patch (B, P) int64,
    distance (B, P) float64). Either argument may be one (P, d) frame, used against every one of the other.

        >>> rng = np.random.default_rng(0)
        >>> seeds, frame = rng.normal(size=(3, 5, 2)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
        >>> patch, dist = mutual_pairs_stack(seeds, frame)
        >>> all((patch[i] == mutual_pairs(seeds[i], frame).seed_patch).all() for i in range(3))
        True
        >>> tp, td = mutual_pairs_stack(seeds, frame, device="cpu")        # torch, on the CPU device
        >>> bool((tp == patch).all()), bool(np.allclose(td, dist))
        (True, True)
    """
    a, b = np.asarray(seeds), np.asarray(frames)
    if a.ndim == 2 and b.ndim == 2:
        a = a[None]
    n = max(len(a) if a.ndim == 3 else 1, len(b) if b.ndim == 3 else 1)
    if check_device(device) == "numpy":
        def pair(i: int) -> MutualPairs:
            return mutual_pairs(a[i] if a.ndim == 3 else a, b[i] if b.ndim == 3 else b)
        out = _shared(pair, n)
        return (np.stack([o.seed_patch for o in out]), np.stack([o.distance for o in out]))
    return _mutual_pairs_torch(a, b, n, device)


def _mutual_pairs_torch(a: np.ndarray, b: np.ndarray, n: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    import torch

    dtype = torch.float32 if (a.dtype == np.float32 and b.dtype == np.float32) else torch.float64
    ta = torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
    tb = torch.as_tensor(np.ascontiguousarray(b), dtype=dtype, device=device)
    ta = ta.expand(n, *ta.shape[-2:]) if ta.dim() == 2 else ta
    tb = tb.expand(n, *tb.shape[-2:]) if tb.dim() == 2 else tb
    with torch.no_grad():
        sq = torch.baddbmm((ta * ta).sum(-1)[:, :, None] + (tb * tb).sum(-1)[:, None, :], ta, tb.transpose(1, 2),
                           alpha=-2.0).clamp_(min=0.0)  # (n, seed patches, frame patches)
        nearest_seed = sq.argmin(dim=1)  # for each frame patch b
        nearest_frame = sq.argmin(dim=2)  # for each seed patch a
        arange = torch.arange(sq.shape[2], device=sq.device)
        mutual = torch.gather(nearest_frame, 1, nearest_seed) == arange[None, :]
        d = torch.gather(sq, 1, nearest_seed[:, None, :])[:, 0, :].double().sqrt()
        patch = torch.where(mutual, nearest_seed, torch.full_like(nearest_seed, NO_PAIR))
        dist = torch.where(mutual, d, torch.full_like(d, float("inf")))
    return patch.cpu().numpy().astype(np.int64), dist.cpu().numpy()


# -- the association's threads ------------------------------------------------------------------------------
# Who owns what: the count is process-wide (like BLAS's threads), set by the thread budget
# (streamad.stream.threads.apply_threads) from the application's thread. A caller of mutual_pairs_stack with
# more than one pair starts that many threads ("streamad-associate-K") for its call and joins them before it
# returns: they only compute pairs, hold nothing, and none outlives the call.
_WORKERS = 1


def set_workers(workers: int) -> int:
    """Share the pairs of :func:`mutual_pairs_stack` (numpy) among ``workers`` threads, process-wide (1: on
    the caller's thread); returns the count in force. The thread budget sets it: the cores when one thing
    runs at a time (synchronous learning, eval), 1 beside a scorer (background learning).

        >>> set_workers(2), workers()
        (2, 2)
        >>> set_workers(1)
        1
    """
    global _WORKERS
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"association workers must be an int >= 1, got {workers!r}")
    _WORKERS = workers
    return workers


def workers() -> int:
    """How many threads share the pairs of a stack now."""
    return _WORKERS


def _shared(pair: Callable[[int], MutualPairs], n: int) -> list[MutualPairs]:
    """``pair(i)`` for ``i < n``, in order, on up to :func:`workers` threads started and joined here (thread
    start-up is about 0.1 ms against a pair's 2-3 ms)."""
    count = min(_WORKERS, n)
    if count <= 1:
        return [pair(i) for i in range(n)]
    with ThreadPoolExecutor(count, thread_name_prefix="streamad-associate") as pool:
        return list(pool.map(pair, range(n)))
