"""The IVF's nearest-neighbour search (k = 1) in native code (numba): each list read once per batch, no list
scanned that cannot hold a nearer vector, few vectors' distances computed in full.

:func:`nearest_in_lists` answers a batch of queries over an IVF's lists in one compiled call that
releases the interpreter lock:

1. every query scans its own list (the list of its nearest centroid), grouped by list so that a list is
   read once for all the queries that own it;
2. its best distance so far is a true bound ``B`` on its answer. Every vector sits in the list of its
   nearest centroid, so a vector of list ``l`` lies beyond the bisector of ``c_l`` and the query's own
   centroid ``c_1``: at least ``(|q - c_l|^2 - |q - c_1|^2) / (2 |c_l - c_1|)`` from the query. Of the
   lists whose bisector lies within ``B`` (and within the caller's ``within``), the ``nprobe - 1``
   nearest are scanned, again grouped by list: every one of the query's ``nprobe`` nearest lists that
   can hold a nearer vector and, where some of those cannot, as many farther ones that can.

A list's rows are ``starts[l]:ends[l]``; of them only those ``alive`` count (a removed vector stays in
its place, dead, until a change writes another there or the index is laid out afresh:
:mod:`streamad.index.ivf`). A list is scanned in two steps. First the distances in the leading
principal components (``proj``, a few dimensions kept column by column, so the products run over
contiguous memory): the distance in a
projection is never more than the true one, so it is a lower bound. Then the full distance (row-major
``vectors``), nearest lower bound first, only for the vectors whose bound is below the best distance
found. On patch descriptors the leading quarter of the dimensions holds most of the variance, and most
vectors of a list are ruled out by the first step.

:func:`rerank` re-ranks the best few in float64 (ties to the lower label), as the numpy scan does.

The answer is the one the scan of all ``nprobe`` lists gives, or a nearer vector (found in a farther
list that can hold one, or where float32 rounding kept the nearest off the full scan's shortlist).
Where the caller's ``within`` is below the answer, the answer is a vector at least ``within`` away, or
none. The rounding of float32 (the assignment, the
centroid distances, the projection) is covered by ``slack`` and a relative margin.

    >>> import numpy as np
    >>> vectors = np.array([[0.0], [1.0], [10.0], [11.0]], np.float32)    # lists [0, 1] and [10, 11]
    >>> proj = vectors.T.copy(); starts, ends = np.array([0, 2]), np.array([2, 4]); alive = np.ones(4, bool)
    >>> centroids = np.array([[0.5], [10.5]], np.float32); gaps = np.array([[0.0, 10.0], [10.0, 0.0]])
    >>> q = np.array([[0.9], [5.3]], np.float32)
    >>> dc2 = (-2.0 * q @ centroids.T + (centroids ** 2).sum(1)).astype(np.float32)
    >>> sqnorms = (vectors ** 2).sum(1)
    >>> best_d, best_r, work = nearest_in_lists(vectors, sqnorms, proj, starts, ends, alive, gaps, q, q.copy(),
    ...                                         dc2, np.full(2, np.inf), 2, 1e-9, 8)
    >>> best_r[:, 0].tolist(), work.tolist()   # query 1 scanned the second list too, one full distance each
    ([1, 1], [3, 6, 2, 0])
    >>> dist, rows = rerank(vectors, np.array([5, 6, 7, 8]), q, best_r)
    >>> [round(float(v), 3) for v in dist], rows.tolist()
    ([0.1, 4.3], [1, 1])
"""

from __future__ import annotations

import os
from typing import Any

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401 - numba's np.dot calls this BLAS: loaded here, so it can be set
from threadpoolctl import ThreadpoolController

__all__ = ["nearest_in_lists", "rerank", "KEEP", "bundled_blas", "one_thread_scan_blas"]


def bundled_blas(package: str) -> list[Any]:
    """threadpoolctl's handles on the BLAS libraries that ``package``'s wheel ships in its own folder (for
    example ``scipy.libs/``, ``faiss_cpu.libs/``); a BLAS shared with other packages is not among them.

        >>> all("scipy" in os.path.basename(os.path.dirname(lib.filepath)) for lib in bundled_blas("scipy"))
        True
    """
    return [lib for lib in ThreadpoolController().lib_controllers
            if lib.user_api == "blas" and package in os.path.basename(os.path.dirname(lib.filepath))]


