"""Association and trimming on hand-made descriptor sets whose answer is known by hand."""

import numpy as np
import pytest

from streamad.core.association import NO_PAIR, mutual_pairs, pairwise_distances
from streamad.core.channels import associate, channel_members, nominal_mask
from streamad.core.trimming import trim_channel
from streamad.config import ChannelConfig


def test_pairwise_distances_are_true_euclidean():
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 0.0], [6.0, 8.0]])
    np.testing.assert_allclose(pairwise_distances(a, b), [[0.0, 10.0], [5.0, 5.0]])


def test_mutual_pairs_by_hand():
    seed = np.array([[0.0], [10.0], [20.0]])
    frame = np.array([[9.0], [0.4], [0.6], [30.0]])
    pairs = mutual_pairs(seed, frame)
    # b0 <-> a1 (1.0), b1 <-> a0 (0.4); b2's nearest is a0 but a0 prefers b1; b3's nearest a2 prefers b0? no:
    # a2's nearest frame patch is b0 (11) vs b3 (10): b3 -> a2 mutual at 10.
    assert pairs.seed_patch.tolist() == [1, 0, NO_PAIR, 2]
    np.testing.assert_allclose(pairs.distance, [1.0, 0.4, np.inf, 10.0])


def test_mutual_pair_tie_goes_to_lowest_frame_patch():
    seed = np.array([[0.0]])
    frame = np.array([[1.0], [-1.0]])  # both at distance 1 from the only seed patch
    assert mutual_pairs(seed, frame).seed_patch.tolist() == [0, NO_PAIR]


def test_patch_joins_closest_seed_and_ties_go_to_earliest_seed():
    # frames 0, 1 are seeds; frame 2 patch 0 is equally close to both seeds' patch 0.
    d = np.array([
        [[0.0], [100.0]],   # seed 0
        [[2.0], [100.0]],   # seed 1
        [[1.0], [50.0]],    # frame 2: patch 0 at distance 1 from both seeds
        [[1.9], [100.0]],   # frame 3: patch 0 closer to seed 1 (0.1) than seed 0 (1.9)
    ])
    assoc = associate(d, seeds=[0, 1])
    assert (assoc.channel_frame[2, 0], assoc.channel_patch[2, 0]) == (0, 0)
    assert (assoc.channel_frame[3, 0], assoc.channel_patch[3, 0]) == (1, 0)
    # seeds head their own channels
    assert assoc.channel_frame[0].tolist() == [0, 0] and assoc.channel_patch[1].tolist() == [0, 1]
    members = channel_members(assoc)
    assert members[(0, 0)] == [(0, 0), (2, 0)]
    assert members[(1, 0)] == [(1, 0), (3, 0)]


def test_unpaired_patch_joins_nothing():
    d = np.array([[[0.0], [10.0]], [[0.1], [0.2]]])  # frame 1: both patches nearest to seed patch 0
    assoc = associate(d, seeds=[0])
    assert assoc.channel_frame[1].tolist() == [0, NO_PAIR]


def test_seeds_must_be_valid():
    with pytest.raises(ValueError, match="seeds must be distinct"):
        associate(np.zeros((3, 2, 1)), seeds=[0, 0])
    with pytest.raises(ValueError, match="seeds must be distinct"):
        associate(np.zeros((3, 2, 1)), seeds=[5])


@pytest.mark.parametrize("spread", ["std", "rms", "zscore", "none"])
def test_zero_spread_channel_is_kept_whole(spread):
    v = np.full((5, 3), 0.1)  # identical members: every r_i is (numerically) zero
    assert trim_channel(v, ChannelConfig(min_span=3, spread=spread)).all()


def test_span_rule_needs_more_than_min_span_members():
    v = np.zeros((3, 2))
    assert not trim_channel(v, ChannelConfig(min_span=3)).any()
    assert trim_channel(np.zeros((4, 2)), ChannelConfig(min_span=3)).all()


