"""An inverted-file (IVF) nominal index built for a sliding window: cheap to change, safe to read while it changes.

:class:`IVFIndex` (``kind="ivf"``) is the streaming engine's default index. The vectors are
partitioned by their nearest of ``nlist`` centroids (seeded k-means on the vectors held when the
index first reaches ``exact_below``); a query gets the answer that an exact search (float64 re-ranking)
of the ``nprobe`` lists whose centroids are nearest to it gives. Below ``exact_below`` vectors every
query is exact.

All lists are stored one after another in one array, each followed by room for more (a quarter of its
vectors, at least 8 rows). A change (:meth:`IVFIndex.apply`: the removed and added vectors of one
admission) assigns each added vector to its nearest centroid, writes it into a dead row of its list that
no reader can still read as held, else into the room after the list, and marks each removed vector dead
in a new copy of the ``alive`` mask (:func:`_append`): it costs what it changes, not what the index
holds. When a list's room runs out, or dead rows exceed a quarter of the
live ones, the index is laid out afresh in new arrays, dead rows dropped (:func:`_compact`: every held
vector copied once, as every change did before; measured in ``streamad bench-engine --mode engine``,
index column). No graph to repair either, where re-inserting into an HNSW graph cost milliseconds per
vector (docs/DESIGN.md section 4; ``streamad bench-engine --mode index`` measures both).

The nearest (k = 1, what the stream asks) comes from one compiled call (:mod:`streamad.index.ivf_scan`):
each query's own list first; then only the probed lists whose bisector with the query's own centroid
lies within the best distance found (a vector of such a list is nearer to that list's centroid than to
the query's own, so no nearer than the bisector), or within ``query(..., within=)`` where the caller
needs only nearer answers (the scorer asks the long-term memory only for patches nearer than the
window's own answer, the memory for its epsilon); in a list, the full distance only for the vectors
whose distance in the leading principal coordinates leaves a chance. Larger k: one matrix product per
probed list (:meth:`IVFIndex._query_lists`).

Readers see snapshots. A change's new state is published with one reference assignment, so a query
running in another thread while :meth:`~IVFIndex.apply` runs answers either entirely from the state
before the change or entirely from the state after it, never from a half-applied one: a reader pins
the version it reads, a change writes only rows that no pinned version holds (the room past the lists'
ends, or rows dead in every pinned version: :meth:`IVFIndex._reusable`), and what it marks dead is
marked in a new mask. Only one thread may write.

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

import dataclasses
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from streamad.config import IndexConfig
from streamad.index.base import BaseIndex, check_change, check_held, check_query, check_within
from streamad.index.exact import exact_knn
from streamad.index.ivf_rows import place_columns, place_rows
from streamad.index.ivf_scan import bundled_blas, nearest_in_lists, rerank
from streamad.index.label_rows import LabelRows
from streamad.index.label_rows import warm as warm_label_rows
from streamad.state_schema import StatePart

__all__ = ["IVFIndex"]

# Candidates kept per probed list and query before the exact float64 re-ranking (beyond k).
_EXTRA = 2
#: The compiled scan takes a list by one matrix product for a group of at least this many queries (else
#: lower bounds in principal coordinates first). The rule: the least group size at which one product (one
#: BLAS thread) costs at most 1.3 x the bound pass alone per pair on random data
#: (``python -m streamad.bench.scripts.scan_probe``, second table; docs/DESIGN.md section 4).
PRODUCT_FROM = 64


#: Room left after each list when the index is laid out, as a share of its vectors (at least SLACK_MIN
#: rows): a change writes its added vectors there and marks its removed ones dead, touching nothing else.
SLACK = 0.25
SLACK_MIN = 8
#: The index is laid out afresh (dead rows dropped) when a list's room runs out, or when dead rows exceed
#: this share of the live ones (a shrinking set never runs out of room).
DEAD_SHARE = 0.25


@dataclass(frozen=True)
class _State:
    """One consistent version of the index: what a query reads.

    List ``l`` owns rows ``region[l]:region[l + 1]`` of the buffers (``vectors``, ``labels``, ``sqnorms``
    and the principal coordinates ``proj``, (p, rows), column by column: the compiled scan's lower bounds,
    :mod:`streamad.index.ivf_scan`, on the ``basis`` learnt with the centroids); its vectors are rows
    ``region[l]:ends[l]``, of which the ``alive`` ones are held (a removed vector stays in its place, dead).
    The buffers are shared between versions: a change writes its added vectors into rows that no reader
    holds, the dead rows no reader can still read as held (their version's ``pins`` are all gone) and the
    room past ``ends``, and publishes a new version with its own ``ends``, ``alive`` and ``live``. A
    reader may read a dead row while it is written (the bounds pass reads whole lists) but never takes
    it; the rows its version holds are never written while it reads."""

    centroids: np.ndarray | None  # (nlist, d) float32; None while exact (one list, no room, nothing dead)
    vectors: np.ndarray  # (rows, d) float32, C-contiguous
    labels: np.ndarray  # (rows,) int64
    sqnorms: np.ndarray  # (rows,) float32
    region: np.ndarray  # (nlist + 1,) int64
    ends: np.ndarray  # (nlist,) int64
    alive: np.ndarray  # (rows,) bool
    live: np.ndarray  # (nlist,) int64: the vectors each list holds
    basis: np.ndarray | None = None  # (p, d) float32 orthonormal rows; None while exact
    proj: np.ndarray | None = None  # (p, rows) float32: basis @ vectors.T; None while exact
    gaps: np.ndarray | None = None  # (nlist, nlist) float64 distances between centroids; None while exact
    centroid_sq: np.ndarray | None = None  # (nlist,) float32 squared norms of the centroids
    vector_sq: float = 0.0  # the largest squared norm of a vector held since the centroids were trained
    version: int = 0  # counts the versions published
    #: Readers reading this version now (changed under the index's lock only): while any does, the rows it
    #: holds are not written (:meth:`IVFIndex._reusable`).
    pins: list[int] = dataclasses.field(default_factory=lambda: [0], compare=False, repr=False)

    @property
    def starts(self) -> np.ndarray:
        return self.region[:-1]

    @property
    def size(self) -> int:
        """How many vectors the version holds."""
        return int(self.live.sum())

    @property
    def dead(self) -> int:
        """How many rows within the lists' ends hold no vector of this version."""
        return int((self.ends - self.starts).sum()) - self.size

    def lists_of(self, rows: np.ndarray) -> np.ndarray:
        """The list each of ``rows`` belongs to (int64)."""
        return (np.searchsorted(self.region, rows, side="right") - 1).astype(np.int64)

    def held_rows(self) -> np.ndarray:
        """The rows of the vectors held, list after list (in each list, the order they came in)."""
        return np.flatnonzero(self.alive)

    @classmethod
    def layout(cls, centroids: np.ndarray | None, vectors: np.ndarray, labels: np.ndarray, list_of: np.ndarray,
               basis: np.ndarray | None = None, proj: np.ndarray | None = None, gaps: np.ndarray | None = None,
               centroid_sq: np.ndarray | None = None, vector_sq: float = 0.0, sqnorms: np.ndarray | None = None,
               version: int = 0, held: np.ndarray | None = None, added: np.ndarray | None = None,
               added_proj: np.ndarray | None = None) -> _State:
        """A state of ``vectors`` (with ``labels``) in the lists ``list_of``, each list's rows in the given
        order, with room after each (none while exact). ``proj`` (the vectors' principal coordinates),
        ``gaps``, ``sqnorms`` and the centroids' norms: computed from the centroids, basis and vectors unless
        given (a change passes them on: computed once per vector). A change passes its buffers instead:
        the vectors are rows ``held`` of ``vectors`` (and columns ``held`` of ``proj``) followed by ``added``
        (and ``added_proj``); each is copied once, to its place (:mod:`streamad.index.ivf_rows`)."""
        d = vectors.shape[1]
        held = np.arange(len(vectors)) if held is None else held
        added = np.zeros((0, d), np.float32) if added is None else added
        nlist = 1 if centroids is None else len(centroids)
        order = np.argsort(list_of, kind="stable")
        lists = list_of[order]
        sizes = np.bincount(lists, minlength=nlist).astype(np.int64)
        room = np.zeros(nlist, np.int64) if centroids is None else np.maximum(np.ceil(SLACK * sizes), SLACK_MIN)
        region = np.concatenate([[0], np.cumsum(sizes + room)]).astype(np.int64)
        rows = region[lists] + (np.arange(len(lists)) - np.concatenate([[0], np.cumsum(sizes)])[lists])
        total = int(region[-1])
        buf = np.empty((total, d), np.float32)  # the room past each list's end is never read
        place_rows(buf, rows, np.ascontiguousarray(vectors, np.float32), held, np.ascontiguousarray(added, np.float32),
                   order)
        sq = np.zeros(total, np.float32)
        sq[rows] = _rowsq(buf[rows]) if sqnorms is None else sqnorms[order]
        lab = np.full(total, -1, np.int64)
        lab[rows] = labels[order]
        alive = np.zeros(total, bool)
        alive[rows] = True
        if centroids is not None and gaps is None:
            c = centroids.astype(np.float64)
            csq = np.einsum("ij,ij->i", c, c)
            gaps = np.sqrt(np.maximum(csq[:, None] + csq[None, :] - 2.0 * (c @ c.T), 0.0))
            centroid_sq = _rowsq(centroids)
        vector_sq = max(vector_sq, float(sq.max()) if total else 0.0)
        pbuf = None
        if basis is not None:
            pbuf = np.empty((len(basis), total), np.float32)
            if proj is None:
                pbuf[:, rows] = basis @ buf[rows].T
            else:
                extra = np.zeros((len(basis), 0), np.float32) if added_proj is None else added_proj
                place_columns(pbuf, rows, np.ascontiguousarray(proj, np.float32), held,
                              np.ascontiguousarray(extra, np.float32), order)
        return cls(centroids, buf, lab, sq, region, region[:-1] + sizes, alive, sizes, basis, pbuf, gaps,
                   centroid_sq, vector_sq, version)

    @property
    def slack(self) -> float:
        """How far (in squared distance) float32 rounding may have put a vector on the wrong side of the
        bisector between its centroid and another when it was assigned to the nearer one: a generous 1e-5
        of the squared norms (float32 keeps 6e-8 of each product; a 152-term sum stays well inside)."""
        top = 0.0 if self.centroid_sq is None or not len(self.centroid_sq) else float(self.centroid_sq.max())
        return 1e-5 * (top + self.vector_sq) + 1e-12

    @classmethod
    def empty(cls, dim: int) -> _State:
        return cls.layout(None, np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))


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


