"""Channel trimming (InReaCh step 3): which members of a channel are kept as nominal.

:func:`trim_channel` trims one channel (the batch oracle's arithmetic); :func:`trim_many` applies the
same arithmetic to many channels of equal length stacked along a batch axis (the incremental engine's
fast path), bit-identical row by row. Spread rules: ``std`` (the reference code's), ``rms``,
``zscore`` (the default), ``mad`` and ``none`` (docs/DESIGN.md section 2).
"""

from __future__ import annotations

import numpy as np

from streamad.config import ChannelConfig

# Relative tolerance added to every spread bound, so that members on the bound stay in whatever the
# summation order (relative to the channel mean's norm, at least 1).
REL_TOL = 1e-6


def trim_channel(vectors: np.ndarray, config: ChannelConfig) -> np.ndarray:
    """Span and spread trimming of one channel; ``vectors`` (m, d) in canonical member order.

    Returns a boolean mask of the nominal members (all False when the channel is dropped).

        >>> v = np.array([[0.0], [0.1], [0.2], [-0.1], [50.0]])
        >>> trim_channel(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="zscore")).tolist()
        [True, True, True, True, False]
    """
    m = vectors.shape[0]
    keep = np.zeros(m, dtype=bool)
    if m <= config.min_span:
        return keep
    x = np.asarray(vectors, dtype=np.float64)
    mu = x.mean(axis=0)
    r = np.sqrt(((x - mu) ** 2).sum(axis=1))
    tol = REL_TOL * max(1.0, float(np.sqrt((mu * mu).sum())))
    k = float(config.k_sigma)
    if config.spread == "none":
        keep[:] = True
    elif config.spread == "std":
        keep = r <= k * r.std() + tol
    elif config.spread == "rms":
        keep = r <= k * np.sqrt((r * r).mean()) + tol
    elif config.spread == "mad":
        med = np.median(r)
        keep = r <= med + k * 1.4826 * np.median(np.abs(r - med)) + tol
    else:  # zscore
        keep = r <= r.mean() + k * r.std() + tol
    if int(keep.sum()) <= config.min_span:
        keep[:] = False
    return keep


# Spread rules whose arithmetic ``trim_many`` reproduces; any other falls back to ``trim_channel``.
_BATCHED_RULES = ("std", "rms", "zscore", "mad", "none")


def channel_distances(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel means (C, d) and member distances to them (C, m) of (C, m, d) vectors, in float64.

    Bit-identical, row by row, to ``trim_channel``'s ``x.mean(axis=0)`` and
    ``sqrt(((x - mu) ** 2).sum(axis=1))`` on ``x = float64(vectors[c])`` (the same additions in the
    same order), without materialising the float64 copy.
    """
    mu = vectors.mean(axis=1, dtype=np.float64)
    diff = np.subtract(vectors, mu[:, None, :], dtype=np.float64)
    np.multiply(diff, diff, out=diff)
    return mu, np.sqrt(diff.sum(axis=2))


def trim_many(vectors: np.ndarray, config: ChannelConfig) -> np.ndarray:
    """``trim_channel`` on ``C`` channels of equal length at once: (C, m, d) to a (C, m) keep mask.

    Every operation is ``trim_channel``'s, applied along the batch axis, so each row's mask is
    bit-identical to ``trim_channel(vectors[c], config)`` (tests check this for every rule).

        >>> v = np.array([[[0.0], [0.1], [0.2], [-0.1], [50.0]]])
        >>> trim_many(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="zscore")).tolist()
        [[True, True, True, True, False]]
    """
    c, m = vectors.shape[:2]
    if m <= config.min_span or c == 0:
        return np.zeros((c, m), dtype=bool)
    if config.spread not in _BATCHED_RULES:
        return np.stack([trim_channel(v, config) for v in vectors])
    mu, r = channel_distances(vectors)
    tol = (REL_TOL * np.maximum(1.0, np.sqrt((mu * mu).sum(axis=1))))[:, None]
    k = float(config.k_sigma)
    if config.spread == "none":
        keep = np.ones((c, m), dtype=bool)
    elif config.spread == "std":
        keep = r <= k * r.std(axis=1)[:, None] + tol
    elif config.spread == "rms":
        keep = r <= k * np.sqrt((r * r).mean(axis=1))[:, None] + tol
    elif config.spread == "mad":
        med = np.median(r, axis=1)[:, None]
        keep = r <= med + k * 1.4826 * np.median(np.abs(r - med), axis=1)[:, None] + tol
    else:  # zscore
        keep = r <= r.mean(axis=1)[:, None] + k * r.std(axis=1)[:, None] + tol
    keep[keep.sum(axis=1) <= config.min_span] = False
    return keep
