"""More seeds without splitting channels (InReachConfig.new_look_seeds, core.channels.add_new_look_seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.batch.inreach import InReaChPatchModel
from streamad.config import ChannelConfig, InReachConfig
from streamad.core.association import NO_PAIR
from streamad.core.channels import add_new_look_seeds, associate, channel_members


def brute_force(x: np.ndarray, seeds: list[int], extra: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The definition, one patch at a time: the channels of ``seeds``, then each extra seed heads its
    unassociated patches and takes every patch of a non-head frame that is its mutual nearest neighbour
    among those looks and closer than the patch's current pair."""
    a = associate(x, seeds)
    frame, patch, dist = a.channel_frame.copy(), a.channel_patch.copy(), a.distance.copy()
    heads = set(seeds)
    for e in extra:
        new = [p for p in range(x.shape[1]) if frame[e, p] == NO_PAIR]
        heads.add(e)
        for p in new:
            frame[e, p], patch[e, p], dist[e, p] = e, p, 0.0
        for n in range(len(x)):
            if n in heads or not new:
                continue
            for b in range(x.shape[1]):
                d_look = [np.linalg.norm(x[e, p] - x[n, b]) for p in new]
                a_best = new[int(np.argmin(d_look))]
                b_back = int(np.argmin([np.linalg.norm(x[e, a_best] - x[n, q]) for q in range(x.shape[1])]))
                d = float(np.linalg.norm(x[e, a_best] - x[n, b]))
                if b_back == b and d < dist[n, b]:
                    frame[n, b], patch[n, b], dist[n, b] = e, a_best, d
    return frame, patch


@pytest.mark.parametrize("case", range(6))
def test_new_look_seeds_equal_the_brute_force_definition(case):
    rng = np.random.default_rng(case)
    x = rng.normal(size=(9, 7, 3))
    seeds, extra = [0, 1], [2, 3] if case % 2 else [4]
    got = add_new_look_seeds(x, associate(x, seeds), extra)
    frame, patch = brute_force(x, seeds, extra)
    assert np.array_equal(got.channel_frame, frame) and np.array_equal(got.channel_patch, patch)


def _common_and_rare(n: int = 12, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Patch 0: one common look in every frame; patch 1: look A in most frames, a rare look B in some."""
    rng = np.random.default_rng(seed)
    rare = [3, 5, 8, 10]
    x = np.zeros((n, 2, 4))
    x[:, 0] = 1.0
    x[:, 1] = -1.0
    x[rare, 1] = 5.0
    return x + 0.01 * rng.normal(size=x.shape), rare


def test_new_looks_get_channels_without_splitting_the_ones_there_are():
    x, rare = _common_and_rare()
    plain = associate(x, [0])
    assert (plain.channel_frame[rare, 1] == NO_PAIR).all()       # seed 0 never shows the rare look
    more = add_new_look_seeds(x, plain, [3])                     # frame 3 shows it
    assert (more.channel_frame[rare, 1] == 3).all()              # the rare look has a channel now
    assert (more.channel_frame[:, 0] == 0).all()                 # the common look's channel stays whole
    channels = channel_members(more)
    assert len(channels[(0, 0)]) == 12 and len(channels[(3, 1)]) == 4
    # a plain second seed (D = 2) heads the common look too: its channel is split between the two seeds
    split = channel_members(associate(x, [0, 3]))
    assert (3, 0) in split and len(split[(0, 0)]) < 12


def test_the_model_uses_them_and_finds_more_of_the_set_nominal():
    x, rare = _common_and_rare(n=16)
    cfg = ChannelConfig(seeds=1, min_span=2, spread="none")
    plain = InReaChPatchModel(cfg).fit_descriptors(x, (1, 2))
    more = InReaChPatchModel(cfg, new_look_seeds=3).fit_descriptors(x, (1, 2))
    assert plain.seeds_ == [0] and more.seeds_ == [0] and more.new_look_seeds_ == [1, 2, 3]
    assert not plain.nominal_mask_[rare, 1].any() and more.nominal_mask_[rare, 1].all()


def test_bad_values_are_named_and_the_stream_refuses_them(tiny_dataset, capsys):
    with pytest.raises(ValueError, match="InReachConfig.new_look_seeds must be an int >= 0"):
        InReachConfig(new_look_seeds=-1)
    with pytest.raises(ValueError, match="not seeds, got 0"):
        add_new_look_seeds(np.zeros((3, 2, 2)), associate(np.zeros((3, 2, 2)), [0]), [0])
    from streamad.cli import main

    assert main(["eval", str(tiny_dataset), "--stream", "--new-look-seeds", "3", "--quiet"]) == 2
    assert "--new-look-seeds is for batch InReaCh" in capsys.readouterr().err