def principal_basis(vectors: np.ndarray, dims: int) -> np.ndarray:
    """(dims, d) float32: the ``dims`` leading principal directions of ``vectors`` (orthonormal rows,
    largest variance first; signs fixed so that the same vectors give the same basis).

        >>> x = np.array([[0.0, 0.0], [4.0, 0.1], [8.0, -0.1]], np.float32)
        >>> principal_basis(x, 1).round(1).tolist()
        [[1.0, -0.0]]
    """
    x = vectors.astype(np.float64)
    x = x - x.mean(axis=0)
    _, vecs = np.linalg.eigh(x.T @ x)
    basis = vecs[:, ::-1][:, :dims].T
    basis *= np.where(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    return np.ascontiguousarray(basis, np.float32)


def projection_dims(dim: int) -> int:
    """How many principal coordinates the scan's lower bounds use: a quarter of the dimensions (the rule,
    docs/DESIGN.md section 4: patch descriptors keep most of their variance there)."""
    return max(1, dim // 4)


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
    return bundled_blas("faiss")


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


def _append(state: _State, gone: np.ndarray, added: np.ndarray, vectors: np.ndarray, add_list: np.ndarray,
            free: np.ndarray) -> tuple[_State, np.ndarray] | None:
    """The next version after a change written into the present buffers, and the rows written: ``gone``
    (rows) marked dead; each ``added`` vector (in list ``add_list``) written into a ``free`` row of its list
    (ascending; dead rows that no reader can still read as held), else into the room after the list's rows.
    None where a list's room does not take its vectors or the dead rows would exceed ``DEAD_SHARE`` of the
    live ones: the caller lays the index out afresh (:func:`_compact`)."""
    assert state.centroids is not None and state.basis is not None and state.proj is not None
    nlist = len(state.ends)
    need = np.bincount(add_list, minlength=nlist).astype(np.int64)
    free_list = state.lists_of(free)
    have = np.bincount(free_list, minlength=nlist).astype(np.int64)
    ends = state.ends + np.maximum(need - have, 0)
    live = state.live + need
    if len(gone):
        live -= np.bincount(state.lists_of(gone), minlength=nlist)
    new = dataclasses.replace(state, ends=ends, live=live, version=state.version + 1, pins=[0])
    if (ends > state.region[1:]).any() or new.dead > DEAD_SHARE * new.size + SLACK_MIN:
        return None
    order = np.argsort(add_list, kind="stable")
    a_list = add_list[order]
    rank = np.arange(len(a_list)) - np.searchsorted(a_list, a_list, side="left")
    pos = state.ends[a_list] + rank - have[a_list]  # past the list's rows, after its free ones
    reuse = rank < have[a_list]
    if reuse.any():
        pos[reuse] = free[np.searchsorted(free_list, a_list[reuse], side="left") + rank[reuse]]
    av = vectors[order]
    a_sq = _rowsq(av)
    state.vectors[pos] = av
    state.sqnorms[pos] = a_sq
    state.labels[pos] = added[order]
    state.proj[:, pos] = state.basis @ av.T
    alive = state.alive.copy()
    alive[gone] = False
    alive[pos] = True
    vector_sq = max(state.vector_sq, float(a_sq.max())) if len(a_sq) else state.vector_sq
    return dataclasses.replace(new, alive=alive, vector_sq=vector_sq), pos


def _compact(state: _State, gone: np.ndarray, added: np.ndarray, vectors: np.ndarray,
             add_list: np.ndarray) -> _State:
    """The next version after a change, laid out afresh in new buffers: the held rows but ``gone`` (in row
    order), then the added ones, each list's new rows after its kept ones, with new room; no dead rows."""
    alive = state.alive.copy()
    alive[gone] = False
    rows = np.flatnonzero(alive)
    lists = state.lists_of(rows)
    with_proj = state.basis is not None and state.proj is not None
    return _State.layout(state.centroids, state.vectors, np.concatenate([state.labels[rows], added]),
                         np.concatenate([lists, add_list]), state.basis, state.proj if with_proj else None, state.gaps,
                         state.centroid_sq, state.vector_sq, np.concatenate([state.sqnorms[rows], _rowsq(vectors)]),
                         state.version + 1, held=rows, added=vectors,
                         added_proj=state.basis @ vectors.T if with_proj else None)


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
        # The writer's own (readers never see them): each held label's row; the rows of the present buffers
        # that a change may write (dead, and no reader can still read them as held); rows that died at a
        # version that readers may still hold, with that version; the versions replaced while read.
        self._row_of = LabelRows()  # compiled: its bulk operations run without the interpreter lock
        self._free = np.zeros(0, bool)
        self._pending: list[tuple[int, np.ndarray]] = []
        self._retired: list[_State] = []
        self._lock = threading.Lock()  # covers taking a version to read (``_State.pins``) and publishing one
        self._trained_size = 0
        self.retrains = 0
        #: Work done by k = 1 queries, summed: (query, list) scans, vectors bounded in projection, full
        #: distances after the bounds, distances by matrix product (``streamad.bench.scripts.scan_probe``).
        self.work = np.zeros(4, np.int64)
        #: A list is scanned by one matrix product for a group of at least this many queries
        #: (:mod:`streamad.index.ivf_scan`); speed only.
        self.product_from = PRODUCT_FROM

    @classmethod
    def from_config(cls, dim: int, config: IndexConfig, seed: int = 0) -> IVFIndex:
        """The IVF index an :class:`~streamad.config.IndexConfig` describes."""
        return cls(dim=dim, nlist=config.nlist, nprobe=config.nprobe, exact_below=config.exact_below, seed=seed,
                   device=config.device)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self._state.size

    def __contains__(self, label: object) -> bool:
        with self._reading() as state:
            return bool(((state.labels == int(label)) & state.alive).any())  # type: ignore[call-overload]

    @property
    def trained(self) -> bool:
        """Whether queries go through the lists (else exact search over everything)."""
        return self._state.centroids is not None

    def labels(self) -> np.ndarray:
        """The labels held (list by list)."""
        with self._reading() as state:
            return state.labels[state.held_rows()]

    def vectors(self) -> np.ndarray:
        """The vectors held, in the order of :meth:`labels` (a copy)."""
        with self._reading() as state:
            return state.vectors[state.held_rows()]

    def list_sizes(self) -> np.ndarray:
        """How many vectors each list holds."""
        return self._state.live.copy()

    # ------------------------------------------------------------------ changes
    def apply(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray, replace: bool = False) -> None:
        """Remove ``removed`` and add ``added`` (with ``vectors``) as ONE change: readers see all of it or none
        (see :meth:`BaseIndex.apply`: ``KeyError`` for a removed label not held, ``ValueError`` for a held
        label to add unless ``replace``; nothing changes then)."""
        added, vectors, removed = check_change(added, vectors, removed, self.dim)
        state, row_of = self._state, self._row_of
        again = check_held(row_of.contains, added, removed, replace)
        if len(again):
            removed = np.concatenate([removed, again])
        if not len(added) and not len(removed):
            return
        gone = row_of.rows(removed)
        add_list = np.zeros(len(added), np.int64) if state.centroids is None else self._assign(vectors, state.centroids)
        written = None if state.centroids is None else _append(state, gone, added, vectors, add_list,
                                                                 self._reusable())
        if written is not None:
            self._publish(written[0], removed, written[1], gone)  # the one publication of this change
        else:
            self._publish(_compact(state, gone, added, vectors, add_list))
        new = self._state
        if new.centroids is None:
            if new.size >= max(self.exact_below, 1):
                self._train(self.vectors(), self.labels())
        elif new.size > self.retrain_growth * self._trained_size or self._imbalanced():
            self._train(self.vectors(), self.labels())

    def _publish(self, new: _State, removed: np.ndarray | None = None, written: np.ndarray | None = None,
                 gone: np.ndarray | None = None) -> None:
        """Make ``new`` the version readers take (one reference assignment, under the lock) and bring the
        writer's bookkeeping up to date: after a change written in place (``removed`` labels, the ``written``
        rows, the ``gone`` rows), entry by entry, the old version kept while readers hold it and the gone
        rows pending until none can still read them; after a layout in new buffers, afresh (the old
        buffers are never written again, so no reader of them needs waiting for)."""
        with self._lock:
            old, self._state = self._state, new
            held = old.pins[0] > 0
        if written is not None and removed is not None and gone is not None:
            if held:
                self._retired.append(old)
            self._free[written] = False
            self._pending.append((old.version, gone))
            self._row_of.remove(removed)
            self._row_of.put(new.labels[written], written)
        else:
            rows = new.held_rows()
            self._row_of = LabelRows(new.labels[rows], rows)
            self._free = np.zeros(len(new.labels), bool)
            self._pending, self._retired = [], []

    def _reusable(self) -> np.ndarray:
        """The rows of the present buffers a change may write (ascending): dead, and dead in every version a
        reader still holds. Rows that died at version ``v`` (held in ``v``) become writable once no reader
        holds ``v`` or an older version."""
        with self._lock:
            self._retired = [s for s in self._retired if s.pins[0] > 0]
            oldest = min((s.version for s in self._retired), default=None)
        keep = []
        for version, rows in self._pending:
            if oldest is None or version < oldest:
                self._free[rows] = True
            else:
                keep.append((version, rows))
        self._pending = keep
        return np.flatnonzero(self._free)

    @contextmanager
    def _reading(self) -> Iterator[_State]:
        """The present version, held for reading until the block ends: no change writes the rows it holds."""
        with self._lock:
            state = self._state
            state.pins[0] += 1
        try:
            yield state
        finally:
            with self._lock:
                state.pins[0] -= 1

    def _assign(self, vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        if not len(vectors):
            return np.zeros(0, np.int64)
        return _sq(vectors, centroids, _rowsq(centroids)).argmin(axis=1).astype(np.int64)

    def _basis(self, vectors: np.ndarray, seed: int) -> np.ndarray:
        """The leading principal directions of ``vectors`` (a seeded sample of at most 65,536)."""
        n = len(vectors)
        sample = vectors if n <= 65536 else vectors[np.sort(np.random.default_rng(seed).choice(
            n, 65536, replace=False))]
        return principal_basis(sample, projection_dims(self.dim))

    def _imbalanced(self) -> bool:
        sizes = self.list_sizes()
        return len(sizes) > 1 and sizes.max() > self.max_imbalance * max(1.0, sizes.mean()) and sizes.max() > 256

    def _train(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """(Re)train the centroids and the principal basis on the vectors held and publish every vector
        reassigned."""
        n = len(labels)
        nlist = self.nlist or int(max(1, min(4096, round(np.sqrt(n)))))
        centroids = kmeans(vectors, nlist, seed=self.seed + self.retrains)
        basis = self._basis(vectors, self.seed + self.retrains)
        assign = self._assign(vectors, centroids)
        self._trained_size = n
        self.retrains += 1
        self._publish(_State.layout(centroids, np.ascontiguousarray(vectors, np.float32), labels, assign, basis))

    # ------------------------------------------------------------------ queries
    def query(self, vectors: np.ndarray, k: int = 1,
              within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float32 true L2, labels (m, k) int64) of the k nearest, nearest first.

        k = 1 runs the compiled scan (:meth:`_query_nearest`); with ``within``, only vectors nearer than
        it are sought. Larger k: one matrix product per probed list (:meth:`_query_lists`)."""
        with self._reading() as state:  # one consistent version for the whole query, held while it runs
            q = check_query(state.size, self.dim, vectors, k)
            bound = check_within(within, len(q), int(k))
            if state.centroids is None:
                dist, rows = exact_knn(state.vectors, q, int(k), device=self.device)
                return dist, state.labels[rows]
            if k == 1:
                return self._query_nearest(state, q, bound)
            return self._query_lists(state, q, int(k))

    def _query_nearest(self, state: _State, q: np.ndarray,
                       within: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """k = 1 through :func:`streamad.index.ivf_scan.nearest_in_lists`: each query's own list, then only
        the probed lists whose bisector lies within its best distance so far (and ``within``), each vector's
        full distance only where its principal coordinates leave it a chance; the best three re-ranked in
        float64 as :meth:`_rerank` does. Where ``within`` is below every vector of the lists it would
        probe, the answer is ``inf`` with label -1; where those lists are all empty, exact search."""
        assert state.centroids is not None and state.gaps is not None and state.basis is not None
        dc2 = q @ state.centroids.T
        dc2 *= -2.0
        dc2 += state.centroid_sq[None, :]
        bound = np.full(len(q), np.inf) if within is None else within
        best_d, best_r, work = nearest_in_lists(state.vectors, state.sqnorms, state.proj, state.starts, state.ends,
                                                state.alive, state.gaps,
                                                q, q @ state.basis.T, dc2, bound, self.nprobe, state.slack,
                                                self.product_from)
        self.work += work  # (a race between readers only loses a count)
        dist, rows = rerank(state.vectors, state.labels, q, best_r)
        labels = np.where(rows >= 0, state.labels[rows], -1)
        lost = (rows < 0) & np.isinf(bound)  # every list it could probe is empty: exact search
        if lost.any():
            held = state.held_rows()
            d_lost, r_lost = exact_knn(state.vectors[held], q[lost], 1, device=self.device)
            dist[lost], labels[lost] = d_lost[:, 0], state.labels[held[r_lost[:, 0]]]
        return dist[:, None], labels[:, None]

    def _probes(self, state: _State, q: np.ndarray) -> np.ndarray:
        """Each query's ``nprobe`` nearest lists (m, nprobe), in no order."""
        assert state.centroids is not None and state.centroid_sq is not None
        m, nlist = len(q), len(state.centroids)
        nprobe = min(self.nprobe, nlist)
        dc2 = -2.0 * (q @ state.centroids.T) + state.centroid_sq[None, :]
        if nprobe < nlist:
            return np.argpartition(dc2, nprobe - 1, axis=1)[:, :nprobe]
        return np.broadcast_to(np.arange(nlist), (m, nlist))

    def _query_lists(self, state: _State, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query against the lists of its ``nprobe`` nearest centroids: one GEMM per probed list for
        all the queries that probe it. Ranks by ``|v|^2 - 2 q.v`` (``|q|^2`` is the same for all of a
        query's candidates), then re-ranks the best candidates in float64. A query whose probed lists hold
        fewer than ``k`` vectors is answered by exact search."""
        assert state.centroids is not None
        m, nlist = len(q), len(state.centroids)
        probes = self._probes(state, q)
        nprobe = probes.shape[1]
        per = k + _EXTRA
        cand_d = np.full((m, nprobe * per), np.inf, np.float32)
        cand_i = np.full((m, nprobe * per), -1, np.int64)
        flat_l = probes.reshape(-1)
        order = np.argsort(flat_l, kind="stable")
        flat_q, flat_slot = order // nprobe, order % nprobe
        starts = np.searchsorted(flat_l[order], np.arange(nlist + 1))
        rows_of, sqnorms = state.vectors, state.sqnorms
        for li in np.flatnonzero(np.diff(starts)).tolist():
            lo, hi = int(state.region[li]), int(state.ends[li])
            if not state.live[li]:
                continue
            a, b = starts[li], starts[li + 1]
            qs, slots = flat_q[a:b], flat_slot[a:b]
            part = q[qs] @ rows_of[lo:hi].T
            part *= -2.0
            part += sqnorms[lo:hi]
            part[:, ~state.alive[lo:hi]] = np.inf  # dead rows: never a candidate
            take = min(per, int(state.live[li]))
            top = np.argpartition(part, take - 1, axis=1)[:, :take] if take < hi - lo else \
                np.broadcast_to(np.arange(take), (len(qs), take))
            cols = slots[:, None] * per + np.arange(take)[None, :]
            cand_d[qs[:, None], cols] = np.take_along_axis(part, top, axis=1)
            cand_i[qs[:, None], cols] = lo + top
        dist, labels = self._rerank(q, cand_d, cand_i, state, k)
        short = state.live[probes].sum(axis=1) < k  # its probed lists hold fewer than k vectors
        if short.any():  # (a large k, or emptied lists): those queries are answered by exact search
            held = state.held_rows()
            d_short, rows = exact_knn(state.vectors[held], q[short], k, device=self.device)
            dist[short], labels[short] = d_short, state.labels[held[rows]]
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
        diff = state.vectors[safe].astype(np.float64) - q[:, None, :].astype(np.float64)
        dist = np.where(valid, np.sqrt(np.einsum("qkd,qkd->qk", diff, diff)), np.inf)
        labels = state.labels[safe]
        pick = np.lexsort((labels, dist), axis=1)[:, :k]
        return (np.take_along_axis(dist, pick, axis=1).astype(np.float32),
                np.take_along_axis(labels, pick, axis=1).astype(np.int64))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Parameters, centroids and lists as JSON scalars and numpy arrays (for persistence)."""
        with self._reading() as state:
            rows = state.held_rows()  # list after list
            vectors, labels = state.vectors[rows], state.labels[rows]
        sizes = state.live.astype(np.int64)
        return {"kind": self.kind, "dim": self.dim, "nlist": self.nlist, "nprobe": self.nprobe,
                "exact_below": self.exact_below, "seed": self.seed, "retrain_growth": self.retrain_growth,
                "max_imbalance": self.max_imbalance, "trained_size": self._trained_size, "retrains": self.retrains,
                "trained": state.centroids is not None,
                "centroids": state.centroids if state.centroids is not None else np.zeros((0, self.dim), np.float32),
                "list_sizes": sizes, "vectors": vectors, "labels": labels,
                "basis": state.basis if state.basis is not None else np.zeros((0, self.dim), np.float32)}

    #: Arrays a state may lack: saved before they existed, rebuilt by :meth:`from_state` (the basis).
    STATE_OPTIONAL = frozenset({"basis"})
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
        # saved before the compiled scan (no "basis"): from_state computes one from the vectors
        basis = where.array(state, "basis", (-1, d), np.float32) if "basis" in state else None
        if int(sizes.sum()) != len(labels) or (sizes < 0).any():
            raise where.inconsistent(f"the IVF lists hold {int(sizes.sum())} vectors, the index {len(labels)}")
        if state["trained"] and len(centroids) != len(sizes):
            raise where.inconsistent(f"{len(centroids)} IVF centroids for {len(sizes)} lists")
        if state["trained"] and basis is not None and not 1 <= len(basis) <= d:
            raise where.inconsistent(f"a trained IVF index with a principal basis of {len(basis)} directions "
                                     f"(1 to {d} expected)")
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
        basis = None
        if centroids is not None:  # any orthonormal basis gives true lower bounds: an older state gets one
            basis = (np.ascontiguousarray(state["basis"], np.float32) if "basis" in state
                     else idx._basis(vectors, idx.seed + idx.retrains))
        idx._publish(_State.layout(centroids, np.ascontiguousarray(vectors), labels, list_of, basis))
        return idx


def warm() -> None:
    """Load (or compile, on a machine's first run) the compiled scan, re-ranking and layout now rather than in
    the first query: a small index answers a query and lays itself out afresh, through the calls the
    stream makes, with their argument types (numba reads its cache on a process's first call)."""
    warm_label_rows()
    rng = np.random.default_rng(0)
    idx = IVFIndex(dim=8, exact_below=0, nlist=2, nprobe=2)
    idx.add(np.arange(16), rng.normal(size=(16, 8)).astype(np.float32))
    idx.query(rng.normal(size=(2, 8)).astype(np.float32))
    idx.query(rng.normal(size=(2, 8)).astype(np.float32), within=np.full(2, 1.0))
