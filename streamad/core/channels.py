"""Inter-Realization Channels in batch: association, channels and trimming over all frames (docs/DESIGN.md section 2).

This is the plain, readable implementation and the oracle the streaming engine is tested against.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(4, 8))                  # 4 patch "places", 8-d descriptors
    >>> frames = base[None] + 0.01 * rng.normal(size=(6, 4, 8))
    >>> nominal_mask(frames, seeds=[0], config=ChannelConfig(seeds=1, min_span=3)).all()
    np.True_
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamad.core.association import NO_PAIR, mutual_pairs
from streamad.config import ChannelConfig
from streamad.core.trimming import trim_channel

# A member within this fraction of the channel's mean norm from the mean is always kept: it is
# numerically at the mean, and float rounding must not decide its fate.


@dataclass(frozen=True)
class Association:
    """Which channel every patch joined.

    ``channel_frame[n, p]``/``channel_patch[n, p]`` name the channel head ``(seed frame, seed patch)``
    that patch ``p`` of frame ``n`` joined, or ``NO_PAIR``; ``distance`` is the pair distance. A seed's
    own patches head their channels (distance 0).
    """

    channel_frame: np.ndarray  # (N, P) int64
    channel_patch: np.ndarray  # (N, P) int64
    distance: np.ndarray  # (N, P) float64


def best_pair(distances: np.ndarray, seed_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick, for every patch, the closest of its mutual pairs over the seeds.

    ``distances`` and ``seed_patches`` are (S, P): row ``s`` holds the pairs with the ``s``-th seed in
    seed order (ascending frame index). Ties go to the earliest seed. Returns (seed row or -1,
    seed patch or -1, distance or inf).
    """
    if distances.shape[0] == 0:
        p = distances.shape[1]
        return np.full(p, NO_PAIR, np.int64), np.full(p, NO_PAIR, np.int64), np.full(p, np.inf)
    row = np.argmin(distances, axis=0)  # first minimum = earliest seed
    cols = np.arange(distances.shape[1])
    dist = distances[row, cols]
    has = np.isfinite(dist)
    row = np.where(has, row, NO_PAIR)
    patch = np.where(has, seed_patches[np.maximum(row, 0), cols], NO_PAIR)
    return row.astype(np.int64), patch.astype(np.int64), dist


def associate(descriptors: np.ndarray, seeds: Sequence[int]) -> Association:
    """Associate every non-seed frame's patches with the seeds (paper Algorithm 1).

    ``descriptors`` is (N, P, d); ``seeds`` are frame indices into it.
    """
    n_frames, n_patches = descriptors.shape[:2]
    seeds = sorted(int(s) for s in seeds)
    if len(set(seeds)) != len(seeds) or any(not 0 <= s < n_frames for s in seeds):
        raise ValueError(f"seeds must be distinct frame indices in [0, {n_frames}), got {seeds}")
    ch_frame = np.full((n_frames, n_patches), NO_PAIR, np.int64)
    ch_patch = np.full((n_frames, n_patches), NO_PAIR, np.int64)
    distance = np.full((n_frames, n_patches), np.inf)
    seed_set = set(seeds)
    for s in seeds:
        ch_frame[s] = s
        ch_patch[s] = np.arange(n_patches)
        distance[s] = 0.0
    for n in range(n_frames):
        if n in seed_set:
            continue
        pairs = [mutual_pairs(descriptors[s], descriptors[n]) for s in seeds]
        dists = np.stack([p.distance for p in pairs]) if pairs else np.zeros((0, n_patches))
        patches = np.stack([p.seed_patch for p in pairs]) if pairs else np.zeros((0, n_patches), np.int64)
        row, patch, dist = best_pair(dists, patches)
        ch_frame[n] = np.where(row >= 0, np.asarray(seeds, np.int64)[np.maximum(row, 0)], NO_PAIR)
        ch_patch[n] = patch
        distance[n] = dist
    return Association(ch_frame, ch_patch, distance)