def one_thread_scan_blas() -> list[str]:
    """Run the BLAS that the compiled scan's matrix products call on one thread; returns the files set.

    numba's ``np.dot`` calls scipy's BLAS, which scipy's wheels ship as a private copy beside numpy's own.
    A list's product is small (tens of queries by a few hundred vectors) and gains nothing from threads,
    while an OpenBLAS thread pool spins for a while after each call: beside numpy's pool (the learner's
    association) the two took each other's cores (the synthetic engine's association ran 3 x slower).
    scipy's BLAS is loaded when this module loads and set then, so the thread budget
    (:func:`streamad.stream.threads.apply_threads`), which sets every loaded BLAS, governs it from then on
    like numpy's; a BLAS that scipy shares with numpy is left as the application set it.
    """
    libs = bundled_blas("scipy")
    for lib in libs:
        lib.set_num_threads(1)
    return [lib.filepath for lib in libs]


one_thread_scan_blas()

# Reassociation (vectorised sums) and contraction (fused multiply-add) only: inf stays a value here.
_FAST = {"reassoc", "contract", "nsz", "arcp"}
#: Rows kept per query for the float64 re-ranking (as the numpy scan's k + 2).
KEEP = 3
# A vector is ruled out when its lower bound exceeds the best squared distance by this share (plus the
# slack): float32 sums over 152 terms stay far inside it.
_MARGIN = 1e-4


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _insert(best_d: np.ndarray, best_r: np.ndarray, i: int, v: float, r: int) -> None:  # pragma: no cover
    p = KEEP - 1
    while p > 0 and v < best_d[i, p - 1]:
        best_d[i, p] = best_d[i, p - 1]
        best_r[i, p] = best_r[i, p - 1]
        p -= 1
    best_d[i, p] = v
    best_r[i, p] = r


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _full(vectors: np.ndarray, r: int, q: np.ndarray, i: int) -> float:  # pragma: no cover - compiled
    s = np.float32(0.0)
    for k in range(vectors.shape[1]):
        t = vectors[r, k] - q[i, k]
        s += t * t
    return s


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _least(sqnorms: np.ndarray, row: np.ndarray) -> float:  # pragma: no cover - compiled
    """min over j of ``sqnorms[j] - 2 row[j]`` (vectorised: the order of a minimum does not change it)."""
    least = np.float32(np.inf)
    for j in range(len(row)):
        least = min(least, sqnorms[j] - np.float32(2.0) * row[j])
    return least


@numba.njit(cache=True, nogil=True)
def _scan_product(vectors: np.ndarray, sqnorms: np.ndarray, alive: np.ndarray, lo: int, hi: int, q: np.ndarray,
                  q_sq: np.ndarray, group: np.ndarray, tol: np.ndarray, best_d: np.ndarray,
                  best_r: np.ndarray) -> None:  # pragma: no cover - compiled
    """Rows ``lo:hi`` against the queries ``group`` by one matrix product (BLAS): ``|q|^2 + |v|^2 - 2 q.v``
    for every pair, each query's best ``KEEP`` updated in place. A query whose nearest pair, by a
    vectorised minimum, is beyond its ``KEEP``-th best by more than its rounding slack ``tol`` is passed
    over (most are, once the nearest lists have been read; the minimum counts dead rows too, which only
    makes it smaller). Dead rows are never taken."""
    nq, n = len(group), hi - lo
    qg = np.empty((nq, q.shape[1]), np.float32)
    for g in range(nq):
        qg[g] = q[group[g]]
    part = np.dot(qg, vectors[lo:hi].T)
    sq = sqnorms[lo:hi]
    for g in range(nq):
        i = group[g]
        worst = best_d[i, KEEP - 1]
        if q_sq[i] + _least(sq, part[g]) > worst + tol[i]:
            continue
        for j in range(n):
            if not alive[lo + j]:
                continue
            v = max(q_sq[i] + sq[j] - 2.0 * part[g, j], np.float32(0.0))
            if v < worst:
                _insert(best_d, best_r, i, v, lo + j)
                worst = best_d[i, KEEP - 1]


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _scan_list(vectors: np.ndarray, proj: np.ndarray, alive: np.ndarray, lo: int, hi: int, q: np.ndarray,
               qp: np.ndarray, group: np.ndarray, limit: np.ndarray, tol: np.ndarray, best_d: np.ndarray,
               best_r: np.ndarray) -> int:  # pragma: no cover - compiled
    """Rows ``lo:hi`` against the queries ``group``, bounded in principal coordinates first: each query's
    best ``KEEP`` rows updated in place (``best_d`` ascending float32 squared distances, ``best_r`` their
    rows, -1 for none). ``limit`` (m,): the squared bound the caller gives (``within``); ``tol`` (m,):
    the rounding slack, squared units. Dead rows (not ``alive``) are bounded but never taken. Returns how
    many full distances it computed."""
    n, nq = hi - lo, len(group)
    fulls = 0
    low = np.zeros((nq, n), np.float32)
    for k in range(proj.shape[0]):  # the lower bounds, one projected dimension at a time for the group
        col = proj[k, lo:hi]
        for g in range(nq):
            qk = qp[group[g], k]
            a = low[g]
            for j in range(n):
                t = col[j] - qk
                a[j] += t * t
    for g in range(nq):
        i = group[g]
        a = low[g]
        first = np.argmin(a)  # the nearest lower bound first: it is most often the answer
        for step in range(n + 1):
            j = first if step == 0 else step - 1
            if (step > 0 and j == first) or not alive[lo + j]:
                continue
            cut = min(best_d[i, 0] * (1.0 + _MARGIN), limit[i]) + tol[i]
            if a[j] > cut:
                continue
            v = _full(vectors, lo + j, q, i)
            fulls += 1
            if v < best_d[i, KEEP - 1]:
                _insert(best_d, best_r, i, v, lo + j)
    return fulls


