"""An inverted-file (IVF) nominal index built for a sliding window: cheap to change, safe to read while it changes.

:class:`IVFIndex` (``kind="ivf"``) is the streaming engine's default index. The vectors are
partitioned by their nearest of ``nlist`` centroids (seeded k-means on the vectors held when the
index first reaches ``exact_below``); a query searches exactly (BLAS, float64 re-ranking) the
``nprobe`` lists whose centroids are nearest to it. Below ``exact_below`` vectors every query is exact.

All lists are stored one after another in one array. A change (:meth:`IVFIndex.apply`: the removed
and added vectors of one admission) assigns each added vector to its nearest centroid and builds new
arrays: the kept rows and the added ones, merged list by list (:func:`_merge`). That copies every
held vector once per change, but computes nothing else: no graph to repair, where re-inserting into
an HNSW graph cost milliseconds per vector (docs/DESIGN.md section 4; ``streamad bench-engine --mode
index`` measures both).

A query that needs only answers within a bound (``query(..., within=)``: the scorer asks the long-term
memory only for patches nearer than the window's own answer, the memory asks for its epsilon) skips
every probed list whose bisector with the query's own centroid lies beyond the bound: a vector of such
a list is nearer to that list's centroid than to the query's own, so it is farther than the bound
(:meth:`IVFIndex._query_within`). Where an answer is within the bound it is the one the full scan gives.

Readers see snapshots. The new arrays are published with one reference assignment, so a query
running in another thread while :meth:`~IVFIndex.apply` runs answers either entirely from the state
before the change or entirely from the state after it, never from a half-applied one. Only one
thread may write.

When the set has grown to ``retrain_growth`` (2) times the size the centroids were trained on, or the
largest list holds more than ``max_imbalance`` times the mean, the centroids are retrained and every
vector reassigned (a rare, whole-index step). Growth 2 keeps the lists within a factor of about 1.4 of
``sqrt(n)`` vectors, so a query scans about ``nprobe * sqrt(n)`` of them; at the former growth 4 the
long-term memory of an MTD stream held 30,904 patches in 90 lists trained at 7,700 (343 a list); at
growth 2 it would have been trained on at least 15,452 (about 124 lists of at most 250).

    >>> import numpy as np
    >>> idx = IVFIndex(dim=2, exact_below=0, nlist=2, nprobe=2)
    >>> idx.add(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
    >>> d, lab = idx.query(np.array([[3.0, 4.0], [0.0, 1.0]], np.float32))
    >>> d[:, 0].tolist(), lab[:, 0].tolist()            # true L2, caller's labels
    ([0.0, 1.0], [9, 7])
    >>> idx.remove([9]); idx.query(np.array([[3.0, 4.0]], np.float32))[0].tolist()
    [[5.0]]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from streamad.config import IndexConfig
from streamad.index.base import BaseIndex, check_change, check_held, check_hints, check_query
from streamad.index.exact import exact_knn
from streamad.state_schema import StatePart

__all__ = ["IVFIndex"]

# Candidates kept per probed list and query before the exact float64 re-ranking (beyond k).
_EXTRA = 2


@dataclass(frozen=True)
class _State:
    """One consistent version of the index: what a query reads (never modified once published).

    The vectors of all lists are stored list after list in one array, column by column (``columns`` is
    (d, n): a list's block ``columns[:, lo:hi]`` is what its matrix product reads, and BLAS multiplies
    a few queries by it two to three times faster than by the transpose of a row-major block:
    ``python -m streamad.bench.scripts.ivf_layout``); list ``i`` is
    rows ``bounds[i]:bounds[i + 1]`` of ``vectors`` (``list_of`` gives each row's list)."""

    centroids: np.ndarray | None  # (nlist, d) float32; None while exact (one list)
    columns: np.ndarray  # (d, n) float32, C-contiguous: the vectors, one per column
    labels: np.ndarray  # (n,) int64
    sqnorms: np.ndarray  # (n,) float32
    list_of: np.ndarray  # (n,) int64, ascending
    bounds: np.ndarray  # (nlist + 1,) int64
    gaps: np.ndarray | None = None  # (nlist, nlist) float64 distances between centroids; None while exact
    centroid_sq: float = 0.0  # the largest squared norm of a centroid (see slack)
    vector_sq: float = 0.0  # the largest squared norm of a vector held since the centroids were trained

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def vectors(self) -> np.ndarray:
        """(n, d) view of ``columns`` (row ``i`` is vector ``i``)."""
        return self.columns.T

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), d) copy of the vectors of ``rows``."""
        return self.columns[:, rows].T

    @classmethod
    def build(cls, centroids: np.ndarray | None, columns: np.ndarray, labels: np.ndarray, sqnorms: np.ndarray,
              list_of: np.ndarray, gaps: np.ndarray | None = None, centroid_sq: float = 0.0,
              vector_sq: float = 0.0) -> _State:
        """A state of rows already sorted by ``list_of`` (``gaps`` and the norms: computed from the centroids
        and vectors unless given, as a change that keeps the centroids passes them on)."""
        nlist = 1 if centroids is None else len(centroids)
        bounds = np.concatenate([[0], np.cumsum(np.bincount(list_of, minlength=nlist))]).astype(np.int64)
        if centroids is not None and gaps is None:
            c = centroids.astype(np.float64)
            csq = np.einsum("ij,ij->i", c, c)
            gaps = np.sqrt(np.maximum(csq[:, None] + csq[None, :] - 2.0 * (c @ c.T), 0.0))
            centroid_sq = float(csq.max())
            vector_sq = max(vector_sq, float(sqnorms.max()) if len(sqnorms) else 0.0)
        return cls(centroids, columns, labels, sqnorms, list_of, bounds, gaps, centroid_sq, vector_sq)

    @property
    def slack(self) -> float:
        """How far (in squared distance) float32 rounding may have put a vector on the wrong side of the
        bisector between its centroid and another when it was assigned to the nearer one: a generous 1e-5
        of the squared norms (float32 keeps 6e-8 of each product; a 152-term sum stays well inside)."""
        return 1e-5 * (self.centroid_sq + self.vector_sq) + 1e-12

    @classmethod
    def empty(cls, dim: int) -> _State:
        return cls.build(None, np.zeros((dim, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                         np.zeros(0, np.int64))


def _rowsq(v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", v, v).astype(np.float32)


def _sq(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared distances (len(a), len(b)) in float32 from the expansion, clipped at 0."""
    out = a @ b.T
    out *= -2.0
    out += np.einsum("ij,ij->i", a, a)[:, None]
    out += b_sq[None, :]
    np.maximum(out, 0.0, out=out)
    return out


