"""The streaming engine's invariant (docs/DESIGN.md section 3): after every admit / evict / promote / retire /
reseed / scheduled push, the incremental nominal set (and every patch's channel) equals the batch
oracle's on the frames in the window with the same seeds.

Small random descriptor sets: values on a small integer grid (so distance ties really happen) or
clustered around a few patch "places" with outliers (so channels form and trimming trims), every
spread rule, both trimming paths. Hypothesis runs derandomized: the same examples every run.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streamad.core.association import NO_PAIR
from streamad.core.channels import associate, nominal_mask
from streamad.core.trim_kernel import trim_members
from streamad.core.trimming import trim_channel, trim_many
from streamad.config import SPREAD_RULES, ChannelConfig
from streamad.core.incremental import IncrementalChannels, SeedSchedule


def make_frames(rng: np.random.Generator, kind: str, n: int, p: int, d: int) -> list[np.ndarray]:
    """``n`` frames of ``p`` patches: 'grid' (integers 0..2, float64, many ties) or 'clustered' (float32)."""
    if kind == "grid":
        return [rng.integers(0, 3, size=(p, d)).astype(np.float64) for _ in range(n)]
    places = rng.integers(0, 4, size=(p, d)) * 3.0
    frames = []
    for _ in range(n):
        f = places + rng.normal(scale=0.3, size=(p, d))
        odd = rng.random(p) < 0.1  # outliers: a "defect" now and then
        f[odd] += rng.normal(scale=4.0, size=(int(odd.sum()), d))
        frames.append(f.astype(np.float32))
    return frames


def oracle_check(inc: IncrementalChannels) -> None:
    """Nominal mask and every patch's channel equal the oracle's on the window with the same seeds."""
    ids = inc.window_frames()
    got = inc.nominal_mask()
    if not ids:
        assert got.size == 0
        return
    desc = inc.window_descriptors()
    positions = [ids.index(s) for s in inc.seeds]
    ch_frame, ch_patch = inc.assignment()
    if not positions:  # no seed, no channel (the oracle's associate() cannot take an empty seed list)
        assert not got.any() and (ch_frame == NO_PAIR).all() and (ch_patch == NO_PAIR).all()
        return
    want = nominal_mask(desc, positions, inc.config)
    assert got.shape == want.shape
    assert (got == want).all(), f"nominal mismatch, seeds {inc.seeds} in window {ids}:\n{got}\nvs oracle\n{want}"
    assoc = associate(desc, positions)
    ch_index = np.where(ch_frame >= 0, np.searchsorted(np.asarray(ids), np.maximum(ch_frame, 0)), NO_PAIR)
    assert (ch_index == assoc.channel_frame).all() and (ch_patch == assoc.channel_patch).all(), \
        "channel membership differs from the oracle's association"


class ChannelMachine(RuleBasedStateMachine):
    """Random sequences of every engine operation, checked against the oracle after each one."""

    @initialize(
        p=st.integers(3, 8), d=st.integers(2, 4), window=st.integers(3, 8), seeds=st.integers(1, 3),
        spread=st.sampled_from(SPREAD_RULES), min_span=st.integers(0, 3),
        k_sigma=st.sampled_from([0.5, 1.0, 2.0, 3.0]), kind=st.sampled_from(["grid", "clustered"]),
        batched=st.booleans(), data_seed=st.integers(0, 2**16),
    )
    def setup(self, p, d, window, seeds, spread, min_span, k_sigma, kind, batched, data_seed):
        seeds = min(seeds, window - 1)
        config = ChannelConfig(seeds=seeds, min_span=min_span, k_sigma=k_sigma, spread=spread)
        self.inc = IncrementalChannels(window, config, batched_trim=batched)
        self.rng = np.random.default_rng(data_seed)
        self.frames = make_frames(self.rng, kind, 64, p, d)
        self.next_id = 0
        self.published: dict[int, np.ndarray] = {}

    def _frame(self) -> tuple[int, np.ndarray]:
        fid = self.next_id
        self.next_id += int(self.rng.integers(1, 3))  # ids increase, not always by one
        return fid, self.frames[fid % len(self.frames)]

    @precondition(lambda self: not self.inc.full)
    @rule(seed=st.booleans())
    def admit(self, seed):
        fid, desc = self._frame()
        self.inc.admit(fid, desc, seed=seed)

    @rule()
    def push(self):
        before = set(self.inc.seeds)
        fid, desc = self._frame()
        step = self.inc.push(fid, desc)
        assert len(self.inc.seeds) <= max(self.inc.config.seeds, len(before))
        assert len(set(self.inc.seeds) - before - {fid}) <= 1  # never more than one promotion per step
        assert step["promoted"] is None or step["promoted"] in self.inc.seeds

    @precondition(lambda self: len(self.inc) > 0)
    @rule()
    def evict(self):
        oldest = self.inc.window_frames()[0]
        assert self.inc.evict_oldest() == oldest

    @precondition(lambda self: len(self.inc) > len(self.inc.seeds))
    @rule(pick=st.integers(0, 100))
    def promote(self, pick):
        candidates = [f for f in self.inc.window_frames() if f not in self.inc.seeds]
        self.inc.promote(candidates[pick % len(candidates)])

    @precondition(lambda self: len(self.inc.seeds) > 0)
    @rule(pick=st.integers(0, 100))
    def retire(self, pick):
        seeds = self.inc.seeds
        self.inc.retire(seeds[pick % len(seeds)])

    @precondition(lambda self: 0 < len(self.inc.seeds) < len(self.inc))
    @rule(a=st.integers(0, 100), b=st.integers(0, 100))
    def reseed(self, a, b):
        seeds = self.inc.seeds
        others = [f for f in self.inc.window_frames() if f not in seeds]
        self.inc.reseed(seeds[a % len(seeds)], others[b % len(others)])

    @rule()
    def drain(self):
        changes = self.inc.drain_changes()
        for lab in changes.removed.tolist():
            assert lab in self.published, f"removed label {lab} was never added"
            del self.published[lab]
        for lab, vec in zip(changes.added.tolist(), changes.added_vectors):
            assert lab not in self.published, f"label {lab} added twice"
            self.published[lab] = vec
        want = {self.inc.label(f, p) for f, p in self.inc.nominal_keys()}
        assert set(self.published) == want
        for lab, vec in self.published.items():
            assert (vec == self.inc.descriptors(self.inc.key(lab)[0])[self.inc.key(lab)[1]]).all()

    @invariant()
    def matches_oracle(self):
        oracle_check(self.inc)


TestChannelMachine = ChannelMachine.TestCase
TestChannelMachine.settings = settings(max_examples=300, stateful_step_count=30, derandomize=True, database=None,
                                       deadline=None, suppress_health_check=[HealthCheck.too_slow])


class GrowingChannelMachine(ChannelMachine):
    """The same operations on a window whose slots start at one and double as frames arrive (memory that
    follows what the window holds): growth must not change a single answer."""

    @initialize(
        p=st.integers(3, 8), d=st.integers(2, 4), window=st.integers(3, 8), seeds=st.integers(1, 3),
        spread=st.sampled_from(SPREAD_RULES), min_span=st.integers(0, 3),
        k_sigma=st.sampled_from([0.5, 1.0, 2.0, 3.0]), kind=st.sampled_from(["grid", "clustered"]),
        batched=st.booleans(), data_seed=st.integers(0, 2**16),
    )
    def setup(self, p, d, window, seeds, spread, min_span, k_sigma, kind, batched, data_seed):
        super().setup(p, d, window, seeds, spread, min_span, k_sigma, kind, batched, data_seed)
        self.inc.INITIAL_CAPACITY = 1  # read at the first admission

    @invariant()
    def capacity_follows_the_window(self):
        if len(self.inc):
            assert len(self.inc) <= self.inc.capacity <= self.inc.window


TestGrowingChannelMachine = GrowingChannelMachine.TestCase
TestGrowingChannelMachine.settings = settings(max_examples=150, stateful_step_count=30, derandomize=True,
                                              database=None, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])


def test_memory_follows_what_the_window_holds():
    inc = IncrementalChannels(100_000, ChannelConfig(seeds=2, min_span=1))
    rng = np.random.default_rng(0)
    for i in range(70):
        inc.push(i, rng.normal(size=(16, 4)).astype(np.float32))
    assert inc.capacity == 128 and inc._x.shape == (128, 16, 4)  # not 100,000 slots


@pytest.mark.parametrize("spread", SPREAD_RULES)
@pytest.mark.parametrize("kind", ["grid", "clustered"])
def test_replay_without_eviction_equals_batch_inreach_with_the_first_d_seeds(spread, kind):
    rng = np.random.default_rng(1)
    frames = make_frames(rng, kind, 12, 6, 3)
    config = ChannelConfig(seeds=3, min_span=2, k_sigma=1.0, spread=spread)
    inc = IncrementalChannels(window=12, config=config)
    for i, f in enumerate(frames):
        step = inc.push(i, f)
        assert step["evicted"] is None and step["promoted"] is None
        want = nominal_mask(np.stack(frames[:i + 1]), list(range(min(3, i + 1))), config)
        assert (inc.nominal_mask() == want).all()
    assert inc.seeds == [0, 1, 2]


@pytest.mark.parametrize("spread", SPREAD_RULES)
def test_long_scheduled_stream_matches_oracle_and_keeps_seeds_spread(spread):
    rng = np.random.default_rng(7)
    frames = make_frames(rng, "clustered", 90, 8, 4)
    window, d = 12, 3
    inc = IncrementalChannels(window, ChannelConfig(seeds=d, min_span=2, spread=spread))
    promotions = []
    for i, f in enumerate(frames):
        step = inc.push(i, f)
        if step["promoted"] is not None:
            promotions.append(i)
        oracle_check(inc)
        assert 1 <= len(inc.seeds) <= d
    spacing = inc.schedule.spacing
    assert all(b - a >= spacing for a, b in zip(promotions, promotions[1:])), promotions  # never a burst
    assert len(inc.seeds) == d
    gaps = np.diff([inc.window_frames()[0]] + inc.seeds)
    assert gaps.max() <= 2 * spacing, (inc.seeds, inc.window_frames())  # spread over the window


def test_most_recent_eligible_frame_is_promoted():
    rng = np.random.default_rng(3)
    frames = make_frames(rng, "clustered", 12, 5, 3)
    inc = IncrementalChannels(4, ChannelConfig(seeds=1, min_span=1))
    for i in range(4):
        inc.push(i, frames[i])
    step = inc.push(4, frames[4], eligible=False)  # evicts seed 0; frame 4 may not become a seed
    assert step == {"evicted": 0, "promoted": 3, "seed": False}
    oracle_check(inc)


def test_evicting_the_last_seed_promotes_at_once_even_inside_the_spacing():
    rng = np.random.default_rng(4)
    frames = make_frames(rng, "grid", 12, 4, 2)
    inc = IncrementalChannels(3, ChannelConfig(seeds=1, min_span=0))
    for i in range(6):
        step = inc.push(i, frames[i])
        assert len(inc.seeds) == 1, step
        oracle_check(inc)


def numpy_trim(vectors: np.ndarray, config: ChannelConfig) -> np.ndarray:
    """The trimming rules written plainly in numpy (the former oracle): the kernel must agree with it
    wherever rounding cannot decide (a member within 1e-6 of its bound stays in either way)."""
    m = vectors.shape[0]
    keep = np.zeros(m, dtype=bool)
    if m <= config.min_span:
        return keep
    x = np.asarray(vectors, dtype=np.float64)
    mu = x.mean(axis=0)
    r = np.sqrt(((x - mu) ** 2).sum(axis=1))
    tol = 1e-6 * max(1.0, float(np.sqrt((mu * mu).sum())))
    k = float(config.k_sigma)
    bound = {"none": np.inf, "std": k * r.std(), "rms": k * np.sqrt((r * r).mean()),
             "zscore": r.mean() + k * r.std()}.get(config.spread)
    if bound is None:  # mad
        med = np.median(r)
        bound = med + k * 1.4826 * np.median(np.abs(r - med))
    keep = r <= bound + tol
    if int(keep.sum()) <= config.min_span:
        keep[:] = False
    return keep


@given(m=st.integers(1, 40), d=st.integers(1, 12), c=st.integers(1, 5), spread=st.sampled_from(SPREAD_RULES),
       min_span=st.integers(0, 4), k=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]), grid=st.booleans(),
       seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_batched_trim_is_bit_identical_to_trim_channel_and_agrees_with_numpy(m, d, c, spread, min_span, k, grid,
                                                                               seed, dtype):
    rng = np.random.default_rng(seed)
    if grid:
        v = rng.integers(0, 3, size=(c, m, d)).astype(dtype)
    else:
        v = (rng.normal(size=(c, m, d)) * rng.uniform(0.01, 100)).astype(dtype)
        v[:, :: 5] += 10.0
    config = ChannelConfig(min_span=min_span, k_sigma=k, spread=spread)
    want = np.stack([trim_channel(x, config) for x in v])
    assert (trim_many(v, config) == want).all()
    assert (want == np.stack([numpy_trim(x, config) for x in v])).all()


@pytest.mark.parametrize("shape", [(40, 17, 152), (3, 256, 152), (200, 5, 256), (7, 33, 3)])
@pytest.mark.parametrize("spread", SPREAD_RULES)
def test_trim_kernel_agrees_with_numpy_at_engine_sizes(shape, spread):
    v = (np.random.default_rng(shape[1]).normal(size=shape) * 7 + 3).astype(np.float32)
    v[:, 0] += 30.0  # one far member a channel
    config = ChannelConfig(min_span=3, k_sigma=1.0, spread=spread)
    got = trim_many(v, config)
    assert (got == np.stack([numpy_trim(x, config) for x in v])).all()
    if spread in ("zscore", "mad"):  # these rules cut some members here and keep the rest: the test can fail
        assert 0 < got.sum() < got.size


def test_trim_members_reads_channels_of_any_length_where_they_lie():
    """The engine's call: members scattered over (frame, patch), channels of different lengths, one call."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 20, 6)).astype(np.float32)
    x[4, 7] += 40.0  # an outlier in the first channel
    channels = [[(f, 7) for f in range(9)], [(f, (f * 3) % 20) for f in range(2, 8)], [(0, 1), (1, 2)]]
    slots = np.array([f for ch in channels for f, _ in ch])
    patches = np.array([p for ch in channels for _, p in ch])
    starts = np.concatenate([[0], np.cumsum([len(ch) for ch in channels])])
    config = ChannelConfig(min_span=2, k_sigma=1.0)
    got = trim_members(x, slots, patches, starts, config.spread, config.k_sigma, config.min_span)
    want = np.concatenate([trim_channel(x[slots[a:b], patches[a:b]], config) for a, b in zip(starts, starts[1:])])
    assert (got == want).all() and not got[4] and got[:4].all() and not got[-2:].any()
    with pytest.raises(ValueError, match="spread rule"):
        trim_members(x, slots, patches, starts, "iqr", 1.0, 2)


