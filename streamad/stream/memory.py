"""Long-term nominal memory beyond the window (``StreamConfig.memory``, docs/quality.md).

When a frame leaves the window, the patches its channels trusted (its nominal patches at that moment)
are offered to :class:`LongTermMemory`, a bounded, reference-counted epsilon-cover of the looks the
window has trusted before:

- a patch within ``epsilon`` of a remembered one *reinforces* it (count + 1, last seen = now);
- a farther one is remembered (a greedy cover within the offered batch: two new entries are never
  within ``epsilon`` of each other);
- entries not reinforced for ``max_age`` admissions are forgotten, and beyond ``capacity`` the least
  recently reinforced go first: a look the stream stops showing fades, so the engine still follows
  drift.

``epsilon`` 0 means automatic: ``epsilon_ratio`` times the median distance from the first leaving
patches to the window's nominal set (the scale of "the same look" on this scene). Scoring takes the
nearer of the window's nominal set and the memory. The window's own nominal set is not changed.

    >>> import numpy as np
    >>> from streamad.config import MemoryConfig
    >>> mem = LongTermMemory(MemoryConfig(capacity=100, epsilon=0.5), dim=2)
    >>> mem.absorb(np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0]], np.float32), now=1)
    >>> len(mem), mem.counts().tolist()                 # [0.1, 0] joined [0, 0]; [3, 0] is a new look
    (2, [2, 1])
    >>> [round(float(v), 3) for v in mem.query(np.array([[2.9, 0.0]], np.float32))]
    [0.1]
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from streamad.config import IndexConfig, MemoryConfig
from streamad.index import BaseIndex, IVFIndex, check_index_state, index_from_state, index_state_labels
from streamad.state_schema import StatePart


class LongTermMemory:
    """A bounded, reference-counted epsilon-cover of trusted patches that left the window.

    ``absorb(vectors, now)`` offers a leaving frame's trusted patches (``now``: the admission number);
    ``query(vectors)`` gives each vector's distance to the nearest remembered patch (``inf`` while empty).
    Reads (``query``) see one complete version of the memory: changes are published as one index change.
    """

    def __init__(self, config: MemoryConfig, dim: int, index: IndexConfig | None = None, seed: int = 0) -> None:
        self.config = config
        self.dim = int(dim)
        self.epsilon = float(config.epsilon)  # 0 until set from the first leaving patches (automatic)
        # Always the IVF index (its parameters from ``index``): cheap to change, read as atomic snapshots.
        self.index: BaseIndex = IVFIndex.from_config(self.dim, index or IndexConfig(kind="ivf"), seed=seed)
        self._labels = np.zeros(0, np.int64)  # increasing; row order of _count and _last
        self._count = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)
        self._next = 0
        self.absorbed = self.reinforced = self.forgotten = 0

    def __len__(self) -> int:
        return len(self._labels)

    def counts(self) -> np.ndarray:
        """How many leaving patches each remembered one stands for (insertion order)."""
        return self._count.copy()

    def set_scale(self, distances: np.ndarray) -> None:
        """Automatic epsilon: ``epsilon_ratio`` x the median of ``distances`` (leaving patches to the window's
        nominal set); kept from then on. A no-op once epsilon is set."""
        d = np.asarray(distances, np.float64)
        d = d[np.isfinite(d)]
        if self.epsilon <= 0 and len(d):
            self.epsilon = max(float(self.config.epsilon_ratio * np.median(d)), 1e-12)

    def query(self, vectors: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
        """(m,) float32 distance of each vector to the nearest remembered patch; ``inf`` when empty.

        ``within`` (m,): only distances up to it are needed (the scorer passes the window's own distances,
        as it keeps the nearer of the two); beyond it a distance may be any larger value or ``inf``, and the
        index scans less (:meth:`~streamad.index.base.BaseIndex.query`)."""
        q = np.ascontiguousarray(vectors, np.float32)
        index = self.index
        if len(index) == 0:
            return np.full(len(q), np.inf, np.float32)
        try:
            dist, _ = index.query(q, k=1, within=within)
        except ValueError:
            if len(index) == 0:
                return np.full(len(q), np.inf, np.float32)
            raise
        return dist[:, 0]

    def absorb(self, vectors: np.ndarray, now: int) -> None:
        """Offer a leaving frame's trusted patches (n, d); ``now`` is the admission number (for ageing)."""
        x = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        now = int(now)
        if self.epsilon <= 0:
            raise RuntimeError("LongTermMemory.epsilon is not set: call set_scale first (automatic epsilon)")
        new = np.ones(len(x), bool)
        if len(x) and len(self.index):
            dist, lab = self.index.query(x, k=1, within=np.full(len(x), self.epsilon))
            near = dist[:, 0] <= self.epsilon
            rows = np.searchsorted(self._labels, lab[near, 0])
            np.add.at(self._count, rows, 1)
            self._last[rows] = now
            self.reinforced += int(near.sum())
            new = ~near
        chosen, counts = self._cover(x[new])
        chosen, counts = chosen[:self.config.capacity], counts[:self.config.capacity]
        self.absorbed += len(chosen)
        labels = np.arange(self._next, self._next + len(chosen), dtype=np.int64)
        self._next += len(chosen)
        drop = self._to_forget(now, extra=len(chosen))
        keep = ~np.isin(self._labels, drop)
        self._labels = np.concatenate([self._labels[keep], labels])
        self._count = np.concatenate([self._count[keep], counts])
        self._last = np.concatenate([self._last[keep], np.full(len(chosen), now, np.int64)])
        self.forgotten += len(drop)
        if len(chosen) or len(drop):
            self.index.apply(labels, chosen, drop)  # one publication

    def summary(self) -> dict[str, Any]:
        """What the memory holds and has done: patches, epsilon, absorbed, reinforcements, forgotten."""
        return {"patches": len(self), "epsilon": self.epsilon, "absorbed": self.absorbed,
                "reinforced": self.reinforced, "forgotten": self.forgotten}

    # ------------------------------------------------------------------ state (persistence)
    STATE_SCALARS = {"dim": "int", "epsilon": "num", "next": "int", "absorbed": "int", "reinforced": "int",
                     "forgotten": "int"}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The memory's own bookkeeping and its index's ``state_dict`` (two parts of a saved state).

            >>> import numpy as np
            >>> from streamad.config import MemoryConfig
            >>> mem = LongTermMemory(MemoryConfig(capacity=10, epsilon=0.5), dim=2)
            >>> mem.absorb(np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0]], np.float32), now=1)
            >>> own, index = mem.state_dict()
            >>> back = LongTermMemory.from_state(own, index, mem.config)
            >>> len(back), back.counts().tolist(), back.epsilon
            (2, [2, 1], 0.5)
        """
        own = {"dim": self.dim, "epsilon": self.epsilon, "next": self._next, "absorbed": self.absorbed,
               "reinforced": self.reinforced, "forgotten": self.forgotten,
               "labels": self._labels.copy(), "count": self._count.copy(), "last": self._last.copy()}
        return own, self.index.state_dict()

    @classmethod
    def check_state(cls, own: dict[str, Any], index: dict[str, Any], where: StatePart,
                    where_index: StatePart) -> None:
        """Refuse (:class:`~streamad.errors.StateError` naming the field or file) a saved memory that
        :meth:`from_state` cannot use: bad scalars or arrays, or bookkeeping that disagrees with its index."""
        where.scalars(own, cls.STATE_SCALARS)
        labels = where.array(own, "labels", (-1,), np.int64)
        where.array(own, "count", (len(labels),), np.int64)
        where.array(own, "last", (len(labels),), np.int64)
        check_index_state(index, where_index)
        if index["dim"] != own["dim"]:
            raise where.inconsistent(f"the memory holds {own['dim']}-d patches, its index {index['dim']}-d ones")
        if len(labels) and ((np.diff(labels) <= 0).any() or labels[-1] >= own["next"]):
            raise where.inconsistent("the memory's labels are not increasing below its next label")
        held = index_state_labels(index)
        if not np.array_equal(np.sort(held), labels):
            raise where.inconsistent(f"the memory lists {len(labels)} patches, its index holds others "
                                     f"({len(held)})")

    @classmethod
    def from_state(cls, own: dict[str, Any], index: dict[str, Any], config: MemoryConfig) -> LongTermMemory:
        """The memory ``state_dict`` described, under ``config``."""
        mem = cls(config, int(own["dim"]))
        mem.index = index_from_state(index)
        mem.epsilon, mem._next = float(own["epsilon"]), int(own["next"])
        mem.absorbed, mem.reinforced, mem.forgotten = (int(own["absorbed"]), int(own["reinforced"]),
                                                       int(own["forgotten"]))
        mem._labels = np.asarray(own["labels"], np.int64).copy()
        mem._count = np.asarray(own["count"], np.int64).copy()
        mem._last = np.asarray(own["last"], np.int64).copy()
        return mem

    def _cover(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A greedy epsilon-cover of ``x``: the chosen rows and how many rows each stands for."""
        if not len(x):
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64)
        sq = (x * x).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
        chosen, counts = _greedy_cover(d2 <= self.epsilon ** 2)
        return x[chosen], counts

    def _to_forget(self, now: int, extra: int) -> np.ndarray:
        """Labels to forget: not reinforced for ``max_age`` admissions, then the least recently reinforced
        (fewest counts first among equals) beyond ``capacity`` once ``extra`` entries join."""
        cfg = self.config
        old = (now - self._last > cfg.max_age) if cfg.max_age else np.zeros(len(self._labels), bool)
        over = len(self._labels) - int(old.sum()) + extra - cfg.capacity
        if over > 0:
            alive = np.flatnonzero(~old)
            order = alive[np.lexsort((self._count[alive], self._last[alive]))]
            old[order[:over]] = True
        return self._labels[old]


@numba.njit(nogil=True, cache=True)
def _greedy_cover(within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Rows in order, each still free standing for itself and every free row ``within`` it: (the chosen
    rows, how many rows each stands for). Compiled: a leaving frame's few hundred trusted patches made the
    Python loop a few milliseconds of every admission.

        >>> w = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
        >>> [a.tolist() for a in _greedy_cover(w)]    # row 0 stands for 0 and 1; row 2 for itself
        [[0, 2], [2, 1]]
    """
    n = within.shape[0]
    free = np.ones(n, np.bool_)
    chosen = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        if not free[i]:
            continue
        c = 0
        for j in range(n):
            if free[j] and within[i, j]:
                free[j] = False
                c += 1
        chosen[k] = i
        counts[k] = c
        k += 1
    return chosen[:k], counts[:k]


def warm() -> None:
    """Load (or compile, on a machine's first run) the compiled cover now rather than at the first eviction."""
    _greedy_cover(np.ones((1, 1), bool))
