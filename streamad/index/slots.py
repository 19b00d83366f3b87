"""Vectors under caller labels in reusable slots: the bookkeeping both nominal indexes share.

    >>> import numpy as np
    >>> s = Slots(dim=2)
    >>> slots, new = s.assign(np.array([5, 6]), np.zeros((2, 2), np.float32))
    >>> slots.tolist(), new.tolist(), s.release(np.array([5])).tolist(), len(s)
    ([0, 1], [True, True], [0], 1)
"""

from __future__ import annotations

import numpy as np


class Slots:
    """Vectors under caller labels, in reusable slots (a slot freed by ``remove`` is taken by a later ``add``)."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        self.dim = int(dim)
        self.vectors = np.zeros((max(1, capacity), self.dim), np.float32)
        self.label_of_slot = np.full(max(1, capacity), -1, np.int64)
        self.live = np.zeros(max(1, capacity), bool)
        self.slot_of: dict[int, int] = {}
        self.free: list[int] = []  # freed slots, reused last-freed first
        self.used = 0  # slots ever handed out: [0, used)

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def capacity(self) -> int:
        return len(self.label_of_slot)

    def _grow(self, needed: int) -> None:
        cap = self.capacity
        if needed <= cap:
            return
        new = max(needed, 2 * cap)
        self.vectors = np.concatenate([self.vectors, np.zeros((new - cap, self.dim), np.float32)])
        self.label_of_slot = np.concatenate([self.label_of_slot, np.full(new - cap, -1, np.int64)])
        self.live = np.concatenate([self.live, np.zeros(new - cap, bool)])

    def check(self, labels: np.ndarray, vectors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"labels must be a 1-d array of integers, got shape {labels.shape} dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        if len(np.unique(labels)) != len(labels):
            raise ValueError("labels must be distinct within one call")
        if vectors is None:
            return labels, None
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape != (len(labels), self.dim):
            raise ValueError(f"vectors must have shape ({len(labels)}, {self.dim}) to match the labels and dim, "
                             f"got {vectors.shape}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        return labels, vectors

    def assign(self, labels: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots for ``labels`` (known labels keep theirs); returns (slots, was_new) and stores the vectors."""
        slots = np.empty(len(labels), np.int64)
        is_new = np.zeros(len(labels), bool)
        for i, lab in enumerate(labels.tolist()):
            s = self.slot_of.get(lab)
            if s is None:
                is_new[i] = True
            else:
                slots[i] = s
        n_new = int(is_new.sum())
        if n_new:
            reuse = min(n_new, len(self.free))
            taken = [self.free.pop() for _ in range(reuse)]
            fresh = list(range(self.used, self.used + n_new - reuse))
            self.used += len(fresh)
            self._grow(self.used)
            new_slots = np.asarray(taken + fresh, np.int64)
            slots[is_new] = new_slots
            for lab, s in zip(labels[is_new].tolist(), new_slots.tolist()):
                self.slot_of[lab] = s
        self.vectors[slots] = vectors
        self.label_of_slot[slots] = labels
        self.live[slots] = True
        return slots, is_new

    def release(self, labels: np.ndarray) -> np.ndarray:
        """Free the slots of ``labels``; a label that is not held raises ``KeyError``."""
        missing = [lab for lab in labels.tolist() if lab not in self.slot_of]
        if missing:
            raise KeyError(f"{len(missing)} label(s) are not in the index, e.g. {missing[0]}")
        slots = np.asarray([self.slot_of.pop(lab) for lab in labels.tolist()], np.int64)
        self.live[slots] = False
        self.label_of_slot[slots] = -1
        self.free.extend(slots.tolist())
        return slots

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.live[:self.used])


def check_query(n: int, dim: int, vectors: np.ndarray, k: int) -> np.ndarray:
    if n == 0:
        raise ValueError("the nominal index is empty: nothing is known to be nominal yet, so there is no "
                         "distance to report (wait until the detector is ready)")
    q = np.asarray(vectors)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"query vectors must have shape (m, {dim}), got {q.shape}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}] (the number of vectors held), got {k!r}")
    return np.ascontiguousarray(q, dtype=np.float32)
