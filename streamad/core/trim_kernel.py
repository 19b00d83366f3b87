"""Channel trimming in one compiled pass (numba): the arithmetic of every trim, batch and stream.

A channel's members are trimmed by their distance to the channel's mean (InReaCh step 3,
:mod:`streamad.core.trimming`). The numpy form gathered the members of all changed channels into a
(C, m, d) array, grouped by length, and made five passes over a float64 copy of it (mean, difference,
square, sum, root): on the demo's synchronous stream that was 14-17 ms of each admission at W = 64, and it
grows with W (every changed channel is re-trimmed over all its members, as the oracle does). This pass
reads each member's row where it lies, twice (once for the mean, once for the distance), with float64
accumulators, and applies the spread rule in place: channels of any lengths in one call, no copy, and
no interpreter lock held.

The arithmetic (one definition, used by the batch oracle :func:`~streamad.core.trimming.trim_channel`
and by the engine, so that the two are bit-identical by construction):

- ``mu = (sum of the members in order) / m`` per dimension, in float64;
- ``r_i = sqrt(sum over dimensions, in order, of (x_i - mu)^2)``;
- the bound (``rbar`` and ``sd`` the mean and population standard deviation of ``r``, sums in member
  order): ``std`` ``k sd``, ``rms`` ``k sqrt(mean r^2)``, ``zscore`` ``rbar + k sd``, ``mad``
  ``med + 1.4826 k median(|r - med|)``, ``none`` no bound; plus ``1e-6 x max(1, |mu|)`` (members on the
  bound stay in whatever the summation order);
- a member is kept when ``r_i <= bound``; a channel of at most ``min_span`` members, or that keeps at
  most ``min_span``, keeps none.

    >>> x = np.array([[[0.0], [0.1], [0.2], [-0.1], [50.0]]], np.float32)       # one frame, 5 patches
    >>> keep = trim_members(x, np.zeros(5, np.int64), np.arange(5), np.array([0, 5]), "zscore", 1.0, 3)
    >>> keep.tolist()
    [True, True, True, True, False]
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["RULES", "trim_members", "warm"]

#: The spread rules, in the order of their codes in the kernel.
RULES = ("none", "std", "rms", "zscore", "mad")
# Relative tolerance added to every spread bound, so that members on the bound stay in whatever the
# summation order (relative to the channel mean's norm, at least 1).
REL_TOL = 1e-6


@numba.njit(nogil=True, cache=True)
def _median(v: np.ndarray) -> float:  # pragma: no cover - compiled
    s = np.sort(v)
    n = len(s)
    h = n // 2
    return s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])


@numba.njit(nogil=True, cache=True)
def _trim(x: np.ndarray, slots: np.ndarray, patches: np.ndarray, starts: np.ndarray, rule: int, k: float,
          min_span: int, rel_tol: float) -> np.ndarray:  # pragma: no cover - compiled
    n_channels = len(starts) - 1
    d = x.shape[2]
    keep = np.zeros(len(slots), np.bool_)
    mu = np.empty(d, np.float64)
    for c in range(n_channels):
        lo, hi = starts[c], starts[c + 1]
        m = hi - lo
        if m <= min_span:
            continue
        mu[:] = 0.0
        for i in range(lo, hi):
            row = x[slots[i], patches[i]]
            for j in range(d):
                mu[j] += np.float64(row[j])
        norm = 0.0
        for j in range(d):
            mu[j] = mu[j] / m
            norm += mu[j] * mu[j]
        r = np.empty(m, np.float64)
        for i in range(lo, hi):
            row = x[slots[i], patches[i]]
            s = 0.0
            for j in range(d):
                t = np.float64(row[j]) - mu[j]
                s += t * t
            r[i - lo] = np.sqrt(s)
        tol = rel_tol * max(1.0, np.sqrt(norm))
        if rule == 0:  # none
            bound = np.inf
        elif rule == 4:  # mad
            med = _median(r)
            bound = med + k * 1.4826 * _median(np.abs(r - med)) + tol
        else:
            total = 0.0
            total_sq = 0.0
            for i in range(m):
                total += r[i]
                total_sq += r[i] * r[i]
            mean = total / m
            if rule == 2:  # rms
                bound = k * np.sqrt(total_sq / m) + tol
            else:
                var = 0.0
                for i in range(m):
                    t = r[i] - mean
                    var += t * t
                sd = np.sqrt(var / m)
                bound = k * sd + tol if rule == 1 else mean + k * sd + tol  # std, zscore
        kept = 0
        for i in range(m):
            if r[i] <= bound:
                kept += 1
        if kept <= min_span:
            continue
        for i in range(m):
            keep[lo + i] = r[i] <= bound
    return keep


def trim_members(x: np.ndarray, slots: np.ndarray, patches: np.ndarray, starts: np.ndarray, rule: str, k: float,
                 min_span: int) -> np.ndarray:
    """Keep masks of many channels at once: member ``i`` is ``x[slots[i], patches[i]]`` ((F, P, d) float32 or
    float64), channel ``c``'s members are ``starts[c]:starts[c + 1]`` in canonical order; ``rule`` one of
    :data:`RULES`. Returns a (len(slots),) bool mask (see the module docstring for the arithmetic)."""
    if rule not in RULES:
        raise ValueError(f"unknown spread rule {rule!r}; expected one of {RULES}")
    return _trim(x, np.asarray(slots, np.int64), np.asarray(patches, np.int64), np.asarray(starts, np.int64),
                 RULES.index(rule), float(k), int(min_span), REL_TOL)


def warm() -> None:
    """Load (or compile) the kernel, for both descriptor dtypes."""
    for dtype in (np.float32, np.float64):
        trim_members(np.zeros((1, 5, 2), dtype), np.zeros(5, np.int64), np.arange(5), np.array([0, 5]), "mad",
                     1.0, 2)