def add_new_look_seeds(descriptors: np.ndarray, assoc: Association, extra: Sequence[int]) -> Association:
    """More seeds without splitting the channels there are: each frame of ``extra`` (in order) heads channels
    only for its patches that no earlier channel holds (its new looks), and every other patch of the data
    joins such a channel if the two are mutual nearest neighbours (the frame patch's nearest among the new
    looks, and the new look's nearest in that frame) and the pair is closer than the patch's current one.

    Plain extra seeds (a larger D) would also head channels for looks the first seeds already hold, and so
    split those channels and shorten their spans (the paper's "too many channel seeds"); a new-look seed
    costs (its new looks x P) distances per frame instead of P x P. Batch only (``InReachConfig.new_look_seeds``).

        >>> import numpy as np
        >>> x = np.zeros((4, 2, 1)); x[:, 1, 0] = [5.0, 20.0, 20.1, 20.2]  # patch 1: a look seed 0 lacks
        >>> a = associate(x, [0])
        >>> a.channel_frame[:, 1].tolist()                       # no channel for the 20s
        [0, -1, -1, -1]
        >>> b = add_new_look_seeds(x, a, [1])
        >>> b.channel_frame[:, 1].tolist(), b.channel_frame[:, 0].tolist()   # frame 1's 20 heads one
        ([0, 1, 1, 1], [0, 0, 0, 0])
    """
    ch_frame, ch_patch, distance = assoc.channel_frame.copy(), assoc.channel_patch.copy(), assoc.distance.copy()
    n_frames, n_patches = descriptors.shape[:2]
    heads = set(int(f) for f in np.unique(ch_frame[ch_frame == np.arange(n_frames)[:, None]]))
    for e in (int(v) for v in extra):
        if e in heads or not 0 <= e < n_frames:
            raise ValueError(f"new-look seeds must be frames in [0, {n_frames}) that are not seeds, got {e}")
        new = np.flatnonzero(ch_frame[e] == NO_PAIR)  # the patches of e no channel holds
        heads.add(e)
        if not len(new):
            continue
        ch_frame[e, new], ch_patch[e, new], distance[e, new] = e, new, 0.0
        looks = descriptors[e][new]
        for n in range(n_frames):
            if n in heads:
                continue
            pairs = mutual_pairs(looks, descriptors[n])
            better = (pairs.seed_patch != NO_PAIR) & (pairs.distance < distance[n])
            ch_frame[n, better] = e
            ch_patch[n, better] = new[pairs.seed_patch[better]]
            distance[n, better] = pairs.distance[better]
    return Association(ch_frame, ch_patch, distance)


def channel_members(assoc: Association) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Channels as ``{(seed frame, seed patch): [(frame, patch), ...]}``, members sorted, head included."""
    channels: dict[tuple[int, int], list[tuple[int, int]]] = {}
    frames, patches = np.nonzero(assoc.channel_frame >= 0)
    for n, p in zip(frames.tolist(), patches.tolist()):
        key = (int(assoc.channel_frame[n, p]), int(assoc.channel_patch[n, p]))
        channels.setdefault(key, []).append((n, p))
    for members in channels.values():
        members.sort()
    return channels


def nominal_from_channels(
    descriptors: np.ndarray, channels: dict[tuple[int, int], list[tuple[int, int]]], config: ChannelConfig
) -> np.ndarray:
    """Boolean (N, P) mask of nominal patches from channel membership lists."""
    mask = np.zeros(descriptors.shape[:2], dtype=bool)
    for members in channels.values():
        if len(members) <= config.min_span:
            continue
        idx = np.asarray(members)
        keep = trim_channel(descriptors[idx[:, 0], idx[:, 1]], config)
        mask[idx[keep, 0], idx[keep, 1]] = True
    return mask


def nominal_mask(descriptors: np.ndarray, seeds: Sequence[int], config: ChannelConfig,
                 new_look_seeds: Sequence[int] = ()) -> np.ndarray:
    """The batch oracle: which patches of ``descriptors`` (N, P, d) are nominal with these seeds (and
    these new-look seeds, :func:`add_new_look_seeds`; none in the paper's method)."""
    assoc = associate(descriptors, seeds)
    if len(new_look_seeds):
        assoc = add_new_look_seeds(descriptors, assoc, new_look_seeds)
    return nominal_from_channels(descriptors, channel_members(assoc), config)