@numba.njit(cache=True, nogil=True)
def _scan(vectors: np.ndarray, sqnorms: np.ndarray, proj: np.ndarray, alive: np.ndarray, lo: int, hi: int,
          q: np.ndarray, q_sq: np.ndarray, qp: np.ndarray, group: np.ndarray, limit: np.ndarray, tol: np.ndarray,
          best_d: np.ndarray, best_r: np.ndarray, product_from: int, work: np.ndarray) -> None:  # pragma: no cover
    """One list against a group of queries: by one matrix product where the group has at least
    ``product_from`` queries (a texture, where every query probes every list: BLAS is faster for many
    queries at once), else bounded in principal coordinates first. ``work`` counts (scans, vectors
    bounded, full distances after the bounds, distances by product)."""
    work[0] += len(group)
    if len(group) >= product_from:
        _scan_product(vectors, sqnorms, alive, lo, hi, q, q_sq, group, tol, best_d, best_r)
        work[3] += len(group) * (hi - lo)
    else:
        work[1] += len(group) * (hi - lo)
        work[2] += _scan_list(vectors, proj, alive, lo, hi, q, qp, group, limit, tol, best_d, best_r)


@numba.njit(cache=True, nogil=True)
def _by_list(lists: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Counting sort: (order, starts): the entries of list ``l`` are ``order[starts[l]:starts[l + 1]]``."""
    starts = np.zeros(nlist + 1, np.int64)
    for li in lists:
        starts[li + 1] += 1
    for li in range(nlist):
        starts[li + 1] += starts[li]
    fill = starts[:-1].copy()
    order = np.empty(len(lists), np.int64)
    for e in range(len(lists)):
        order[fill[lists[e]]] = e
        fill[lists[e]] += 1
    return order, starts


@numba.njit(cache=True, nogil=True)
def _nearest_first(lists: np.ndarray, dc2: np.ndarray, count: int) -> np.ndarray:  # pragma: no cover
    """The ``count`` of ``lists`` (increasing) with the least ``dc2``, ties to the earlier list: the set a
    stable sort's first ``count`` gives, found by one partition instead of a sort."""
    values = np.empty(len(lists), np.float32)
    for e in range(len(lists)):
        values[e] = dc2[lists[e]]
    kth = np.partition(values, count - 1)[count - 1]  # a partitioned copy: values keep their order
    out = np.empty(count, np.int64)
    taken = 0
    for e in range(len(lists)):  # those strictly nearer than the count-th value (fewer than count)
        if values[e] < kth:
            out[taken] = lists[e]
            taken += 1
    for e in range(len(lists)):  # then the ties at it, in list order, up to count
        if taken == count:
            break
        if values[e] == kth:
            out[taken] = lists[e]
            taken += 1
    return out


@numba.njit(cache=True, nogil=True)
def nearest_in_lists(vectors: np.ndarray, sqnorms: np.ndarray, proj: np.ndarray, starts: np.ndarray,
                     ends: np.ndarray, alive: np.ndarray, gaps: np.ndarray, q: np.ndarray, qp: np.ndarray,
                     dc2: np.ndarray, within: np.ndarray, nprobe: int, slack: float,
                     product_from: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Each query's best ``KEEP`` rows among its ``nprobe`` nearest lists (see the module docstring), for
    :func:`rerank`.

    ``vectors`` (n, d) float32, list after list (list ``l`` is rows ``starts[l]:ends[l]``, of which only the
    ``alive`` ones count), and ``sqnorms`` their squared norms; ``proj`` (p, n) float32, the vectors'
    leading ``p`` principal coordinates; ``gaps`` (nlist, nlist) float64 centroid distances; ``q`` (m, d) float32 and ``qp`` (m, p) its projection; ``dc2`` (m, nlist)
    float32 ``|q - c|^2 - |q|^2``; ``within`` (m,) float64 (``inf``: no bound); ``slack`` in squared units
    (float32 rounding of the vectors' norms); a list is scanned by one matrix product for a group of at
    least ``product_from`` queries (:func:`_scan`). Returns (squared float32 distances (m, KEEP)
    ascending, ``inf`` where fewer were found; their rows, -1 there; the work done: (query, list) scans,
    vectors bounded in projection, full distances after the bounds, distances by matrix product)."""
    m, nlist = dc2.shape
    probe = min(nprobe, nlist)
    best_d = np.full((m, KEEP), np.inf, np.float32)
    best_r = np.full((m, KEEP), -1, np.int64)
    own = np.empty(m, np.int64)
    tol = np.empty(m, np.float32)
    limit = np.empty(m, np.float32)
    q_sq = np.empty(m, np.float32)
    for i in range(m):
        own[i] = np.argmin(dc2[i])
        s = 0.0
        for k in range(q.shape[1]):
            s += float(q[i, k]) * float(q[i, k])
        q_sq[i] = s
        tol[i] = slack + 1e-5 * s
        limit[i] = np.inf if within[i] == np.inf else within[i] * within[i] * (1.0 + _MARGIN)
    order, groups = _by_list(own, nlist)
    work = np.zeros(4, np.int64)
    for li in range(nlist):  # each query's own list
        if groups[li + 1] > groups[li] and ends[li] > starts[li]:
            _scan(vectors, sqnorms, proj, alive, starts[li], ends[li], q, q_sq, qp, order[groups[li]:groups[li + 1]],
                  limit, tol, best_d, best_r, product_from, work)
    # the other probed lists whose bisector with the own list lies within the bound
    pair_q = np.empty(m * probe, np.int64)
    pair_l = np.empty(m * probe, np.int64)
    npairs = 0
    passing = np.empty(nlist, np.int64)
    for i in range(m):
        o = own[i]
        bound = min(within[i], np.sqrt(float(best_d[i, 0])) * (1.0 + _MARGIN))
        base = float(dc2[i, o])
        n_pass = 0
        for li in range(nlist):
            if li != o and float(dc2[i, li]) - base - tol[i] <= 2.0 * gaps[o, li] * bound:
                passing[n_pass] = li
                n_pass += 1
        # At most nprobe lists a query: of the passing ones, the nprobe - 1 nearest (the own list, nearest
        # of all, is the nprobe-th). They hold every passing list among its nprobe nearest, so the answer
        # is the nprobe scan's or nearer; one partition chooses them, cheaper than the exact nprobe set.
        chosen = passing[:n_pass]
        if n_pass >= probe:
            chosen = _nearest_first(chosen, dc2[i], probe - 1)
        for li in chosen:
            if ends[li] > starts[li]:
                pair_q[npairs] = i
                pair_l[npairs] = li
                npairs += 1
    order, groups = _by_list(pair_l[:npairs], nlist)
    for li in range(nlist):
        if groups[li + 1] > groups[li]:
            _scan(vectors, sqnorms, proj, alive, starts[li], ends[li], q, q_sq, qp,
                  pair_q[:npairs][order[groups[li]:groups[li + 1]]], limit, tol, best_d, best_r, product_from, work)
    return best_d, best_r, work


@numba.njit(cache=True, nogil=True)
def rerank(vectors: np.ndarray, labels: np.ndarray, q: np.ndarray,
           rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Of each query's candidate ``rows`` (m, c) (-1: none), the nearest by float64 L2 (ties: the lower
    label): (distances (m,) float32, ``inf`` where there is none; rows (m,), -1 there)."""
    m, c = rows.shape
    dist = np.full(m, np.inf, np.float32)
    best = np.full(m, -1, np.int64)
    for i in range(m):
        top_d = np.inf
        for j in range(c):
            r = rows[i, j]
            if r < 0:
                continue
            s = 0.0
            for k in range(vectors.shape[1]):
                t = float(vectors[r, k]) - float(q[i, k])
                s += t * t
            s = np.sqrt(s)
            if s < top_d or (s == top_d and labels[r] < labels[best[i]]):
                top_d = s
                best[i] = r
        dist[i] = top_d
    return dist, best
