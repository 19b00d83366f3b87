"""Incremental InReaCh over a sliding window of frames (docs/DESIGN.md section 3).

:class:`IncrementalChannels` holds the window's patch descriptors, the seed set, every non-seed
patch's mutual pairs with every seed, the channels and their trimmed (nominal) members, and keeps
them equal to the batch oracle (:func:`streamad.core.channels.nominal_mask` on the window with the same
seeds) after every operation, while touching only what changed:

- ``admit``: ``D`` mutual-pair computations (``P x P`` each) for the new frame, its patches join
  their best channels;
- ``evict_oldest``: the oldest frame's patches leave their channels (or, for a seed, its channels
  dissolve and their members fall back to their next best stored pair);
- ``promote`` / ``retire`` / ``reseed``: a window frame becomes a seed (associated with every
  non-seed window frame) or stops being one (associated with the remaining seeds).

Changed channels are re-trimmed lazily, once, when the nominal set is next read (``nominal_keys``,
``nominal_mask``, ``drain_changes``). Trimming runs the oracle's kernel (:mod:`streamad.core.trim_kernel`,
which :func:`streamad.core.trimming.trim_channel` runs too) on every changed channel at once, reading the
members where the window holds them, so the result is bit-identical to the oracle; ``batched_trim=False``
calls ``trim_channel`` channel by channel instead.

:class:`SeedSchedule` decides which frames are seeds: the first ``D`` admitted frames; afterwards one
promotion at a time, at least ``W // D`` admissions apart, of the most recent eligible frame whenever
fewer than ``D`` seeds are left in the window. ``push`` applies it.

    >>> import numpy as np
    >>> from streamad.core.channels import nominal_mask
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(6, 4))                          # 6 patch "places", 4-d
    >>> frames = [base + 0.01 * rng.normal(size=(6, 4)) for _ in range(8)]
    >>> inc = IncrementalChannels(window=5, config=ChannelConfig(seeds=2, min_span=2))
    >>> for i, f in enumerate(frames):
    ...     step = inc.push(i, f)
    >>> step
    {'evicted': 2, 'promoted': 7, 'seed': False}
    >>> inc.window_frames(), inc.seeds                          # seeds 0, 1 left; 5 and 7 promoted
    ([3, 4, 5, 6, 7], [5, 7])
    >>> positions = [inc.window_frames().index(s) for s in inc.seeds]
    >>> bool((inc.nominal_mask() == nominal_mask(inc.window_descriptors(), positions, inc.config)).all())
    True
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamad.core.association import NO_PAIR, mutual_pairs_stack
from streamad.core.channels import best_pair
from streamad.core.trim_kernel import trim_members
from streamad.core.trimming import trim_channel
from streamad.config import ChannelConfig
from streamad.errors import StateError
from streamad.state_schema import FIX, StatePart

@dataclass(frozen=True)
class NominalChanges:
    """Net change of the nominal set since the previous ``drain_changes``.

    Labels are ``frame_id * P + patch`` (see :meth:`IncrementalChannels.label`); ``added_vectors``
    (n, d) are the descriptors of ``added``.
    """

    added: np.ndarray  # (n,) int64
    added_vectors: np.ndarray  # (n, d)
    removed: np.ndarray  # (r,) int64


class SeedSchedule:
    """Which frames are seeds: the first ``seeds`` admitted frames, then renewals one at a time.

    After the initial seeds, a promotion happens when fewer than ``seeds`` seeds are in the window
    (the oldest ones leave with the window), at least ``spacing = max(1, window // seeds)``
    admissions after the previous one (at once if no seed is left), and takes the most recent
    eligible non-seed frame. Seeds thus stay spread over the window's time span, and the cost of a
    promotion (``W`` mutual-pair computations) is amortised over ``spacing`` admissions. While the
    window never evicts, the seeds are the first ``seeds`` frames: the batch algorithm's choice.
    When the window first fills, the initial seeds leave one per admission and are replaced at
    ``spacing`` intervals, so for about ``window`` admissions fewer seeds are in use.

        >>> s = SeedSchedule(window=8, seeds=2)
        >>> [s.is_initial_seed(i) for i in range(3)], s.spacing
        ([True, True, False], 4)
    """

    def __init__(self, window: int, seeds: int) -> None:
        if seeds < 1 or window <= seeds:
            raise ValueError(f"SeedSchedule needs 1 <= seeds < window, got seeds={seeds}, window={window}")
        self.window, self.seeds = int(window), int(seeds)
        self.spacing = max(1, self.window // self.seeds)
        self.last_promotion: int | None = None

    def is_initial_seed(self, admission: int) -> bool:
        """Whether the ``admission``-th admitted frame (0-based) is one of the initial seeds."""
        return admission < self.seeds

    def promotion_due(self, admission: int, n_seeds: int) -> bool:
        """Whether to promote after the ``admission``-th admission with ``n_seeds`` seeds in the window."""
        if self.is_initial_seed(admission) or n_seeds >= self.seeds:
            return False
        if n_seeds == 0 or self.last_promotion is None:
            return True
        return admission - self.last_promotion >= self.spacing

    def promoted(self, admission: int) -> None:
        self.last_promotion = admission


class IncrementalChannels:
    """The sliding-window InReaCh state; see the module docstring.

    ``window`` is the capacity ``W`` in frames; ``config`` gives ``D`` (``seeds``), ``min_span`` and the
    spread rule. Frames are identified by increasing non-negative integer ids. Descriptors are (P, d)
    arrays, stored as float32 if the first frame's are float32, else float64.
    """

    def __init__(self, window: int, config: ChannelConfig | None = None, batched_trim: bool = True) -> None:
        self.config = config or ChannelConfig()
        if not isinstance(window, (int, np.integer)) or window <= self.config.seeds:
            raise ValueError(f"window must be an int > the number of seeds ({self.config.seeds}), got {window!r}")
        self.window = int(window)
        self.batched_trim = batched_trim
        self.schedule = SeedSchedule(self.window, self.config.seeds)
        self.admissions = 0  # frames admitted so far
        self._ids: deque[int] = deque()  # frame ids in the window, oldest first
        self._head = 0  # ring slot of the oldest frame
        self._last_id = -1
        self._eligible: dict[int, bool] = {}
        self._slot_of: dict[int, int] = {}
        self._allocated = False
        self._pending_removed: list[np.ndarray] = []
        self.stats = {"mutual_pairs": 0, "trimmed_channels": 0}

    # ------------------------------------------------------------------ layout
    # Window slots allocated at the first frame; doubled (up to ``window``) whenever they are all in use,
    # so memory follows what the window holds, not its configured size.
    INITIAL_CAPACITY = 64

    @property
    def capacity(self) -> int:
        """Frame slots allocated now (``<= window``)."""
        return self._cap if self._allocated else 0

    def _grow(self) -> None:
        """Double the slots (at most ``window``), the ring unrolled so that the oldest frame is slot 0."""
        old, new = self._cap, min(self.window, 2 * self._cap)
        order = self._order()
        n = len(order)

        def grown(a: np.ndarray, axis: int, fill: Any) -> np.ndarray:
            shape = list(a.shape)
            shape[axis] = new
            out = np.full(shape, fill, a.dtype)
            index = [slice(None)] * a.ndim
            index[axis] = slice(0, n)
            out[tuple(index)] = np.take(a, order, axis=axis)
            return out

        for name, axis, fill in (("x", 0, 0), ("frame", 0, -1), ("seed_j", 0, -1), ("pair_patch", 1, NO_PAIR),
                                 ("pair_dist", 1, np.inf), ("members", 2, NO_PAIR), ("assign_j", 0, NO_PAIR),
                                 ("assign_a", 0, NO_PAIR), ("nominal", 0, False), ("published", 0, False)):
            setattr(self, "_" + name, grown(getattr(self, "_" + name), axis, fill))
        self._head = 0
        self._slot_of = {f: i for i, f in enumerate(self._ids)}
        self._cap = new
        assert new > old

    def _allocate(self, descriptors: np.ndarray) -> None:
        p, d = descriptors.shape
        cap, dcap = min(self.window, self.INITIAL_CAPACITY), max(1, self.config.seeds)
        self.n_patches, self.dim = p, d
        self.dtype = np.float32 if descriptors.dtype == np.float32 else np.float64
        self._x = np.zeros((cap, p, d), self.dtype)  # ring buffer of descriptors
        self._frame = np.full(cap, -1, np.int64)  # frame id per slot
        self._seed_j = np.full(cap, -1, np.int64)  # seed index of a slot that is a seed
        self._seed_frame = np.full(dcap, -1, np.int64)  # frame id of seed index j (-1: unused)
        self._pair_patch = np.full((dcap, cap, p), NO_PAIR, np.int64)  # mutual seed patch of (slot, b)
        self._pair_dist = np.full((dcap, cap, p), np.inf)
        self._members = np.full((dcap, p, cap), NO_PAIR, np.int32)  # channel (j, a): member patch per slot
        self._assign_j = np.full((cap, p), NO_PAIR, np.int64)  # channel of (slot, b): seed index ...
        self._assign_a = np.full((cap, p), NO_PAIR, np.int64)  # ... and seed patch
        self._nominal = np.zeros((cap, p), bool)
        self._published = np.zeros((cap, p), bool)
        self._dirty = np.zeros((dcap, p), bool)
        self._arange_p = np.arange(p)
        self._cap = cap
        self._allocated = True

    # The saved state (``state_dict``; checked by ``check_state``). Scalars and their kinds (see
    # streamad.state_schema); then the arrays saved as they are (attribute ``_name``) with their shapes
    # (W window slots, P patches, S seed slots, d dimension) and dtypes. Besides those, ``ids``,
    # ``eligible`` and ``pending_removed`` are saved; everything else is derived.
    STATE_SCALARS = {"batched_trim": "bool", "admissions": "int", "last_promotion": "int?", "head": "int",
                     "last_id": "int", "allocated": "bool", "stats": "dict"}
    STATE_ARRAYS: dict[str, tuple[tuple[str, ...], tuple[type, ...]]] = {
        "x": (("W", "P", "d"), (np.float32, np.float64)), "frame": (("W",), (np.int64,)),
        "seed_j": (("W",), (np.int64,)), "seed_frame": (("S",), (np.int64,)),
        "pair_patch": (("S", "W", "P"), (np.int64,)), "pair_dist": (("S", "W", "P"), (np.float64,)),
        "members": (("S", "P", "W"), (np.int32,)), "assign_j": (("W", "P"), (np.int64,)),
        "assign_a": (("W", "P"), (np.int64,)), "nominal": (("W", "P"), (np.bool_,)),
        "published": (("W", "P"), (np.bool_,)), "dirty": (("S", "P"), (np.bool_,))}

    def state_dict(self) -> dict[str, Any]:
        """The full state as JSON scalars and numpy arrays (for :mod:`streamad.stream.persistence`).

            >>> inc = IncrementalChannels(4, ChannelConfig(seeds=1, min_span=1))
            >>> inc.push(0, np.ones((2, 3), np.float32)); back = IncrementalChannels.from_state(
            ...     inc.state_dict(), 4, inc.config)             # doctest: +ELLIPSIS
            {...}
            >>> back.window_frames(), back.seeds, back.descriptors(0).shape
            ([0], [0], (2, 3))
        """
        state: dict[str, Any] = {"batched_trim": self.batched_trim, "admissions": self.admissions,
                                 "last_promotion": self.schedule.last_promotion, "head": self._head,
                                 "last_id": self._last_id, "allocated": self._allocated, "stats": dict(self.stats)}
        if self._allocated:
            state["ids"] = np.fromiter(self._ids, np.int64, len(self._ids))
            state["eligible"] = np.array([self._eligible[f] for f in self._ids], bool)
            state["pending_removed"] = np.concatenate([np.zeros(0, np.int64), *self._pending_removed])
            state.update({name: getattr(self, "_" + name) for name in self.STATE_ARRAYS})
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], window: int, config: ChannelConfig) -> IncrementalChannels:
        """The channels ``state_dict`` described (arrays are used as given, not copied)."""
        inc = cls(window, config, batched_trim=bool(state["batched_trim"]))
        inc.admissions, inc._head, inc._last_id = int(state["admissions"]), int(state["head"]), int(state["last_id"])
        inc.schedule.last_promotion = state["last_promotion"]
        inc.stats = dict(state["stats"])
        if state["allocated"]:
            inc.n_patches, inc.dim = (int(v) for v in state["x"].shape[1:])
            inc.dtype, inc._arange_p, inc._allocated = state["x"].dtype.type, np.arange(inc.n_patches), True
            inc._cap = int(state["x"].shape[0])
            for name in cls.STATE_ARRAYS:
                setattr(inc, "_" + name, state[name])
            ids = state["ids"].tolist()
            inc._ids = deque(ids)
            inc._slot_of = {f: (inc._head + i) % inc._cap for i, f in enumerate(ids)}
            inc._eligible = dict(zip(ids, state["eligible"].tolist()))
            inc._pending_removed = [state["pending_removed"]] if len(state["pending_removed"]) else []
        return inc

    @classmethod
    def check_state(cls, state: dict[str, Any], window: int, config: ChannelConfig, n_patches: int,
                    where: StatePart | None = None) -> int | None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the field or file of ``where``) a
        ``state_dict`` that :meth:`from_state` cannot use for ``window`` frames of ``n_patches`` patches:
        scalar kinds, every array's shape and dtype, the ring buffer's frame ids. Returns the descriptor
        dimension (None before the first frame).

            >>> inc = IncrementalChannels(4, ChannelConfig(seeds=1, min_span=1))
            >>> _ = inc.push(0, np.ones((2, 3), np.float32))
            >>> IncrementalChannels.check_state(inc.state_dict(), 4, inc.config, n_patches=2)
            3
            >>> IncrementalChannels.check_state(inc.state_dict(), 4, inc.config, n_patches=3)
            Traceback (most recent call last):
            ...
            streamad.errors.StateError: channels.x.npy has shape (4, 2, 3) and dtype float32, but this state needs ...
        """
        where = where or StatePart(".", "channels")
        where.scalars(state, cls.STATE_SCALARS)
        for key in ("mutual_pairs", "trimmed_channels"):  # counters the engine adds to
            value = state["stats"].get(key, ...)
            if type(value) is not int:
                raise StateError(f"{where.manifest}: channels.stats.{key} is "
                                 f"{'missing' if value is ... else repr(value)}, expected int; {FIX}")
        if not state["allocated"]:
            return None
        x = where.array(state, "x", (-1, n_patches, -1), *cls.STATE_ARRAYS["x"][1])
        cap = x.shape[0]
        if not 1 <= cap <= window:
            raise where.inconsistent(f"{cap} window slots for a window of {window} frames")
        seed_slots = len(where.array(state, "seed_frame", (-1,), *cls.STATE_ARRAYS["seed_frame"][1]))
        if seed_slots < config.seeds:
            raise where.inconsistent(f"{seed_slots} seed slots for {config.seeds} seeds")
        size = {"W": cap, "P": n_patches, "S": seed_slots, "d": x.shape[2]}
        for name, (dims, dtypes) in cls.STATE_ARRAYS.items():
            where.array(state, name, tuple(size[k] for k in dims), *dtypes)
        where.array(state, "pending_removed", (-1,), np.int64)
        ids = where.array(state, "ids", (-1,), np.int64)
        where.array(state, "eligible", (len(ids),), np.bool_)
        head = state["head"]
        if len(ids) > cap or not 0 <= head < cap or not np.array_equal(
                state["frame"][(head + np.arange(len(ids))) % cap], ids):
            raise where.inconsistent("the window's frame ids do not match its ring buffer")
        seeds = state["seed_frame"][state["seed_frame"] >= 0]
        if not np.isin(seeds, ids).all():
            gone = int(seeds[~np.isin(seeds, ids)][0])
            raise where.inconsistent(f"seed frame {gone} (channels.seed_frame.npy) is not in the window "
                                     "(channels.ids.npy)")
        return int(x.shape[2])

    def _grow_seed_capacity(self) -> None:
        dcap = len(self._seed_frame)
        cap, p = self._cap, self.n_patches
        self._seed_frame = np.concatenate([self._seed_frame, np.full(dcap, -1, np.int64)])
        self._pair_patch = np.concatenate([self._pair_patch, np.full((dcap, cap, p), NO_PAIR, np.int64)])
        self._pair_dist = np.concatenate([self._pair_dist, np.full((dcap, cap, p), np.inf)])
        self._members = np.concatenate([self._members, np.full((dcap, p, cap), NO_PAIR, np.int32)])
        self._dirty = np.concatenate([self._dirty, np.zeros((dcap, p), bool)])

    def _order(self) -> np.ndarray:
        """Window slots, oldest frame first (= frame id order)."""
        return (self._head + np.arange(len(self._ids))) % self._cap

    def _slot(self, frame_id: int) -> int:
        slot = self._slot_of.get(int(frame_id))
        if slot is None:
            raise KeyError(f"frame {frame_id} is not in the window (frames {self.window_frames()})")
        return slot

    def _active_seeds(self) -> np.ndarray:
        """Seed indices j in seed frame order (the oracle's seed order; ties go to the earliest)."""
        js = np.flatnonzero(self._seed_frame >= 0)
        return js[np.argsort(self._seed_frame[js], kind="stable")]

    def _non_seed_slots(self) -> np.ndarray:
        order = self._order()
        return order[self._seed_j[order] < 0]

    # ------------------------------------------------------------------ public views
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def full(self) -> bool:
        return len(self._ids) == self.window

    @property
    def seeds(self) -> list[int]:
        """Frame ids of the seeds, ascending."""
        if not self._allocated:
            return []
        return sorted(int(f) for f in self._seed_frame[self._seed_frame >= 0])

    def window_frames(self) -> list[int]:
        """Frame ids in the window, oldest first."""
        return list(self._ids)

    def window_descriptors(self) -> np.ndarray:
        """The window's descriptors stacked oldest first, (n, P, d): the oracle's input."""
        if not self._ids:
            return np.zeros((0, 0, 0))
        return self._x[self._order()]

    def descriptors(self, frame_id: int) -> np.ndarray:
        """A copy of the stored (P, d) descriptors of a window frame."""
        return self._x[self._slot(frame_id)].copy()

    def label(self, frame_id: int, patch: int) -> int:
        """The integer label of a patch: ``frame_id * P + patch`` (stable while the frame is in the window)."""
        return int(frame_id) * self.n_patches + int(patch)

    def key(self, label: int) -> tuple[int, int]:
        """(frame_id, patch) of a label."""
        f, p = divmod(int(label), self.n_patches)
        return f, p

    def nominal_mask(self) -> np.ndarray:
        """(n, P) bool, window order: which patches are nominal (the oracle's ``nominal_mask``)."""
        self.flush()
        if not self._ids:
            return np.zeros((0, 0), bool)
        return self._nominal[self._order()].copy()

    def nominal_patches(self, frame_id: int) -> np.ndarray:
        """(P,) bool: which patches of one window frame are nominal (a row of :meth:`nominal_mask`)."""
        self.flush()
        return self._nominal[self._slot(frame_id)].copy()

    def nominal_keys(self) -> set[tuple[int, int]]:
        """The nominal patches as {(frame_id, patch)}."""
        mask = self.nominal_mask()
        ids = np.fromiter(self._ids, np.int64, len(self._ids))
        rows, cols = np.nonzero(mask)
        return set(zip(ids[rows].tolist(), cols.tolist()))

    def assignment(self) -> tuple[np.ndarray, np.ndarray]:
        """Every window patch's channel, window order: (seed frame id, seed patch), ``NO_PAIR`` for none.

        A seed's own patches head their channels: ``(its id, the patch itself)``.
        """
        if not self._ids:
            return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
        order = self._order()
        j = self._assign_j[order]
        frame = np.where(j >= 0, self._seed_frame[np.maximum(j, 0)], NO_PAIR)
        return frame, self._assign_a[order].copy()

    def nominal_count(self) -> int:
        self.flush()
        return int(self._nominal.sum()) if self._allocated else 0

    def drain_changes(self) -> NominalChanges:
        """Net additions and removals of nominal patches since the last call (for the nominal index)."""
        self.flush()
        if not self._allocated or not self._ids:
            removed = np.concatenate(self._pending_removed) if self._pending_removed else np.zeros(0, np.int64)
            self._pending_removed = []
            d = self.dim if self._allocated else 0
            return NominalChanges(np.zeros(0, np.int64), np.zeros((0, d), np.float32), removed)
        order = self._order()
        cur, pub = self._nominal[order], self._published[order]
        ids = self._frame[order]
        add_r, add_c = np.nonzero(cur & ~pub)
        rem_r, rem_c = np.nonzero(pub & ~cur)
        added = ids[add_r] * self.n_patches + add_c
        vectors = self._x[order[add_r], add_c]
        removed = np.concatenate(self._pending_removed + [ids[rem_r] * self.n_patches + rem_c])
        self._published[order] = cur
        self._pending_removed = []
        return NominalChanges(added.astype(np.int64), vectors, removed.astype(np.int64))

    # ------------------------------------------------------------------ channel bookkeeping
    def _detach(self, slots: np.ndarray, patches: np.ndarray) -> None:
        """Take patches (slot, b) out of their channels (those must be re-trimmed)."""
        j = self._assign_j[slots, patches]
        has = j >= 0
        slots, patches, j = slots[has], patches[has], j[has]
        a = self._assign_a[slots, patches]
        self._members[j, a, slots] = NO_PAIR
        self._dirty[j, a] = True
        self._assign_j[slots, patches] = NO_PAIR
        self._assign_a[slots, patches] = NO_PAIR
        self._nominal[slots, patches] = False

    def _attach(self, slots: np.ndarray, patches: np.ndarray, j: np.ndarray, a: np.ndarray) -> None:
        self._members[j, a, slots] = patches
        self._dirty[j, a] = True
        self._assign_j[slots, patches] = j
        self._assign_a[slots, patches] = a
        self._nominal[slots, patches] = False

    def _reassign(self, slots: np.ndarray) -> None:
        """Give every patch of the non-seed ``slots`` its best stored pair (``best_pair``), moving what changed."""
        if len(slots) == 0:
            return
        p = self.n_patches
        js = self._active_seeds()
        n = len(slots)
        if len(js):
            dist = self._pair_dist[js[:, None], slots[None, :]].reshape(len(js), n * p)
            patch = self._pair_patch[js[:, None], slots[None, :]].reshape(len(js), n * p)
            row, seed_patch, _ = best_pair(dist, patch)
            new_j = np.where(row >= 0, js[np.maximum(row, 0)], NO_PAIR).reshape(n, p)
            new_a = seed_patch.reshape(n, p)
        else:
            new_j = np.full((n, p), NO_PAIR, np.int64)
            new_a = np.full((n, p), NO_PAIR, np.int64)
        old_j, old_a = self._assign_j[slots], self._assign_a[slots]
        changed = (new_j != old_j) | (new_a != old_a)
        rows, cols = np.nonzero(changed)
        s = slots[rows]
        self._detach(s, cols)
        joins = new_j[rows, cols] >= 0
        self._attach(s[joins], cols[joins], new_j[rows, cols][joins], new_a[rows, cols][joins])

    def _associate(self, j: int, slots: np.ndarray) -> None:
        """Store the mutual pairs of seed j with each of ``slots`` (``mutual_pairs``, as the oracle)."""
        if not len(slots):
            return
        seed = self._x[self._slot(int(self._seed_frame[j]))]
        patch, dist = mutual_pairs_stack(seed, self._x[slots], self.config.device)
        self._pair_patch[j, slots] = patch
        self._pair_dist[j, slots] = dist
        self.stats["mutual_pairs"] += len(slots)

    def _associate_with_seeds(self, slot: int) -> None:
        """Store the mutual pairs of window slot ``slot`` with every active seed (one batched computation)."""
        js = self._active_seeds()
        if not len(js):
            return
        seeds = self._x[[self._slot(int(f)) for f in self._seed_frame[js].tolist()]]
        patch, dist = mutual_pairs_stack(seeds, self._x[slot], self.config.device)
        self._pair_patch[js, slot] = patch
        self._pair_dist[js, slot] = dist
        self.stats["mutual_pairs"] += len(js)

    def _clear_pairs(self, slot: int) -> None:
        self._pair_patch[:, slot] = NO_PAIR
        self._pair_dist[:, slot] = np.inf

    def _make_seed(self, slot: int) -> None:
        """Turn window slot ``slot`` (no memberships, no pairs) into a seed heading P channels."""
        free = np.flatnonzero(self._seed_frame < 0)
        if len(free) == 0:
            self._grow_seed_capacity()
            free = np.flatnonzero(self._seed_frame < 0)
        j = int(free[0])
        self._seed_frame[j] = self._frame[slot]
        self._seed_j[slot] = j
        self._members[j] = NO_PAIR
        self._pair_patch[j] = NO_PAIR
        self._pair_dist[j] = np.inf
        arange = self._arange_p
        self._attach(np.full(self.n_patches, slot), arange, np.full(self.n_patches, j), arange)
        others = self._non_seed_slots()
        self._associate(j, others)
        self._reassign(others)

    def _dissolve_seed(self, slot: int) -> None:
        """The seed in ``slot`` stops heading channels; members fall back to their next best pair."""
        j = int(self._seed_j[slot])
        members = self._assign_j == j
        rows, cols = np.nonzero(members)
        self._nominal[rows, cols] = False
        self._assign_j[rows, cols] = NO_PAIR
        self._assign_a[rows, cols] = NO_PAIR
        self._members[j] = NO_PAIR
        self._dirty[j] = False
        self._seed_frame[j] = -1
        self._seed_j[slot] = -1
        self._pair_patch[j] = NO_PAIR
        self._pair_dist[j] = np.inf
        affected = np.unique(rows)
        self._reassign(affected[(affected != slot) & (self._seed_j[affected] < 0)])

    # ------------------------------------------------------------------ operations
    def admit(self, frame_id: int, descriptors: np.ndarray, seed: bool = False, eligible: bool = True) -> None:
        """Add a frame to the window (it must not be full), as a seed or associated with the seeds.

        ``eligible`` says whether the schedule may later promote it to a seed.
        """
        descriptors = np.asarray(descriptors)
        if descriptors.ndim != 2 or descriptors.shape[0] < 1 or descriptors.shape[1] < 1:
            raise ValueError(f"descriptors must be a (P, d) array, got shape {descriptors.shape}")
        if self._allocated and descriptors.shape != (self.n_patches, self.dim):
            raise ValueError(f"descriptors must have shape ({self.n_patches}, {self.dim}) like the window's, "
                             f"got {descriptors.shape}")
        if descriptors.dtype.kind not in "fiu" or not np.isfinite(descriptors).all():
            raise ValueError("descriptors must be finite real numbers (found NaN, inf or a non-numeric dtype)")
        if not isinstance(frame_id, (int, np.integer)) or frame_id <= self._last_id:
            raise ValueError(f"frame ids must be increasing non-negative ints: got {frame_id!r} "
                             f"after {self._last_id}")
        if self.full:
            raise ValueError(f"the window is full ({self.window} frames): evict_oldest() first")
        if not self._allocated:
            self._allocate(descriptors)
        if len(self._ids) == self._cap:
            self._grow()
        slot = (self._head + len(self._ids)) % self._cap
        self._x[slot] = descriptors
        self._frame[slot] = frame_id
        self._seed_j[slot] = -1
        self._ids.append(int(frame_id))
        self._slot_of[int(frame_id)] = slot
        self._last_id = int(frame_id)
        self._eligible[int(frame_id)] = bool(eligible)
        self._clear_pairs(slot)
        self.admissions += 1
        if seed:
            self._make_seed(slot)
        else:
            self._associate_with_seeds(slot)
            self._reassign(np.asarray([slot]))

    def evict_oldest(self) -> int:
        """Remove the oldest frame from the window; returns its id. An evicted seed's channels dissolve."""
        if not self._ids:
            raise ValueError("the window is empty: nothing to evict")
        slot = self._head
        frame_id = self._ids[0]
        if self._seed_j[slot] >= 0:
            self._dissolve_seed(slot)
        else:
            self._detach(np.full(self.n_patches, slot), self._arange_p)
        self._clear_pairs(slot)
        published = np.flatnonzero(self._published[slot])
        if len(published):
            self._pending_removed.append(frame_id * self.n_patches + published)
        self._published[slot] = False
        self._nominal[slot] = False
        self._frame[slot] = -1
        self._ids.popleft()
        self._eligible.pop(frame_id, None)
        del self._slot_of[frame_id]
        self._head = (self._head + 1) % self._cap
        return frame_id

    def promote(self, frame_id: int) -> None:
        """Make a non-seed window frame a seed: its memberships go, every non-seed frame pairs with it."""
        slot = self._slot(frame_id)
        if self._seed_j[slot] >= 0:
            raise ValueError(f"frame {frame_id} is already a seed")
        self._detach(np.full(self.n_patches, slot), self._arange_p)
        self._clear_pairs(slot)
        self._make_seed(slot)

    def retire(self, frame_id: int) -> None:
        """A seed stops being one but stays in the window, associated with the remaining seeds."""
        slot = self._slot(frame_id)
        if self._seed_j[slot] < 0:
            raise ValueError(f"frame {frame_id} is not a seed (seeds: {self.seeds})")
        self._dissolve_seed(slot)
        self._clear_pairs(slot)
        self._associate_with_seeds(slot)
        self._reassign(np.asarray([slot]))

    def reseed(self, retire_id: int, promote_id: int) -> None:
        """Retire one seed and promote another frame."""
        self.retire(retire_id)
        self.promote(promote_id)

    def push(self, frame_id: int, descriptors: np.ndarray, eligible: bool = True) -> dict[str, int | bool | None]:
        """One step of the stream under the seed schedule: evict if full, admit, promote if due.

        Returns what happened: ``{"evicted": id or None, "promoted": id or None, "seed": bool}``.
        """
        evicted = self.evict_oldest() if self.full else None
        admission = self.admissions
        initial = self.schedule.is_initial_seed(admission) and len(self.seeds) < self.config.seeds
        self.admit(frame_id, descriptors, seed=initial, eligible=eligible)
        promoted = None
        if self.schedule.promotion_due(admission, len(self.seeds)):
            candidate = self._most_recent_eligible()
            if candidate is not None:
                self.promote(candidate)
                self.schedule.promoted(admission)
                promoted = candidate
        return {"evicted": evicted, "promoted": promoted, "seed": initial}

    def _most_recent_eligible(self) -> int | None:
        seeds = set(self.seeds)
        for f in reversed(self._ids):
            if f not in seeds and self._eligible.get(f, True):
                return f
        return None

    # ------------------------------------------------------------------ trimming
    def flush(self) -> int:
        """Re-trim every channel changed since the last flush; returns how many were re-trimmed."""
        if not self._allocated:
            return 0
        js, as_ = np.nonzero(self._dirty)
        if len(js) == 0:
            return 0
        self._dirty[js, as_] = False
        order = self._order()
        cols = self._members[js, as_][:, order]  # (channels, n): member patch per window frame
        mask = cols >= 0
        sizes = mask.sum(axis=1)
        ci, pi = np.nonzero(mask)  # channel-major, frame order within a channel: canonical order
        slots = order[pi]
        patches = cols[ci, pi].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        if self.batched_trim:  # every changed channel in one compiled call, members read in place
            keep = trim_members(self._x, slots, patches, starts, self.config.spread, self.config.k_sigma,
                                self.config.min_span)
        else:
            keep = np.zeros(len(ci), bool)
            for c in range(len(js)):
                lo, hi = starts[c], starts[c + 1]
                keep[lo:hi] = trim_channel(self._x[slots[lo:hi], patches[lo:hi]], self.config)
        self._nominal[slots, patches] = keep
        self.stats["trimmed_channels"] += len(js)
        return len(js)
