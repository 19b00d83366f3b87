"""Channel trimming (InReaCh step 3): which members of a channel are kept as nominal.

:func:`trim_channel` trims one channel (the batch oracle); :func:`trim_many` many channels of equal
length stacked along a batch axis; the engine trims its changed channels where their members lie
(:func:`streamad.core.trim_kernel.trim_members`). All three are the one compiled kernel of
:mod:`streamad.core.trim_kernel`, so batch and stream are bit-identical by construction. Spread rules:
``std`` (the reference code's), ``rms``, ``zscore`` (the default), ``mad`` and ``none`` (docs/DESIGN.md
section 2).
"""

from __future__ import annotations

import numpy as np

from streamad.config import ChannelConfig
from streamad.core.trim_kernel import REL_TOL, trim_members

__all__ = ["REL_TOL", "trim_channel", "trim_many"]


def trim_channel(vectors: np.ndarray, config: ChannelConfig) -> np.ndarray:
    """Span and spread trimming of one channel; ``vectors`` (m, d) in canonical member order.

    Returns a boolean mask of the nominal members (all False when the channel is dropped).

        >>> v = np.array([[0.0], [0.1], [0.2], [-0.1], [50.0]])
        >>> trim_channel(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="zscore")).tolist()
        [True, True, True, True, False]
    """
    x = _floats(vectors)
    m = x.shape[0]
    return trim_members(x[None], np.zeros(m, np.int64), np.arange(m), np.array([0, m]), config.spread,
                        config.k_sigma, config.min_span)


def trim_many(vectors: np.ndarray, config: ChannelConfig) -> np.ndarray:
    """``trim_channel`` on ``C`` channels of equal length at once: (C, m, d) to a (C, m) keep mask, each row
    bit-identical to ``trim_channel(vectors[c], config)`` (the same kernel).

        >>> v = np.array([[[0.0], [0.1], [0.2], [-0.1], [50.0]]])
        >>> trim_many(v, ChannelConfig(min_span=3, k_sigma=1.0, spread="zscore")).tolist()
        [[True, True, True, True, False]]
    """
    x = _floats(vectors)
    c, m = x.shape[:2]
    keep = trim_members(x, np.repeat(np.arange(c), m), np.tile(np.arange(m), c), np.arange(c + 1) * m,
                        config.spread, config.k_sigma, config.min_span)
    return keep.reshape(c, m)


def _floats(vectors: np.ndarray) -> np.ndarray:
    """float32 and float64 as they are (the kernel reads either), anything else as float64; C order."""
    x = np.asarray(vectors)
    return np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))