def _scan(state: _State, q: np.ndarray, qi: np.ndarray, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pair (query ``qi[j]``, list ``lists[j]``): the list's best row for the query by
    ``|v|^2 - 2 q.v`` (float32) and that value (``inf`` and row -1 for an empty list). One GEMM per list
    for all the queries that scan it; the loop does only that and an argmin (the pairs are few per list
    when most lists are skipped, so the loop's own overhead counts)."""
    rank = np.full(len(qi), np.inf, np.float32)
    row = np.full(len(qi), -1, np.int64)
    if not len(qi):
        return rank, row
    order = np.argsort(lists, kind="stable")
    sizes = np.diff(state.bounds)
    starts = np.searchsorted(lists[order], np.arange(len(state.bounds))).tolist()
    qo = q[qi[order]]
    qo *= -2.0
    best = np.full(len(order), -1, np.int64)
    low = np.full(len(order), np.inf, np.float32)
    columns, sqnorms, bounds = state.columns, state.sqnorms, state.bounds.tolist()
    for li in np.flatnonzero(np.diff(starts) * (sizes > 0)).tolist():
        lo, hi, a, b = bounds[li], bounds[li + 1], starts[li], starts[li + 1]
        part = qo[a:b] @ columns[:, lo:hi]
        part += sqnorms[lo:hi]
        best[a:b] = part.argmin(axis=1) + lo
        low[a:b] = part.min(axis=1)
    row[order] = best
    rank[order] = low
    return rank, row


@contextmanager
def _one_thread(faiss: Any) -> Iterator[None]:
    """FAISS's own OpenBLAS (process-wide) and OpenMP (this thread) at one thread while the block runs,
    the OpenMP count put back after.

    One thread: the k-means takes no second core from the scorer, and its sums do not depend on the
    process's thread settings. Put back: FAISS and torch share this thread's OpenMP setting, so a
    k-means on the scoring thread (``streamad watch --learning sync``) left torch's backbone on one
    thread for the rest of the run.
    """
    for lib in _faiss_blas():
        lib.set_num_threads(1)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@functools.cache
def _faiss_blas() -> list[Any]:
    """threadpoolctl's handles on the BLAS that FAISS's wheel brings (looked up once)."""
    from threadpoolctl import ThreadpoolController

    return [lib for lib in ThreadpoolController().lib_controllers
            if lib.user_api == "blas" and "faiss" in os.path.basename(os.path.dirname(lib.filepath))]


def kmeans(vectors: np.ndarray, k: int, seed: int, iterations: int = 10, sample: int = 65536) -> np.ndarray:
    """Seeded k-means centroids (k, d) of ``vectors`` (on a seeded sample of at most ``sample`` rows).

    FAISS's k-means (``faiss.Kmeans``, native code that releases the interpreter lock: a camera's scorer
    thread runs while its learner retrains; one OpenMP thread, so it does not take the scorer's core
    either). Same seed, same centroids.

        >>> x = np.array([[0.0], [0.1], [10.0], [10.1]], np.float32)
        >>> sorted(round(float(v), 2) for v in kmeans(x, 2, seed=0)[:, 0])
        [0.05, 10.05]
    """
    import faiss

    rng = np.random.default_rng(seed)
    x = vectors if len(vectors) <= sample else vectors[np.sort(rng.choice(len(vectors), sample, replace=False))]
    x = np.ascontiguousarray(x, np.float32)
    k = min(k, len(x))
    if k <= 1:
        return x.mean(axis=0, keepdims=True).astype(np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=int(seed) % (2 ** 31), min_points_per_centroid=1,
                      max_points_per_centroid=len(x), verbose=False)
    with _one_thread(faiss):
        km.train(x)
    return np.ascontiguousarray(km.centroids, np.float32)


def _merge(state: _State, keep: np.ndarray, added: np.ndarray, vectors: np.ndarray,
           add_list: np.ndarray) -> _State:
    """A new state: the kept rows of ``state`` and the added ones, each list's new rows after its kept ones.

    The held columns are taken in the new order in one gather (for the (d, n) vectors a take along the
    rows is 4x faster than scattering columns: ``streamad.bench.scripts.ivf_layout``), the few added ones
    then written in their places."""
    kept = np.flatnonzero(keep)
    kept_list = state.list_of[kept]
    order = np.argsort(add_list, kind="stable")
    a_list = add_list[order]
    nk, na = len(kept), len(a_list)
    pos_a = np.arange(na) + np.searchsorted(kept_list, a_list, side="right")  # the added rows' new places
    source = np.zeros(nk + na, np.int64)  # each new row's held column (0 where an added one goes)
    source[np.arange(nk) + np.searchsorted(a_list, kept_list, side="left")] = kept
    av = vectors[order]
    a_sq = _rowsq(av)
    columns = np.take(state.columns, source, axis=1) if state.size else np.empty((av.shape[1], nk + na), np.float32)
    columns[:, pos_a] = av.T
    source[pos_a] = state.size + np.arange(na)  # now into [held | added in list order], for the small arrays
    labels = np.concatenate([state.labels, added[order]])[source]
    sqnorms = np.concatenate([state.sqnorms, a_sq])[source]
    list_of = np.concatenate([state.list_of, a_list])[source]
    vector_sq = max(state.vector_sq, float(a_sq.max())) if na else state.vector_sq
    return _State.build(state.centroids, columns, labels, sqnorms, list_of, state.gaps, state.centroid_sq, vector_sq)


class _BoundsPay:
    """Whether bounded searches (``within``, ``expect``) pay on an index: a moving average of the share of
    probed lists they skipped. Below ``least`` (a texture, where nearly every list is within the bound of
    the answer and the bounded pass only adds its own cost) the next ``rest`` bounded searches are plain
    scans, then one bounded search measures again. Speed only: both paths keep the contracts of
    ``within`` and ``expect``. Read and written by the index's readers without a lock: a race changes
    only which path a query takes.

        >>> pay = _BoundsPay(least=0.25, rest=2, weight=1.0)
        >>> pay.note(0.1); [pay.bounded() for _ in range(4)]
        [False, False, True, True]
    """

    def __init__(self, least: float = 0.25, rest: int = 16, weight: float = 0.5) -> None:
        self.least, self.rest, self.weight = least, rest, weight
        self.share = 1.0  # skipped share, moving average (start: assume the bounds pay)
        self._plain = 0  # bounded searches left to run plain

    def bounded(self) -> bool:
        """Whether the next bounded search should use its bound."""
        if self._plain > 0:
            self._plain -= 1
            return False
        return True

    def note(self, skipped: float) -> None:
        """A bounded search skipped this share of its probed lists."""
        self.share += self.weight * (float(skipped) - self.share)
        if self.share < self.least:
            self._plain = self.rest
            self.share = self.least  # measured again after the rest: one good search lifts it back


class IVFIndex(BaseIndex):
    """Inverted-file index over labelled vectors (the contract of :class:`~streamad.index.base.BaseIndex`).

    ``nlist`` lists (0: chosen from the size at training, about ``sqrt(n)``), ``nprobe`` lists
    searched per query, exact search below ``exact_below`` vectors (on the torch ``device`` if one is
    named: with a GPU, a large ``exact_below`` makes every query exact); ``seed`` seeds k-means.
    """

    kind: ClassVar[str] = "ivf"

    def __init__(self, dim: int, nlist: int = 0, nprobe: int = 32, exact_below: int = 2000, seed: int = 0,
                 retrain_growth: float = 2.0, max_imbalance: float = 8.0, device: str = "numpy") -> None:
        for name, value, low in (("dim", dim, 1), ("nlist", nlist, 0), ("nprobe", nprobe, 1),
                                 ("exact_below", exact_below, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"IVFIndex.{name} must be an int >= {low}, got {value!r}")
        if not retrain_growth > 1.0 or not max_imbalance > 1.0:
            raise ValueError(f"IVFIndex.retrain_growth and max_imbalance must be > 1, got {retrain_growth!r}, "
                             f"{max_imbalance!r}")
        self.dim, self.nlist, self.nprobe = int(dim), int(nlist), int(nprobe)
        self.exact_below, self.seed = int(exact_below), int(seed)
        self.retrain_growth, self.max_imbalance = float(retrain_growth), float(max_imbalance)
        self.device = device  # exact search (below exact_below) on a torch device, e.g. "cuda"
        self._state = _State.empty(self.dim)
        self._trained_size = 0
        self.retrains = 0
        self._bounds_pay = _BoundsPay()

    @classmethod
    def from_config(cls, dim: int, config: IndexConfig, seed: int = 0) -> IVFIndex:
        """The IVF index an :class:`~streamad.config.IndexConfig` describes."""
        return cls(dim=dim, nlist=config.nlist, nprobe=config.nprobe, exact_below=config.exact_below, seed=seed,
                   device=config.device)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self._state.size

    def __contains__(self, label: object) -> bool:
        return bool((self._state.labels == int(label)).any())  # type: ignore[call-overload]

    @property
    def trained(self) -> bool:
        """Whether queries go through the lists (else exact search over everything)."""
        return self._state.centroids is not None

    def labels(self) -> np.ndarray:
        """The labels held (list by list)."""
        return self._state.labels.copy()

    def vectors(self) -> np.ndarray:
        """The vectors held, in the order of :meth:`labels` (a read-only view)."""
        out = self._state.vectors.view()
        out.flags.writeable = False
        return out

    def list_sizes(self) -> np.ndarray:
        return np.diff(self._state.bounds)

    # ------------------------------------------------------------------ changes
    def apply(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray, replace: bool = False) -> None:
        """Remove ``removed`` and add ``added`` (with ``vectors``) as ONE change: readers see all of it or none
        (see :meth:`BaseIndex.apply`: ``KeyError`` for a removed label not held, ``ValueError`` for a held
        label to add unless ``replace``; nothing changes then)."""
        added, vectors, removed = check_change(added, vectors, removed, self.dim)
        state = self._state
        again = check_held(lambda x: np.isin(x, state.labels), added, removed, replace)
        if len(again):
            removed = np.concatenate([removed, again])
        if not len(added) and not len(removed):
            return
        keep = ~np.isin(state.labels, removed) if len(removed) else np.ones(state.size, bool)
        add_list = np.zeros(len(added), np.int64) if state.centroids is None else self._assign(vectors, state.centroids)
        new = _merge(state, keep, added, vectors, add_list)
        self._state = new  # the one publication of this change
        if new.centroids is None:
            if new.size >= max(self.exact_below, 1):
                self._train(new.vectors, new.labels)
        elif new.size > self.retrain_growth * self._trained_size or self._imbalanced():
            self._train(new.vectors, new.labels)

    def _assign(self, vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        if not len(vectors):
            return np.zeros(0, np.int64)
        return _sq(vectors, centroids, _rowsq(centroids)).argmin(axis=1).astype(np.int64)

    def _imbalanced(self) -> bool:
        sizes = self.list_sizes()
        return len(sizes) > 1 and sizes.max() > self.max_imbalance * max(1.0, sizes.mean()) and sizes.max() > 256

    def _train(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """(Re)train the centroids on the vectors held and publish every vector reassigned."""
        n = len(labels)
        nlist = self.nlist or int(max(1, min(4096, round(np.sqrt(n)))))
        centroids = kmeans(vectors, nlist, seed=self.seed + self.retrains)
        assign = self._assign(vectors, centroids)
        order = np.argsort(assign, kind="stable")
        columns = np.ascontiguousarray(vectors.T[:, order])
        self._trained_size = n
        self.retrains += 1
        self._state = _State.build(centroids, columns, labels[order], _rowsq(columns.T), assign[order])

    # ------------------------------------------------------------------ queries
    def query(self, vectors: np.ndarray, k: int = 1, within: np.ndarray | None = None,
              expect: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float32 true L2, labels (m, k) int64) of the k nearest, nearest first; with
        ``within`` (k = 1), only the lists that may hold a vector nearer than it are scanned
        (:meth:`_query_within`); with ``expect``, the lists that may hold a vector within the expected
        distance first, then, for the queries whose nearest vector found lay beyond it, the lists that may
        hold one nearer than that vector (every probed list when none was found): the answer is the full
        scan's, or a nearer one (see :meth:`_query_within`; the contract of :meth:`BaseIndex.query`). Where the bounds skip little (a texture), the plain scan is cheaper and
        is used instead (:class:`_BoundsPay`)."""
        state = self._state  # one consistent version for the whole query
        q = check_query(state.size, self.dim, vectors, k)
        bound, guess = check_hints(within, expect, len(q), int(k))
        if state.centroids is None:
            dist, rows = exact_knn(state.vectors, q, int(k), device=self.device)
            return dist, state.labels[rows]
        if (bound is None and guess is None) or not self._bounds_pay.bounded():
            return self._query_lists(state, q, int(k))  # (keeps the contract of within and expect too)
        dist, labels, skipped = self._query_within(state, q, guess if bound is None else bound)
        self._bounds_pay.note(skipped)
        if bound is None:
            beyond = ~(dist[:, 0] <= guess)  # the answer lies beyond the guess: scan every probed list
            if beyond.any():  # within the nearest one found there (a held vector; inf: every probed list)
                found = dist[beyond, 0].astype(np.float64)
                dist[beyond], labels[beyond], _ = self._query_within(state, q[beyond], found)
        return dist, labels

    def _query_within(self, state: _State, q: np.ndarray,
                      within: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The nearest neighbour (k = 1) among each query's ``nprobe`` lists where it is nearer than
        ``within``, scanning only the lists that may hold such a vector.

        Each vector sits in the list of its nearest centroid, so a vector of list ``l`` lies beyond the
        bisector of ``c_l`` and the query's nearest centroid ``c_1``: it is at least
        ``(|q - c_l|^2 - |q - c_1|^2) / (2 |c_l - c_1|)`` from the query. A probed list whose bisector lies
        beyond ``within`` cannot hold a nearer vector and is skipped (:meth:`_needed`); the query's own
        list is always scanned. Where the nearest probed vector is nearer than ``within`` the answer is the
        one the scan of all ``nprobe`` lists gives (or a nearer one: the float32 shortlist re-ranked in
        float64 is drawn from fewer lists, so a vector that rounding kept off the full scan's shortlist
        may make this one); elsewhere it is a vector at least ``within`` away, or ``inf`` with label -1
        when no list was left to scan. The third value is the share of the probed lists skipped."""
        assert state.centroids is not None and state.gaps is not None
        m = len(q)
        probes, probe_d = self._probes(state, q)
        nprobe = probes.shape[1]
        own = probes[np.arange(m), probe_d.argmin(axis=1)]
        qi, slot = np.nonzero(self._needed(state, probe_d, own, probes, within, _rowsq(q)))
        rank, row = _scan(state, q, qi, probes[qi, slot])
        cand_d = np.full((m, nprobe), np.inf, np.float32)
        cand_i = np.full((m, nprobe), -1, np.int64)
        cand_d[qi, slot], cand_i[qi, slot] = rank, row
        dist, labels = self._rerank(q, cand_d, cand_i, state, 1)
        labels[~np.isfinite(dist)] = -1
        return dist, labels, 1.0 - len(qi) / max(1, m * nprobe)

    def _probes(self, state: _State, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's ``nprobe`` nearest lists (m, nprobe), in no order, and ``|q - c|^2 - |q|^2`` for
        each of them (float32)."""
        assert state.centroids is not None
        m, nlist = len(q), len(state.centroids)
        nprobe = min(self.nprobe, nlist)
        dc2 = -2.0 * (q @ state.centroids.T) + _rowsq(state.centroids)[None, :]
        probes = np.argpartition(dc2, nprobe - 1, axis=1)[:, :nprobe] if nprobe < nlist else \
            np.broadcast_to(np.arange(nlist), (m, nlist))
        return probes, np.take_along_axis(dc2, probes, axis=1)

    @staticmethod
    def _needed(state: _State, probe_d: np.ndarray, own: np.ndarray, probes: np.ndarray,
                within: np.ndarray, q_sq: np.ndarray) -> np.ndarray:
        """(m, nprobe) mask of the probed lists that may hold a vector nearer than ``within``: the query's
        own list, and those whose bisector with it is within ``within``, with the rounding slack of the
        assignment and of ``probe_d`` (float32, of the size of the squared norms ``q_sq`` of the queries)."""
        assert state.gaps is not None
        mine = probes == own[:, None]
        gap = state.gaps[own[:, None], probes]
        beyond = probe_d - probe_d[mine][:, None]  # |q - c_l|^2 - |q - c_1|^2 >= 0
        slack = state.slack + 1e-5 * q_sq[:, None]
        with np.errstate(invalid="ignore"):  # an infinite bound times the own list's zero gap
            return mine | (beyond - slack <= 2.0 * gap * within[:, None])

    def _query_lists(self, state: _State, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query against the lists of its ``nprobe`` nearest centroids: one GEMM per probed list for
        all the queries that probe it. Ranks by ``|v|^2 - 2 q.v`` (``|q|^2`` is the same for all of a
        query's candidates), then re-ranks the best candidates in float64. A query whose probed lists hold
        fewer than ``k`` vectors is answered by exact search."""
        assert state.centroids is not None
        m, nlist = len(q), len(state.centroids)
        probes, _ = self._probes(state, q)
        nprobe = probes.shape[1]
        per = 1 if k == 1 else k + _EXTRA
        cand_d = np.full((m, nprobe * per), np.inf, np.float32)
        cand_i = np.full((m, nprobe * per), -1, np.int64)
        flat_l = probes.reshape(-1)
        order = np.argsort(flat_l, kind="stable")
        flat_q, flat_slot = order // nprobe, order % nprobe
        starts = np.searchsorted(flat_l[order], np.arange(nlist + 1))
        rows = state.bounds
        columns, sqnorms = state.columns, state.sqnorms
        for li in np.flatnonzero(np.diff(starts)).tolist():
            lo, hi = int(rows[li]), int(rows[li + 1])
            if hi == lo:
                continue
            a, b = starts[li], starts[li + 1]
            qs, slots = flat_q[a:b], flat_slot[a:b]
            part = q[qs] @ columns[:, lo:hi]
            part *= -2.0
            part += sqnorms[lo:hi]
            if per == 1:
                best = part.argmin(axis=1)
                cand_d[qs, slots] = part[np.arange(len(qs)), best]
                cand_i[qs, slots] = lo + best
                continue
            take = min(per, hi - lo)
            top = np.argpartition(part, take - 1, axis=1)[:, :take] if take < hi - lo else \
                np.broadcast_to(np.arange(take), (len(qs), take))
            cols = slots[:, None] * per + np.arange(take)[None, :]
            cand_d[qs[:, None], cols] = np.take_along_axis(part, top, axis=1)
            cand_i[qs[:, None], cols] = lo + top
        dist, labels = self._rerank(q, cand_d, cand_i, state, k)
        short = np.diff(state.bounds)[probes].sum(axis=1) < k  # its probed lists hold fewer than k vectors
        if short.any():  # (a large k, or emptied lists): those queries are answered by exact search
            d_short, rows = exact_knn(state.vectors, q[short], k, device=self.device)
            dist[short], labels[short] = d_short, state.labels[rows]
        return dist, labels

    @staticmethod
    def _rerank(q: np.ndarray, cand_d: np.ndarray, cand_i: np.ndarray, state: _State,
                k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k + _EXTRA`` float32 candidates per query, re-ranked by float64 distances."""
        keep = min(cand_d.shape[1], k + _EXTRA)
        best = np.argpartition(cand_d, keep - 1, axis=1)[:, :keep] if keep < cand_d.shape[1] else \
            np.broadcast_to(np.arange(keep), cand_d.shape)
        idx = np.take_along_axis(cand_i, best, axis=1)
        valid = idx >= 0
        safe = np.where(valid, idx, 0)
        diff = state.rows(safe.ravel()).reshape(*safe.shape, -1).astype(np.float64) - q[:, None, :].astype(np.float64)
        dist = np.where(valid, np.sqrt(np.einsum("qkd,qkd->qk", diff, diff)), np.inf)
        labels = state.labels[safe]
        pick = np.lexsort((labels, dist), axis=1)[:, :k]
        return (np.take_along_axis(dist, pick, axis=1).astype(np.float32),
                np.take_along_axis(labels, pick, axis=1).astype(np.int64))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Parameters, centroids and lists as JSON scalars and numpy arrays (for persistence)."""
        state = self._state
        sizes = np.diff(state.bounds).astype(np.int64)  # the rows are stored list after list
        return {"kind": self.kind, "dim": self.dim, "nlist": self.nlist, "nprobe": self.nprobe,
                "exact_below": self.exact_below, "seed": self.seed, "retrain_growth": self.retrain_growth,
                "max_imbalance": self.max_imbalance, "trained_size": self._trained_size, "retrains": self.retrains,
                "trained": state.centroids is not None,
                "centroids": state.centroids if state.centroids is not None else np.zeros((0, self.dim), np.float32),
                "list_sizes": sizes, "vectors": self.vectors(), "labels": self.labels()}

    STATE_SCALARS = {"kind": "str", "dim": "int", "nlist": "int", "nprobe": "int", "exact_below": "int",
                     "seed": "int", "retrain_growth": "num", "max_imbalance": "num", "trained_size": "int",
                     "retrains": "int", "trained": "bool"}

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart | None = None) -> None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a
        ``state_dict`` that :meth:`from_state` cannot use.

            >>> idx = IVFIndex(dim=2, exact_below=0, nlist=2)
            >>> idx.add(np.array([7, 9]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
            >>> state = idx.state_dict(); IVFIndex.check_state(state)
            >>> state["list_sizes"] = np.array([2, 1]); IVFIndex.check_state(state)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            streamad.errors.StateError: .: inconsistent state (the IVF lists hold 3 vectors, the index 2)...
        """
        where = where or StatePart(".", "index")
        where.scalars(state, cls.STATE_SCALARS)
        d = state["dim"]
        if state["kind"] != "ivf" or d < 1 or state["nprobe"] < 1:
            raise where.inconsistent(f"IVF index of kind {state['kind']!r}, dim {d}, nprobe {state['nprobe']}")
        labels = where.array(state, "labels", (-1,), np.int64)
        where.array(state, "vectors", (len(labels), d), np.float32)
        sizes = where.array(state, "list_sizes", (-1,), np.int64)
        centroids = where.array(state, "centroids", (-1, d), np.float32)
        if int(sizes.sum()) != len(labels) or (sizes < 0).any():
            raise where.inconsistent(f"the IVF lists hold {int(sizes.sum())} vectors, the index {len(labels)}")
        if state["trained"] and len(centroids) != len(sizes):
            raise where.inconsistent(f"{len(centroids)} IVF centroids for {len(sizes)} lists")
        if len(np.unique(labels)) != len(labels):
            raise where.inconsistent("the IVF index holds a label twice")

    @classmethod
    def state_labels(cls, state: dict[str, Any]) -> np.ndarray:
        """The labels the state holds."""
        return np.asarray(state["labels"], np.int64)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> IVFIndex:
        """The index ``state_dict`` described."""
        idx = cls(dim=int(state["dim"]), nlist=int(state["nlist"]), nprobe=int(state["nprobe"]),
                  exact_below=int(state["exact_below"]), seed=int(state["seed"]),
                  retrain_growth=float(state["retrain_growth"]), max_imbalance=float(state["max_imbalance"]))
        idx._trained_size, idx.retrains = int(state["trained_size"]), int(state["retrains"])
        vectors = np.asarray(state["vectors"], np.float32)
        labels = np.asarray(state["labels"], np.int64)
        sizes = np.asarray(state["list_sizes"], np.int64)
        centroids = np.ascontiguousarray(state["centroids"], np.float32) if state["trained"] else None
        list_of = np.repeat(np.arange(len(sizes)), sizes) if centroids is not None else np.zeros(len(labels), np.int64)
        idx._state = _State.build(centroids, np.ascontiguousarray(vectors.T), labels, _rowsq(vectors), list_of)
        return idx
