"""Vectors under caller labels in reusable slots: the bookkeeping of the exact and HNSW indexes.

    >>> import numpy as np
    >>> s = Slots(dim=2)
    >>> slots, new = s.assign(np.array([5, 6]), np.zeros((2, 2), np.float32))
    >>> slots.tolist(), new.tolist(), s.release(np.array([5])).tolist(), len(s)
    ([0, 1], [True, True], [0], 1)
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from streamad.state_schema import StatePart


class SlotViews:
    """The read views of an index that keeps its vectors in :class:`Slots` (``self._slots``), read under
    ``self._lock``: membership, the labels held and their vectors (the exact and HNSW indexes)."""

    _slots: Slots
    _lock: threading.Lock

    def __contains__(self, label: object) -> bool:
        return int(label) in self._slots.slot_of  # type: ignore[call-overload]

    def labels(self) -> np.ndarray:
        """The labels held, in slot order."""
        with self._lock:
            return self._slots.label_of_slot[self._slots.live_slots()]

    def vectors(self) -> np.ndarray:
        """The vectors held, (len, dim) float32 in the order of :meth:`labels` (a read-only copy)."""
        with self._lock:
            out = self._slots.vectors[self._slots.live_slots()]
        out.flags.writeable = False
        return out


class Slots:
    """Vectors under caller labels, in reusable slots (a slot freed by ``remove`` is taken by a later ``add``)."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
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

    def is_held(self, labels: np.ndarray) -> np.ndarray:
        """Which of ``labels`` are held (a bool mask)."""
        return np.fromiter((lab in self.slot_of for lab in labels.tolist()), bool, len(labels))

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
        """Free the slots of ``labels`` (held: the caller checked, :func:`streamad.index.base.check_held`)."""
        slots = np.asarray([self.slot_of.pop(lab) for lab in labels.tolist()], np.int64)
        self.live[slots] = False
        self.label_of_slot[slots] = -1
        self.free.extend(slots.tolist())
        return slots

    def live_slots(self) -> np.ndarray:
        """The slots in use, ascending."""
        return np.flatnonzero(self.live[:self.used])


    # ------------------------------------------------------------------ state (flat keys of the owner's state)
    #: The scalars of :meth:`state_dict` and their kinds (streamad.state_schema).
    STATE_SCALARS = {"dim": "int", "capacity": "int", "used": "int"}

    def state_dict(self) -> dict[str, Any]:
        """The slots (free list in order, so a restored index reuses them as this one would).

            >>> s = Slots(dim=2); _ = s.assign(np.array([5, 6]), np.ones((2, 2), np.float32))
            >>> back = Slots.from_state(s.state_dict()); back.slot_of, back.vectors[:2].tolist()
            ({5: 0, 6: 1}, [[1.0, 1.0], [1.0, 1.0]])
        """
        used = self.used
        return {"dim": self.dim, "capacity": self.capacity, "used": used, "vectors": self.vectors[:used],
                "label_of_slot": self.label_of_slot[:used], "live": self.live[:used],
                "free": np.asarray(self.free, np.int64),
                "slot_of_labels": np.fromiter(self.slot_of, np.int64, len(self)),
                "slot_of_slots": np.fromiter(self.slot_of.values(), np.int64, len(self))}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Slots:
        """The slots :meth:`state_dict` described."""
        sl, used = cls(int(state["dim"]), int(state["capacity"])), int(state["used"])
        sl.vectors[:used], sl.label_of_slot[:used] = state["vectors"], state["label_of_slot"]
        sl.live[:used] = state["live"]
        sl.used, sl.free = used, np.asarray(state["free"], np.int64).tolist()
        sl.slot_of = dict(zip(np.asarray(state["slot_of_labels"]).tolist(),
                              np.asarray(state["slot_of_slots"]).tolist()))
        return sl

    @classmethod
    def check_state(cls, state: dict[str, Any], where: StatePart) -> None:
        """Refuse (:class:`~streamad.errors.StateError`) slots whose arrays or bookkeeping disagree."""
        where.scalars(state, cls.STATE_SCALARS)
        used, cap, d = state["used"], state["capacity"], state["dim"]
        if not 0 <= used <= cap or d < 1:
            raise where.inconsistent(f"index slots used {used}, capacity {cap}, dim {d}")
        where.array(state, "vectors", (used, d), np.float32)
        labels = where.array(state, "label_of_slot", (used,), np.int64)
        live = where.array(state, "live", (used,), np.bool_)
        free = where.array(state, "free", (-1,), np.int64)
        keys = where.array(state, "slot_of_labels", (-1,), np.int64)
        vals = where.array(state, "slot_of_slots", (len(keys),), np.int64)
        if (len(keys) != live.sum() or len(np.unique(vals)) != len(vals) or ((vals < 0) | (vals >= used)).any()
                or not live[vals].all() or not np.array_equal(labels[vals], keys)
                or ((free < 0) | (free >= used)).any() or live[free].any()):
            raise where.inconsistent("the nominal index's slot bookkeeping does not agree with itself")