def test_the_check_catches_a_wrong_tie_rule(monkeypatch):
    """Ties must go to the earliest seed: with the seed order reversed, the comparison must fail."""
    # frame 2's patch 0 is at distance 1 from both seeds' patch 0: the oracle puts it in seed 0's channel
    frames = [np.array([[0.0], [100.0]]), np.array([[2.0], [100.0]]), np.array([[1.0], [50.0]])]
    inc = IncrementalChannels(3, ChannelConfig(seeds=2, min_span=0))
    for i, f in enumerate(frames):
        inc.push(i, f)
    oracle_check(inc)
    wrong = IncrementalChannels(3, ChannelConfig(seeds=2, min_span=0))
    original = IncrementalChannels._active_seeds
    monkeypatch.setattr(IncrementalChannels, "_active_seeds", lambda self: original(self)[::-1])
    for i, f in enumerate(frames):
        wrong.push(i, f)
    with pytest.raises(AssertionError, match="channel membership"):
        oracle_check(wrong)


def test_seed_schedule_validation_and_spacing():
    with pytest.raises(ValueError, match="seeds < window"):
        SeedSchedule(window=3, seeds=3)
    s = SeedSchedule(window=64, seeds=10)
    assert s.spacing == 6
    assert not s.promotion_due(5, 0)  # still an initial seed
    assert s.promotion_due(64, 9)  # no promotion yet
    s.promoted(64)
    assert not s.promotion_due(65, 9) and s.promotion_due(65, 0) and s.promotion_due(70, 9)


def test_admit_validates_its_input():
    inc = IncrementalChannels(3, ChannelConfig(seeds=1))
    inc.admit(5, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="increasing"):
        inc.admit(5, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        inc.admit(6, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        inc.admit(6, np.full((4, 2), np.nan))
    inc.admit(6, np.zeros((4, 2)))
    inc.admit(7, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="evict_oldest"):
        inc.admit(8, np.zeros((4, 2)))
    with pytest.raises(KeyError, match="not in the window"):
        inc.promote(99)
    with pytest.raises(ValueError, match="not a seed"):
        inc.retire(6)
    with pytest.raises(ValueError, match="window must be"):
        IncrementalChannels(2, ChannelConfig(seeds=2))