def test_spread_rules_by_hand():
    # r = distances to the mean of [0, 0, 0, 0, 10]: mean is 2 -> r = [2, 2, 2, 2, 8]
    v = np.array([[0.0], [0.0], [0.0], [0.0], [10.0]])
    # std(r) = 2.4: std rule with k=1 keeps r <= 2.4 -> the four zeros
    assert trim_channel(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="std")).tolist() == [True] * 4 + [False]
    # rms(r) = sqrt((4*4 + 64)/5) = 4: keeps r <= 4
    assert trim_channel(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="rms")).tolist() == [True] * 4 + [False]
    # zscore: mean(r) + 1*std(r) = 3.2 + 2.4 = 5.6
    assert trim_channel(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="zscore")).tolist() == [True] * 4 + [False]
    # with k large every rule keeps all
    for rule in ("std", "rms", "zscore"):
        assert trim_channel(v, ChannelConfig(min_span=3, k_sigma=10.0, spread=rule)).all()


def test_channel_dropped_when_trimming_leaves_too_few():
    v = np.array([[0.0], [0.0], [0.0], [0.0], [10.0]])
    # four members survive; with min_span=4 that is not more than min_span -> drop all
    assert not trim_channel(v, ChannelConfig(min_span=4, k_sigma=1.0, spread="std")).any()


def test_std_rule_rejects_most_of_a_homogeneous_high_dimensional_channel():
    """The reference statistic: in high dimension r_i concentrate and std(r) is small."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 256))
    std_kept = trim_channel(v, ChannelConfig(min_span=3, k_sigma=5.0, spread="std")).sum()
    zscore_kept = trim_channel(v, ChannelConfig(min_span=3, k_sigma=3.0, spread="zscore")).sum()
    assert std_kept == 0 and zscore_kept == 40


def test_nominal_mask_keeps_repeated_patches_and_rejects_a_defect():
    rng = np.random.default_rng(1)
    places = rng.normal(size=(6, 8)) * 10
    frames = places[None] + 0.05 * rng.normal(size=(10, 6, 8))
    frames[7, 2] += 40.0  # a defect in frame 7, patch 2
    mask = nominal_mask(frames, seeds=[0], config=ChannelConfig(seeds=1, min_span=3, k_sigma=3, spread="zscore"))
    assert not mask[7, 2]
    assert mask.sum() == mask.size - 1


def test_more_seeds_split_a_place_over_channels_and_shorten_spans():
    """Two seeds of the same scene share each place's members: spans shrink (paper, section 4.3)."""
    rng = np.random.default_rng(1)
    places = rng.normal(size=(6, 8)) * 10
    frames = places[None] + 0.05 * rng.normal(size=(10, 6, 8))
    assoc = associate(frames, seeds=[0, 1])
    spans = {key: len(m) for key, m in channel_members(assoc).items()}
    for p in range(6):
        assert spans.get((0, p), 0) + spans.get((1, p), 0) == 10  # every frame's patch p joined one of them


def test_association_on_a_torch_device_gives_the_same_nominal_set():
    """The same engine with the association on torch's CPU device: equal up to float32 rounding, so on
    data without near-ties the nominal set is the same (CUDA, where present, is checked the same way)."""
    import torch

    from streamad.core.incremental import IncrementalChannels

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(3)
    base = rng.normal(size=(12, 6))
    frames = [(base + 0.05 * rng.normal(size=(12, 6))).astype(np.float32) for _ in range(30)]
    want = IncrementalChannels(10, ChannelConfig(seeds=3, min_span=2))
    for i, f in enumerate(frames):
        want.push(i, f)
    for device in devices:
        got = IncrementalChannels(10, ChannelConfig(seeds=3, min_span=2, device=device))
        for i, f in enumerate(frames):
            got.push(i, f)
        assert got.nominal_keys() == want.nominal_keys() and got.seeds == want.seeds
    with pytest.raises(ValueError, match="ChannelConfig.device"):
        ChannelConfig(device="tpu")


def test_one_frames_nominal_patches_are_its_row_of_the_window_mask():
    from streamad.core.incremental import IncrementalChannels

    rng = np.random.default_rng(5)
    base = rng.normal(size=(12, 6))
    inc = IncrementalChannels(8, ChannelConfig(seeds=3, min_span=2))
    for i in range(20):
        inc.push(i, (base + 0.05 * rng.normal(size=(12, 6))).astype(np.float32))
    mask = inc.nominal_mask()
    assert mask.any()
    for row, frame_id in enumerate(inc.window_frames()):
        assert np.array_equal(inc.nominal_patches(frame_id), mask[row]), frame_id
